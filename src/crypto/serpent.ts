/**
 * Serpent (Anderson, Biham, Knudsen, "Serpent: A Proposal for the Advanced
 * Encryption Standard", 1998), written from the paper in its bitslice form:
 * the block as four little-endian 32-bit words, 32 rounds of key mixing, one
 * of the eight 4-bit S-boxes applied across the 32 bit columns, and the
 * linear transformation; the key padded to 256 bits with a 1 bit, expanded by
 * the affine recurrence with φ = 0x9e3779b9, and 33 round keys through the
 * S-boxes. Byte order is the one of the NESSIE vectors (and of nettle,
 * QEMU's backend): byte 0 is the low byte of word 0.
 *
 * Each S-box runs as its algebraic normal form (computed once from the
 * table): the 16 monomials of the four input words, and every output word the
 * XOR of its monomials; so one S-box layer is 11 ANDs and some XORs on whole
 * words, with no table lookups that depend on data.
 */
import { BlockError } from '../core/errors.js';
import type { EcbEngine } from './sector-modes.js';

/** S0..S7 of the paper, each as 16 hex digits (S[x] for x = 0..15). */
const SBOX_HEX = ['38f1a65bed42709c', 'fc27905a1be86d34', '86793cafd1e40b52', '0fb8c963d124a75e', '1f83c0b6254a9e7d', 'f52b4a9c03e8d671', '72c5846be91fd3a0', '1df0e82b74ca9356'];
const SBOXES = SBOX_HEX.map((s) => Uint8Array.from(s, (c) => parseInt(c, 16)));
const INVERSE = SBOXES.map((s) => {
  const inv = new Uint8Array(16);
  s.forEach((y, x) => (inv[y] = x));
  return inv;
});

/**
 * The algebraic normal form of a 4-bit S-box: for each output bit, a 16-bit
 * mask of the monomials (bit m set: the AND of the input bits set in m,
 * m = 0 being the constant 1) whose XOR gives that bit.
 */
function anf(sbox: Uint8Array): Uint16Array {
  const out = new Uint16Array(4);
  for (let bit = 0; bit < 4; bit++) {
    // Möbius transform of the output bit's truth table.
    const f = Array.from(sbox, (y) => (y >>> bit) & 1);
    for (let i = 1; i < 16; i <<= 1) for (let x = 0; x < 16; x++) if (x & i) f[x]! ^= f[x ^ i]!;
    out[bit] = f.reduce((m, v, x) => m | (v << x), 0);
  }
  return out;
}

const FORWARD = SBOXES.map(anf);
const BACKWARD = INVERSE.map(anf);

/** Applies an S-box (given as its ANF) to the four words in `x`, bit column by column. */
function sbox(form: Uint16Array, x: Int32Array, mono: Int32Array): void {
  mono[0] = -1;
  mono[1] = x[0]!;
  mono[2] = x[1]!;
  mono[4] = x[2]!;
  mono[8] = x[3]!;
  mono[3] = mono[1]! & mono[2]!;
  mono[5] = mono[1]! & mono[4]!;
  mono[6] = mono[2]! & mono[4]!;
  mono[7] = mono[3]! & mono[4]!;
  mono[9] = mono[1]! & mono[8]!;
  mono[10] = mono[2]! & mono[8]!;
  mono[11] = mono[3]! & mono[8]!;
  mono[12] = mono[4]! & mono[8]!;
  mono[13] = mono[5]! & mono[8]!;
  mono[14] = mono[6]! & mono[8]!;
  mono[15] = mono[7]! & mono[8]!;
  for (let bit = 0; bit < 4; bit++) {
    let m = form[bit]!;
    let v = 0;
    for (let i = 0; m; i++, m >>>= 1) if (m & 1) v ^= mono[i]!;
    x[bit] = v;
  }
}

const rotl = (v: number, n: number): number => (v << n) | (v >>> (32 - n));

function transform(x: Int32Array): void {
  let x0 = rotl(x[0]!, 13);
  let x2 = rotl(x[2]!, 3);
  let x1 = x[1]! ^ x0 ^ x2;
  let x3 = x[3]! ^ x2 ^ (x0 << 3);
  x1 = rotl(x1, 1);
  x3 = rotl(x3, 7);
  x0 = x0 ^ x1 ^ x3;
  x2 = x2 ^ x3 ^ (x1 << 7);
  x[0] = rotl(x0, 5);
  x[1] = x1;
  x[2] = rotl(x2, 22);
  x[3] = x3;
}

function inverseTransform(x: Int32Array): void {
  let x2 = rotl(x[2]!, 10);
  let x0 = rotl(x[0]!, 27);
  let x3 = x[3]!;
  let x1 = x[1]!;
  x2 = x2 ^ x3 ^ (x1 << 7);
  x0 = x0 ^ x1 ^ x3;
  x3 = rotl(x3, 25);
  x1 = rotl(x1, 31);
  x3 = x3 ^ x2 ^ (x0 << 3);
  x1 = x1 ^ x0 ^ x2;
  x[0] = rotl(x0, 19);
  x[1] = x1;
  x[2] = rotl(x2, 29);
  x[3] = x3;
}

/** A Serpent key: the 33 round keys of four words. */
export class Serpent implements EcbEngine {
  readonly blockSize = 16;
  readonly inPlace = true;
  private readonly keys = new Int32Array(33 * 4);
  private readonly x = new Int32Array(4);
  private readonly mono = new Int32Array(16);

  constructor(key: Uint8Array) {
    if (key.length !== 16 && key.length !== 24 && key.length !== 32) {
      throw new BlockError('EINVAL', `Serpent key of ${key.length} bytes (16, 24 or 32 needed)`);
    }
    // The key padded to 256 bits: a 1 bit right after it, zeros above.
    const padded = new Uint8Array(32);
    padded.set(key);
    if (key.length < 32) padded[key.length] = 1;
    const w = new Int32Array(8 + 132);
    for (let i = 0; i < 8; i++) w[i] = readLe(padded, 4 * i);
    for (let i = 0; i < 132; i++) {
      w[i + 8] = rotl(w[i]! ^ w[i + 3]! ^ w[i + 5]! ^ w[i + 7]! ^ 0x9e3779b9 ^ i, 11);
    }
    const k = this.keys;
    for (let i = 0; i < 33; i++) {
      const x = this.x;
      for (let j = 0; j < 4; j++) x[j] = w[8 + 4 * i + j]!;
      // Round key i goes through S-box (3 - i) mod 8.
      sbox(FORWARD[(35 - i) % 8]!, x, this.mono);
      k.set(x, 4 * i);
    }
    padded.fill(0);
    w.fill(0);
    this.x.fill(0);
  }

  encrypt(data: Uint8Array): Uint8Array {
    this.check(data);
    const { keys: k, x, mono } = this;
    for (let at = 0; at < data.length; at += 16) {
      for (let j = 0; j < 4; j++) x[j] = readLe(data, at + 4 * j);
      for (let r = 0; r < 32; r++) {
        for (let j = 0; j < 4; j++) x[j]! ^= k[4 * r + j]!;
        sbox(FORWARD[r & 7]!, x, mono);
        if (r < 31) transform(x);
      }
      for (let j = 0; j < 4; j++) writeLe(data, at + 4 * j, x[j]! ^ k[128 + j]!);
    }
    return data;
  }

  decrypt(data: Uint8Array): Uint8Array {
    this.check(data);
    const { keys: k, x, mono } = this;
    for (let at = 0; at < data.length; at += 16) {
      for (let j = 0; j < 4; j++) x[j] = readLe(data, at + 4 * j) ^ k[128 + j]!;
      for (let r = 31; r >= 0; r--) {
        if (r < 31) inverseTransform(x);
        sbox(BACKWARD[r & 7]!, x, mono);
        for (let j = 0; j < 4; j++) x[j]! ^= k[4 * r + j]!;
      }
      for (let j = 0; j < 4; j++) writeLe(data, at + 4 * j, x[j]!);
    }
    return data;
  }

  release(): void {
    this.keys.fill(0);
    this.x.fill(0);
    this.mono.fill(0);
  }

  private check(data: Uint8Array): void {
    if (data.length % 16 !== 0) throw new BlockError('EINVAL', `Serpent data of ${data.length} bytes is not a whole number of 16-byte blocks`);
  }
}

function readLe(b: Uint8Array, at: number): number {
  return b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24);
}

function writeLe(b: Uint8Array, at: number, v: number): void {
  b[at] = v;
  b[at + 1] = v >>> 8;
  b[at + 2] = v >>> 16;
  b[at + 3] = v >>> 24;
}

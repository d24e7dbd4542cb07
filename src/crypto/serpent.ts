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
 * Each S-box (and inverse) runs as its algebraic normal form, generated from
 * the table: the products of the four input words, every output word the XOR
 * of its monomials; so one S-box layer is a few ANDs and XORs on whole
 * words, with no table lookups that depend on data.
 */
import { BlockError } from '../core/errors.js';
import { readLe } from './words.js';
import { WordCipher } from './word-cipher.js';
import { serpentDecrypt, serpentEncrypt } from './serpent-rounds.js';

/** S0..S7 of the paper, each as 16 hex digits (S[x] for x = 0..15). */
const SBOX_HEX = ['38f1a65bed42709c', 'fc27905a1be86d34', '86793cafd1e40b52', '0fb8c963d124a75e', '1f83c0b6254a9e7d', 'f52b4a9c03e8d671', '72c5846be91fd3a0', '1df0e82b74ca9356'];
const SBOXES = SBOX_HEX.map((s) => Uint8Array.from(s, (c) => parseInt(c, 16)));

// Generated from the S-box tables above by their algebraic normal form (see the file comment); checked against them in test/crypto/serpent.test.ts.

function s0(x: Int32Array): void {
  const a = x[0]!;
  const b = x[1]!;
  const c = x[2]!;
  const d = x[3]!;
  const ab = a & b;
  const ac = a & c;
  const bc = b & c;
  const abc = ab & c;
  const ad = a & d;
  const bd = b & d;
  const acd = ac & d;
  const bcd = bc & d;
  x[0] = ~(a ^ ab ^ c ^ ac ^ bc ^ abc ^ d ^ acd ^ bcd);
  x[1] = ~(a ^ ac ^ bc ^ abc ^ bd ^ acd ^ bcd);
  x[2] = b ^ ab ^ ac ^ abc ^ d ^ bd ^ bcd;
  x[3] = a ^ b ^ c ^ d ^ ad;
}

function s1(x: Int32Array): void {
  const a = x[0]!;
  const b = x[1]!;
  const c = x[2]!;
  const d = x[3]!;
  const ab = a & b;
  const ac = a & c;
  const bc = b & c;
  const ad = a & d;
  const bd = b & d;
  const abd = ab & d;
  const cd = c & d;
  const acd = ac & d;
  const bcd = bc & d;
  x[0] = ~(a ^ b ^ bc ^ ad ^ cd ^ acd ^ bcd);
  x[1] = ~(a ^ ab ^ c ^ ac ^ d ^ bd ^ abd ^ acd ^ bcd);
  x[2] = ~(b ^ ab ^ c ^ d);
  x[3] = ~(b ^ ac ^ d ^ ad ^ abd ^ acd ^ bcd);
}

function s2(x: Int32Array): void {
  const a = x[0]!;
  const b = x[1]!;
  const c = x[2]!;
  const d = x[3]!;
  const ab = a & b;
  const ac = a & c;
  const bc = b & c;
  const abc = ab & c;
  const ad = a & d;
  const bd = b & d;
  const abd = ab & d;
  const cd = c & d;
  const acd = ac & d;
  x[0] = b ^ c ^ ac ^ d;
  x[1] = a ^ b ^ c ^ bc ^ abc ^ ad ^ abd ^ cd ^ acd;
  x[2] = a ^ b ^ bc ^ d ^ bd ^ abd ^ cd ^ acd;
  x[3] = ~(a ^ b ^ c ^ abc ^ bd);
}

function s3(x: Int32Array): void {
  const a = x[0]!;
  const b = x[1]!;
  const c = x[2]!;
  const d = x[3]!;
  const ab = a & b;
  const ac = a & c;
  const bc = b & c;
  const abc = ab & c;
  const ad = a & d;
  const bd = b & d;
  const abd = ab & d;
  const cd = c & d;
  const acd = ac & d;
  const bcd = bc & d;
  x[0] = a ^ b ^ bc ^ d ^ ad ^ cd ^ acd ^ bcd;
  x[1] = a ^ b ^ ac ^ ad ^ abd ^ cd ^ acd;
  x[2] = a ^ ab ^ c ^ abc ^ d ^ bd ^ abd;
  x[3] = a ^ b ^ ab ^ c ^ ac ^ abc ^ d ^ cd ^ acd;
}

function s4(x: Int32Array): void {
  const a = x[0]!;
  const b = x[1]!;
  const c = x[2]!;
  const d = x[3]!;
  const ab = a & b;
  const ac = a & c;
  const bc = b & c;
  const abc = ab & c;
  const ad = a & d;
  const bd = b & d;
  const abd = ab & d;
  const cd = c & d;
  const acd = ac & d;
  const bcd = bc & d;
  x[0] = ~(b ^ ab ^ c ^ d ^ ad ^ bd);
  x[1] = a ^ ac ^ bc ^ d ^ bd ^ cd ^ acd ^ bcd;
  x[2] = a ^ ab ^ c ^ bc ^ abc ^ bd ^ abd ^ cd ^ bcd;
  x[3] = a ^ b ^ c ^ bc ^ ad ^ bd ^ abd;
}

function s5(x: Int32Array): void {
  const a = x[0]!;
  const b = x[1]!;
  const c = x[2]!;
  const d = x[3]!;
  const ab = a & b;
  const ac = a & c;
  const bc = b & c;
  const abc = ab & c;
  const ad = a & d;
  const bd = b & d;
  const abd = ab & d;
  const cd = c & d;
  const acd = ac & d;
  const bcd = bc & d;
  x[0] = ~(b ^ ab ^ c ^ d ^ ad ^ bd);
  x[1] = ~(a ^ ab ^ c ^ d ^ bd ^ abd ^ cd);
  x[2] = ~(b ^ ac ^ d ^ abd ^ cd ^ acd ^ bcd);
  x[3] = ~(a ^ b ^ c ^ abc ^ d ^ ad ^ acd);
}

function s6(x: Int32Array): void {
  const a = x[0]!;
  const b = x[1]!;
  const c = x[2]!;
  const d = x[3]!;
  const ab = a & b;
  const ac = a & c;
  const bc = b & c;
  const abc = ab & c;
  const ad = a & d;
  const bd = b & d;
  const abd = ab & d;
  const cd = c & d;
  const bcd = bc & d;
  x[0] = ~(a ^ b ^ c ^ ac ^ bc ^ abc ^ d ^ abd ^ bcd);
  x[1] = ~(b ^ c ^ ad);
  x[2] = ~(a ^ ab ^ c ^ bc ^ abc ^ bd ^ abd ^ cd ^ bcd);
  x[3] = b ^ ab ^ c ^ ac ^ abc ^ d ^ cd ^ bcd;
}

function s7(x: Int32Array): void {
  const a = x[0]!;
  const b = x[1]!;
  const c = x[2]!;
  const d = x[3]!;
  const ab = a & b;
  const ac = a & c;
  const bc = b & c;
  const abc = ab & c;
  const ad = a & d;
  const bd = b & d;
  const abd = ab & d;
  const cd = c & d;
  const acd = ac & d;
  const bcd = bc & d;
  x[0] = ~(ab ^ c ^ ad ^ bd ^ cd ^ acd ^ bcd);
  x[1] = b ^ ab ^ c ^ ac ^ bc ^ d ^ ad ^ abd ^ acd;
  x[2] = a ^ b ^ c ^ abc ^ d ^ ad ^ bd ^ abd ^ bcd;
  x[3] = a ^ b ^ c ^ ac ^ abc ^ ad;
}

function si0(x: Int32Array): void {
  const a = x[0]!;
  const b = x[1]!;
  const c = x[2]!;
  const d = x[3]!;
  const ab = a & b;
  const ac = a & c;
  const bc = b & c;
  const ad = a & d;
  const bd = b & d;
  const abd = ab & d;
  const cd = c & d;
  const acd = ac & d;
  const bcd = bc & d;
  x[0] = ~(ab ^ c ^ bc ^ ad ^ bd ^ abd ^ cd ^ acd ^ bcd);
  x[1] = a ^ b ^ c ^ ac ^ bd ^ acd ^ bcd;
  x[2] = ~(a ^ b ^ ab ^ c ^ d);
  x[3] = ~(a ^ bc ^ d ^ abd ^ cd ^ acd ^ bcd);
}

function si1(x: Int32Array): void {
  const a = x[0]!;
  const b = x[1]!;
  const c = x[2]!;
  const d = x[3]!;
  const ab = a & b;
  const ac = a & c;
  const bc = b & c;
  const abc = ab & c;
  const ad = a & d;
  const bd = b & d;
  const acd = ac & d;
  const bcd = bc & d;
  x[0] = ~(a ^ b ^ ab ^ abc ^ bd ^ acd ^ bcd);
  x[1] = b ^ c ^ abc ^ d ^ ad ^ bd ^ acd ^ bcd;
  x[2] = ~(a ^ b ^ ac ^ bc ^ abc ^ d ^ acd);
  x[3] = a ^ c ^ d ^ bd;
}

function si2(x: Int32Array): void {
  const a = x[0]!;
  const b = x[1]!;
  const c = x[2]!;
  const d = x[3]!;
  const ab = a & b;
  const ac = a & c;
  const bc = b & c;
  const abc = ab & c;
  const ad = a & d;
  const bd = b & d;
  const abd = ab & d;
  const cd = c & d;
  const acd = ac & d;
  x[0] = a ^ b ^ c ^ bc ^ bd;
  x[1] = b ^ ab ^ c ^ ad ^ abd ^ cd ^ acd;
  x[2] = ~(a ^ ab ^ c ^ d ^ ad ^ bd ^ abd ^ acd);
  x[3] = ~(ab ^ bc ^ abc ^ d ^ acd);
}

function si3(x: Int32Array): void {
  const a = x[0]!;
  const b = x[1]!;
  const c = x[2]!;
  const d = x[3]!;
  const ab = a & b;
  const ac = a & c;
  const bc = b & c;
  const abc = ab & c;
  const ad = a & d;
  const bd = b & d;
  const abd = ab & d;
  const cd = c & d;
  const acd = ac & d;
  const bcd = bc & d;
  x[0] = a ^ c ^ bc ^ d ^ ad ^ bd ^ bcd;
  x[1] = b ^ c ^ bc ^ abc ^ d ^ ad ^ acd ^ bcd;
  x[2] = ab ^ ac ^ bc ^ ad ^ bd ^ abd ^ cd ^ acd;
  x[3] = a ^ b ^ c ^ ac ^ abc ^ ad ^ abd ^ cd;
}

function si4(x: Int32Array): void {
  const a = x[0]!;
  const b = x[1]!;
  const c = x[2]!;
  const d = x[3]!;
  const ab = a & b;
  const ac = a & c;
  const abc = ab & c;
  const ad = a & d;
  const bd = b & d;
  const abd = ab & d;
  const cd = c & d;
  const acd = ac & d;
  x[0] = ~(a ^ b ^ c ^ d ^ ad ^ abd ^ cd ^ acd);
  x[1] = ab ^ c ^ ac ^ d ^ ad ^ acd;
  x[2] = ~(a ^ b ^ ab ^ c ^ ac ^ abc ^ d ^ bd ^ abd);
  x[3] = b ^ ab ^ c ^ ad ^ abd ^ cd;
}

function si5(x: Int32Array): void {
  const a = x[0]!;
  const b = x[1]!;
  const c = x[2]!;
  const d = x[3]!;
  const ab = a & b;
  const ac = a & c;
  const bc = b & c;
  const abc = ab & c;
  const ad = a & d;
  const bd = b & d;
  const abd = ab & d;
  const acd = ac & d;
  x[0] = a ^ bc ^ d ^ abd;
  x[1] = a ^ b ^ ac ^ bc ^ abc ^ d ^ ad ^ abd;
  x[2] = a ^ ab ^ c ^ bd ^ abd ^ acd;
  x[3] = ~(b ^ ab ^ c ^ abc ^ ad);
}

function si6(x: Int32Array): void {
  const a = x[0]!;
  const b = x[1]!;
  const c = x[2]!;
  const d = x[3]!;
  const ab = a & b;
  const ac = a & c;
  const bc = b & c;
  const abc = ab & c;
  const ad = a & d;
  const bd = b & d;
  const abd = ab & d;
  const cd = c & d;
  const bcd = bc & d;
  x[0] = ~(a ^ ab ^ ac ^ bc ^ abc ^ d ^ abd ^ bcd);
  x[1] = ~(b ^ c ^ ac ^ d);
  x[2] = ~(a ^ b ^ bc ^ bd ^ abd ^ cd ^ bcd);
  x[3] = ~(b ^ ab ^ c ^ bc ^ abc ^ d ^ ad ^ abd ^ cd ^ bcd);
}

function si7(x: Int32Array): void {
  const a = x[0]!;
  const b = x[1]!;
  const c = x[2]!;
  const d = x[3]!;
  const ab = a & b;
  const ac = a & c;
  const bc = b & c;
  const abc = ab & c;
  const ad = a & d;
  const bd = b & d;
  const abd = ab & d;
  const cd = c & d;
  const acd = ac & d;
  const bcd = bc & d;
  x[0] = ~(a ^ b ^ bc ^ bd ^ abd ^ cd ^ bcd);
  x[1] = ~(a ^ c ^ bc ^ d ^ ad ^ bd ^ acd ^ bcd);
  x[2] = b ^ ac ^ d ^ abd ^ cd ^ acd;
  x[3] = ab ^ c ^ abc ^ ad ^ bd ^ abd;
}

const FORWARD = [s0, s1, s2, s3, s4, s5, s6, s7];

const BACKWARD = [si0, si1, si2, si3, si4, si5, si6, si7];

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

/**
 * Serpent's key schedule: the 33 round keys of four words (132 words) of a
 * 16, 24 or 32-byte key. The TypeScript cipher below and the WASM module
 * (src/wasm/serpent.ts) both start from it.
 */
export function serpentRoundKeys(key: Uint8Array): Int32Array {
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
  const k = new Int32Array(33 * 4);
  const x = new Int32Array(4);
  for (let i = 0; i < 33; i++) {
    for (let j = 0; j < 4; j++) x[j] = w[8 + 4 * i + j]!;
    // Round key i goes through S-box (3 - i) mod 8.
    FORWARD[(35 - i) % 8]!(x);
    k.set(x, 4 * i);
  }
  padded.fill(0);
  w.fill(0);
  x.fill(0);
  return k;
}

/** A Serpent key: the 33 round keys of four words. */
export class Serpent extends WordCipher {
  private readonly keys: Int32Array;

  constructor(key: Uint8Array) {
    super(16, 'Serpent');
    this.keys = serpentRoundKeys(key);
  }

  protected encryptBlock(w: Int32Array, i: number): void {
    serpentEncrypt(w, i, this.keys);
  }

  protected decryptBlock(w: Int32Array, i: number): void {
    serpentDecrypt(w, i, this.keys);
  }

  release(): void {
    this.keys.fill(0);
  }

}

/** The S-box tables and their word-wide forms, for the tests that hold one against the other. */
export const SERPENT_SBOXES = { tables: SBOXES, forward: FORWARD, backward: BACKWARD } as const;

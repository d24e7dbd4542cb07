/**
 * Twofish (Schneier, Kelsey, Whiting, Wagner, Hall, Ferguson, "Twofish: A
 * 128-Bit Block Cipher", 1998), written from the paper: the q0 / q1
 * permutations built from their 4-bit t-tables (section 4.3.5), the MDS and
 * RS matrices over GF(2^8) (4.3.2, 4.3.4), the key schedule's h function and
 * 40 subkeys (4.3), 16 Feistel rounds with input and output whitening.
 *
 * The key-dependent S-boxes are folded with the MDS columns into four
 * 256-entry tables at key setup, so g() is four lookups (the paper's
 * "full keying" option, section 5.3). Keys of 16, 24 or 32 bytes.
 */
import { BlockError } from '../core/errors.js';
import { WordCipher } from './word-cipher.js';

/** The 4-bit t-tables of q0 and q1 (paper, section 4.3.5), t0..t3 each. */
const Q_TABLES = [
  ['817d6f320b59eca4', 'ecb81235f4a6709d', 'ba5e6d90c8f32471', 'd7f4126e9b3085ca'],
  ['28bdf76e31940ac5', '1e2b4c376da5f908', '4c75169a0ed82b3f', 'b951c3de647f208a'],
].map((ts) => ts.map((t) => Uint8Array.from(t, (c) => parseInt(c, 16))));

const ror4 = (x: number): number => ((x >>> 1) | (x << 3)) & 15;

/** The fixed permutation q0 (which = 0) or q1 (which = 1) of a byte. */
function qPerm(which: number, x: number): number {
  const [t0, t1, t2, t3] = Q_TABLES[which]!;
  const a0 = x >>> 4;
  const b0 = x & 15;
  const a1 = a0 ^ b0;
  const b1 = a0 ^ ror4(b0) ^ ((a0 << 3) & 15);
  const a2 = t0![a1]!;
  const b2 = t1![b1]!;
  const a3 = a2 ^ b2;
  const b3 = a2 ^ ror4(b2) ^ ((a2 << 3) & 15);
  return (t3![b3]! << 4) | t2![a3]!;
}

const Q0 = Uint8Array.from({ length: 256 }, (_, x) => qPerm(0, x));
const Q1 = Uint8Array.from({ length: 256 }, (_, x) => qPerm(1, x));

/** Multiplication in GF(2^8) modulo the polynomial `poly` (with its x^8 bit). */
function gfMul(a: number, b: number, poly: number): number {
  let r = 0;
  while (b) {
    if (b & 1) r ^= a;
    a <<= 1;
    if (a & 0x100) a ^= poly;
    b >>>= 1;
  }
  return r;
}

/** MDS matrix, rows top to bottom; its field is x^8 + x^6 + x^5 + x^3 + 1. */
const MDS = [
  [0x01, 0xef, 0x5b, 0x5b],
  [0x5b, 0xef, 0xef, 0x01],
  [0xef, 0x5b, 0x01, 0xef],
  [0xef, 0x01, 0xef, 0x5b],
];
const MDS_POLY = 0x169;
/** RS matrix (key schedule), field x^8 + x^6 + x^3 + x^2 + 1. */
const RS = [
  [0x01, 0xa4, 0x55, 0x87, 0x5a, 0x58, 0xdb, 0x9e],
  [0xa4, 0x56, 0x82, 0xf3, 0x1e, 0xc6, 0x68, 0xe5],
  [0x02, 0xa1, 0xfc, 0xc1, 0x47, 0xae, 0x3d, 0x19],
  [0xa4, 0x55, 0x87, 0x5a, 0x58, 0xdb, 0x9e, 0x03],
];
const RS_POLY = 0x14d;

/** MDS column j times byte v, as the little-endian word of the product vector. */
function mdsColumn(j: number, v: number): number {
  let w = 0;
  for (let i = 0; i < 4; i++) w |= gfMul(MDS[i]![j]!, v, MDS_POLY) << (8 * i);
  return w >>> 0;
}

const byteOf = (w: number, i: number): number => (w >>> (8 * i)) & 255;

/**
 * The S-box byte of position i (0..3) for input x under key words `l`
 * (list L of the h function, k = l.length words): the q chain of Figure 2.
 */
function sboxByte(i: number, x: number, l: readonly number[]): number {
  // The q applied at each stage, per byte position: stage k=4, k=3, then the three common ones.
  const k = l.length;
  let y = x;
  if (k === 4) y = (i === 0 || i === 3 ? Q1 : Q0)[y]! ^ byteOf(l[3]!, i);
  if (k >= 3) y = (i === 0 || i === 1 ? Q1 : Q0)[y]! ^ byteOf(l[2]!, i);
  const first = i === 0 || i === 2 ? Q0 : Q1;
  const second = i === 0 || i === 1 ? Q0 : Q1;
  const third = i === 0 || i === 2 ? Q1 : Q0;
  return third[second[first[y]! ^ byteOf(l[1]!, i)]! ^ byteOf(l[0]!, i)]!;
}

/** The h function: X's bytes through the S-box chains, then MDS. */
function h(x: number, l: readonly number[]): number {
  let w = 0;
  for (let i = 0; i < 4; i++) w ^= mdsColumn(i, sboxByte(i, byteOf(x, i), l));
  return w >>> 0;
}

const rol = (x: number, n: number): number => ((x << n) | (x >>> (32 - n))) >>> 0;

/**
 * The key schedule of a 16-, 24- or 32-byte key: the four key-dependent g
 * tables (256 words each, one after the other) followed by the 40 subkeys,
 * 1064 words; the layout of the WASM module's key context too
 * (assembly/twofish.ts). The caller wipes the array when done.
 */
export function twofishKeyWords(key: Uint8Array): Int32Array {
  if (key.length !== 16 && key.length !== 24 && key.length !== 32) {
    throw new BlockError('EINVAL', `Twofish key of ${key.length} bytes (16, 24 or 32 needed)`);
  }
  const out = new Int32Array(1024 + 40);
  const kw = key.length / 8;
  const m = Array.from({ length: 2 * kw }, (_, i) => key[4 * i]! | (key[4 * i + 1]! << 8) | (key[4 * i + 2]! << 16) | (key[4 * i + 3]! << 24));
  const me = m.filter((_, i) => i % 2 === 0);
  const mo = m.filter((_, i) => i % 2 === 1);
  // S words from RS times each 8-byte key group, in reverse order (S_{k-1} first in the list's top).
  const s: number[] = [];
  for (let i = 0; i < kw; i++) {
    let w = 0;
    for (let r = 0; r < 4; r++) {
      let v = 0;
      for (let c = 0; c < 8; c++) v ^= gfMul(RS[r]![c]!, key[8 * i + c]!, RS_POLY);
      w |= v << (8 * r);
    }
    s.unshift(w >>> 0);
  }
  const rho = 0x01010101;
  for (let i = 0; i < 20; i++) {
    const a = h(Math.imul(2 * i, rho) >>> 0, me);
    const b = rol(h(Math.imul(2 * i + 1, rho) >>> 0, mo), 8);
    out[1024 + 2 * i] = (a + b) >>> 0;
    out[1024 + 2 * i + 1] = rol((a + 2 * b) >>> 0, 9);
  }
  for (let i = 0; i < 4; i++) for (let x = 0; x < 256; x++) out[256 * i + x] = mdsColumn(i, sboxByte(i, x, s));
  m.fill(0);
  me.fill(0);
  mo.fill(0);
  s.fill(0);
  return out;
}

/** A Twofish key: 40 subkeys and the four key-dependent g tables. */
export class Twofish extends WordCipher {
  private readonly k: Int32Array;
  /** The four g tables, one after the other (one array: fewer bases held in registers). */
  private readonly t: Int32Array;

  constructor(key: Uint8Array) {
    super(16, 'Twofish');
    const words = twofishKeyWords(key);
    // Own arrays, not views (the block functions index them from 0).
    this.t = words.slice(0, 1024);
    this.k = words.slice(1024);
    words.fill(0);
  }

  protected encryptBlock(w: Int32Array, i: number): void {
    const { k, t } = this;
    let x0 = w[i]! ^ k[0]!;
    let x1 = w[i + 1]! ^ k[1]!;
    let x2 = w[i + 2]! ^ k[2]!;
    let x3 = w[i + 3]! ^ k[3]!;
    for (let r = 8; r < 40; r += 4) {
      // Two rounds, the second with the halves swapped back by naming.
      let a = t[x0 & 255]! ^ t[256 + ((x0 >>> 8) & 255)]! ^ t[512 + ((x0 >>> 16) & 255)]! ^ t[768 + (x0 >>> 24)]!;
      let b = t[x1 >>> 24]! ^ t[256 + (x1 & 255)]! ^ t[512 + ((x1 >>> 8) & 255)]! ^ t[768 + ((x1 >>> 16) & 255)]!;
      x2 ^= (a + b + k[r]!) | 0;
      x2 = (x2 >>> 1) | (x2 << 31);
      x3 = ((x3 << 1) | (x3 >>> 31)) ^ ((a + 2 * b + k[r + 1]!) | 0);
      a = t[x2 & 255]! ^ t[256 + ((x2 >>> 8) & 255)]! ^ t[512 + ((x2 >>> 16) & 255)]! ^ t[768 + (x2 >>> 24)]!;
      b = t[x3 >>> 24]! ^ t[256 + (x3 & 255)]! ^ t[512 + ((x3 >>> 8) & 255)]! ^ t[768 + ((x3 >>> 16) & 255)]!;
      x0 ^= (a + b + k[r + 2]!) | 0;
      x0 = (x0 >>> 1) | (x0 << 31);
      x1 = ((x1 << 1) | (x1 >>> 31)) ^ ((a + 2 * b + k[r + 3]!) | 0);
    }
    w[i] = x2 ^ k[4]!;
    w[i + 1] = x3 ^ k[5]!;
    w[i + 2] = x0 ^ k[6]!;
    w[i + 3] = x1 ^ k[7]!;
  }

  protected decryptBlock(w: Int32Array, i: number): void {
    const { k, t } = this;
    let x2 = w[i]! ^ k[4]!;
    let x3 = w[i + 1]! ^ k[5]!;
    let x0 = w[i + 2]! ^ k[6]!;
    let x1 = w[i + 3]! ^ k[7]!;
    for (let r = 36; r >= 8; r -= 4) {
      let a = t[x2 & 255]! ^ t[256 + ((x2 >>> 8) & 255)]! ^ t[512 + ((x2 >>> 16) & 255)]! ^ t[768 + (x2 >>> 24)]!;
      let b = t[x3 >>> 24]! ^ t[256 + (x3 & 255)]! ^ t[512 + ((x3 >>> 8) & 255)]! ^ t[768 + ((x3 >>> 16) & 255)]!;
      x0 = ((x0 << 1) | (x0 >>> 31)) ^ ((a + b + k[r + 2]!) | 0);
      x1 ^= (a + 2 * b + k[r + 3]!) | 0;
      x1 = (x1 >>> 1) | (x1 << 31);
      a = t[x0 & 255]! ^ t[256 + ((x0 >>> 8) & 255)]! ^ t[512 + ((x0 >>> 16) & 255)]! ^ t[768 + (x0 >>> 24)]!;
      b = t[x1 >>> 24]! ^ t[256 + (x1 & 255)]! ^ t[512 + ((x1 >>> 8) & 255)]! ^ t[768 + ((x1 >>> 16) & 255)]!;
      x2 = ((x2 << 1) | (x2 >>> 31)) ^ ((a + b + k[r]!) | 0);
      x3 ^= (a + 2 * b + k[r + 1]!) | 0;
      x3 = (x3 >>> 1) | (x3 << 31);
    }
    w[i] = x0 ^ k[0]!;
    w[i + 1] = x1 ^ k[1]!;
    w[i + 2] = x2 ^ k[2]!;
    w[i + 3] = x3 ^ k[3]!;
  }

  release(): void {
    this.k.fill(0);
    this.t.fill(0);
  }
}

/** The q permutations, for the known-answer tests of the paper's tables. */
export const TWOFISH_Q = { q0: Q0, q1: Q1 } as const;

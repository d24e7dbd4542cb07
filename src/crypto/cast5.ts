/**
 * CAST-128 (CAST5) with a 128-bit key, written from RFC 2144: a 16-round
 * Feistel network on two big-endian 32-bit halves, round functions of types
 * 1, 2 and 3 (section 2.2) over S1..S4, and the key schedule of section 2.4,
 * which derives the 16 masking keys and 16 rotation keys from the key
 * through S5..S8. QEMU's LUKS names only cast5-128, so shorter keys (and the
 * 12-round variant they imply) are not offered.
 */
import { BlockError } from '../core/errors.js';
import { CAST5_SBOXES } from './cast5-sboxes.js';
import { bswap } from './words.js';
import { WordCipher } from './word-cipher.js';

const [S1, S2, S3, S4, S5, S6, S7, S8] = CAST5_SBOXES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];

const word = (b: Uint8Array, i: number): number => ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;

function put(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 24;
  b[i + 1] = v >>> 16;
  b[i + 2] = v >>> 8;
  b[i + 3] = v;
}

/**
 * One half of the key schedule (section 2.4): from the 16 key bytes `x`
 * (updated in place to the next x; `z` is scratch), the 16 subkeys K1..K16
 * or K17..K32.
 */
function scheduleHalf(x: Uint8Array, z: Uint8Array, out: Uint32Array): void {
  let n = 0;
  for (let round = 0; round < 2; round++) {
    put(z, 0, word(x, 0) ^ S5[x[13]!]! ^ S6[x[15]!]! ^ S7[x[12]!]! ^ S8[x[14]!]! ^ S7[x[8]!]!);
    put(z, 4, word(x, 8) ^ S5[z[0]!]! ^ S6[z[2]!]! ^ S7[z[1]!]! ^ S8[z[3]!]! ^ S8[x[10]!]!);
    put(z, 8, word(x, 12) ^ S5[z[7]!]! ^ S6[z[6]!]! ^ S7[z[5]!]! ^ S8[z[4]!]! ^ S5[x[9]!]!);
    put(z, 12, word(x, 4) ^ S5[z[10]!]! ^ S6[z[9]!]! ^ S7[z[11]!]! ^ S8[z[8]!]! ^ S6[x[11]!]!);
    if (round === 0) {
      out[n++] = S5[z[8]!]! ^ S6[z[9]!]! ^ S7[z[7]!]! ^ S8[z[6]!]! ^ S5[z[2]!]!;
      out[n++] = S5[z[10]!]! ^ S6[z[11]!]! ^ S7[z[5]!]! ^ S8[z[4]!]! ^ S6[z[6]!]!;
      out[n++] = S5[z[12]!]! ^ S6[z[13]!]! ^ S7[z[3]!]! ^ S8[z[2]!]! ^ S7[z[9]!]!;
      out[n++] = S5[z[14]!]! ^ S6[z[15]!]! ^ S7[z[1]!]! ^ S8[z[0]!]! ^ S8[z[12]!]!;
    } else {
      out[n++] = S5[z[3]!]! ^ S6[z[2]!]! ^ S7[z[12]!]! ^ S8[z[13]!]! ^ S5[z[9]!]!;
      out[n++] = S5[z[1]!]! ^ S6[z[0]!]! ^ S7[z[14]!]! ^ S8[z[15]!]! ^ S6[z[12]!]!;
      out[n++] = S5[z[7]!]! ^ S6[z[6]!]! ^ S7[z[8]!]! ^ S8[z[9]!]! ^ S7[z[2]!]!;
      out[n++] = S5[z[5]!]! ^ S6[z[4]!]! ^ S7[z[10]!]! ^ S8[z[11]!]! ^ S8[z[6]!]!;
    }
    put(x, 0, word(z, 8) ^ S5[z[5]!]! ^ S6[z[7]!]! ^ S7[z[4]!]! ^ S8[z[6]!]! ^ S7[z[0]!]!);
    put(x, 4, word(z, 0) ^ S5[x[0]!]! ^ S6[x[2]!]! ^ S7[x[1]!]! ^ S8[x[3]!]! ^ S8[z[2]!]!);
    put(x, 8, word(z, 4) ^ S5[x[7]!]! ^ S6[x[6]!]! ^ S7[x[5]!]! ^ S8[x[4]!]! ^ S5[z[1]!]!);
    put(x, 12, word(z, 12) ^ S5[x[10]!]! ^ S6[x[9]!]! ^ S7[x[11]!]! ^ S8[x[8]!]! ^ S6[z[3]!]!);
    if (round === 0) {
      out[n++] = S5[x[3]!]! ^ S6[x[2]!]! ^ S7[x[12]!]! ^ S8[x[13]!]! ^ S5[x[8]!]!;
      out[n++] = S5[x[1]!]! ^ S6[x[0]!]! ^ S7[x[14]!]! ^ S8[x[15]!]! ^ S6[x[13]!]!;
      out[n++] = S5[x[7]!]! ^ S6[x[6]!]! ^ S7[x[8]!]! ^ S8[x[9]!]! ^ S7[x[3]!]!;
      out[n++] = S5[x[5]!]! ^ S6[x[4]!]! ^ S7[x[10]!]! ^ S8[x[11]!]! ^ S8[x[7]!]!;
    } else {
      out[n++] = S5[x[8]!]! ^ S6[x[9]!]! ^ S7[x[7]!]! ^ S8[x[6]!]! ^ S5[x[3]!]!;
      out[n++] = S5[x[10]!]! ^ S6[x[11]!]! ^ S7[x[5]!]! ^ S8[x[4]!]! ^ S6[x[7]!]!;
      out[n++] = S5[x[12]!]! ^ S6[x[13]!]! ^ S7[x[3]!]! ^ S8[x[2]!]! ^ S7[x[8]!]!;
      out[n++] = S5[x[14]!]! ^ S6[x[15]!]! ^ S7[x[1]!]! ^ S8[x[0]!]! ^ S8[x[13]!]!;
    }
  }
}

/**
 * S1..S4 one after the other, as signed words (the round functions add and
 * subtract them as 32-bit integers; one array: one base in a register).
 */
const T = new Int32Array(1024);
[S1, S2, S3, S4].forEach((s, i) => T.set(s, 256 * i));

/**
 * The key schedule of a 16-byte key as the WASM module's key context
 * (assembly/cast5.ts): S1..S4 (256 words each), then Km1..Km16 and Kr1..Kr16
 * (5 bits each), 1056 words. The caller wipes the array when done.
 */
export function cast5KeyWords(key: Uint8Array): Int32Array {
  const out = new Int32Array(1024 + 32);
  out.set(T);
  out.set(cast5Subkeys(key), 1024);
  return out;
}

/** Km1..Km16, then Kr1..Kr16 (5 bits each), of a 16-byte key. */
function cast5Subkeys(key: Uint8Array): Int32Array {
  if (key.length !== 16) throw new BlockError('EINVAL', `CAST5 key of ${key.length} bytes (16 needed)`);
  const k = new Int32Array(32);
  const x = Uint8Array.from(key);
  const z = new Uint8Array(16);
  const km = new Uint32Array(16);
  const kr = new Uint32Array(16);
  scheduleHalf(x, z, km);
  scheduleHalf(x, z, kr);
  for (let i = 0; i < 16; i++) {
    k[i] = km[i]!;
    k[16 + i] = kr[i]! & 31;
  }
  x.fill(0);
  z.fill(0);
  km.fill(0);
  kr.fill(0);
  return k;
}

/** A CAST-128 key: masking keys Km1..Km16 and rotation keys Kr1..Kr16. */
export class Cast5 extends WordCipher {
  /** Km1..Km16, then Kr1..Kr16 (5 bits each). */
  private readonly k: Int32Array;

  constructor(key: Uint8Array) {
    super(8, 'CAST5');
    this.k = cast5Subkeys(key);
  }

  /**
   * The 16 rounds written out (a call per round function would not be
   * inlined), the halves swapping roles by name; types 1, 2, 3 in turn:
   * I = (Km + D), (Km ^ D), (Km - D) rotated by Kr, then S1..S4 of its bytes
   * combined by ^ - +, - + ^, + ^ - (a rotation by 0 shifts right by 32, i.e.
   * by 0, in JS). The block's words are big-endian.
   */
  protected encryptBlock(w: Int32Array, i: number): void {
    const k = this.k;
    let l = bswap(w[i]!);
    let r = bswap(w[i + 1]!);
    let t: number;
    t = (k[0]! + r) | 0;
    t = (t << k[16]!) | (t >>> (32 - k[16]!));
    l ^= (((T[t >>> 24]! ^ T[256 + ((t >>> 16) & 255)]!) - T[512 + ((t >>> 8) & 255)]! + T[768 + (t & 255)]!) | 0);
    t = k[1]! ^ l;
    t = (t << k[17]!) | (t >>> (32 - k[17]!));
    r ^= ((((T[t >>> 24]! - T[256 + ((t >>> 16) & 255)]!) + T[512 + ((t >>> 8) & 255)]!) | 0) ^ T[768 + (t & 255)]!);
    t = (k[2]! - r) | 0;
    t = (t << k[18]!) | (t >>> (32 - k[18]!));
    l ^= ((((T[t >>> 24]! + T[256 + ((t >>> 16) & 255)]!) | 0) ^ T[512 + ((t >>> 8) & 255)]!) - T[768 + (t & 255)]!);
    t = (k[3]! + l) | 0;
    t = (t << k[19]!) | (t >>> (32 - k[19]!));
    r ^= (((T[t >>> 24]! ^ T[256 + ((t >>> 16) & 255)]!) - T[512 + ((t >>> 8) & 255)]! + T[768 + (t & 255)]!) | 0);
    t = k[4]! ^ r;
    t = (t << k[20]!) | (t >>> (32 - k[20]!));
    l ^= ((((T[t >>> 24]! - T[256 + ((t >>> 16) & 255)]!) + T[512 + ((t >>> 8) & 255)]!) | 0) ^ T[768 + (t & 255)]!);
    t = (k[5]! - l) | 0;
    t = (t << k[21]!) | (t >>> (32 - k[21]!));
    r ^= ((((T[t >>> 24]! + T[256 + ((t >>> 16) & 255)]!) | 0) ^ T[512 + ((t >>> 8) & 255)]!) - T[768 + (t & 255)]!);
    t = (k[6]! + r) | 0;
    t = (t << k[22]!) | (t >>> (32 - k[22]!));
    l ^= (((T[t >>> 24]! ^ T[256 + ((t >>> 16) & 255)]!) - T[512 + ((t >>> 8) & 255)]! + T[768 + (t & 255)]!) | 0);
    t = k[7]! ^ l;
    t = (t << k[23]!) | (t >>> (32 - k[23]!));
    r ^= ((((T[t >>> 24]! - T[256 + ((t >>> 16) & 255)]!) + T[512 + ((t >>> 8) & 255)]!) | 0) ^ T[768 + (t & 255)]!);
    t = (k[8]! - r) | 0;
    t = (t << k[24]!) | (t >>> (32 - k[24]!));
    l ^= ((((T[t >>> 24]! + T[256 + ((t >>> 16) & 255)]!) | 0) ^ T[512 + ((t >>> 8) & 255)]!) - T[768 + (t & 255)]!);
    t = (k[9]! + l) | 0;
    t = (t << k[25]!) | (t >>> (32 - k[25]!));
    r ^= (((T[t >>> 24]! ^ T[256 + ((t >>> 16) & 255)]!) - T[512 + ((t >>> 8) & 255)]! + T[768 + (t & 255)]!) | 0);
    t = k[10]! ^ r;
    t = (t << k[26]!) | (t >>> (32 - k[26]!));
    l ^= ((((T[t >>> 24]! - T[256 + ((t >>> 16) & 255)]!) + T[512 + ((t >>> 8) & 255)]!) | 0) ^ T[768 + (t & 255)]!);
    t = (k[11]! - l) | 0;
    t = (t << k[27]!) | (t >>> (32 - k[27]!));
    r ^= ((((T[t >>> 24]! + T[256 + ((t >>> 16) & 255)]!) | 0) ^ T[512 + ((t >>> 8) & 255)]!) - T[768 + (t & 255)]!);
    t = (k[12]! + r) | 0;
    t = (t << k[28]!) | (t >>> (32 - k[28]!));
    l ^= (((T[t >>> 24]! ^ T[256 + ((t >>> 16) & 255)]!) - T[512 + ((t >>> 8) & 255)]! + T[768 + (t & 255)]!) | 0);
    t = k[13]! ^ l;
    t = (t << k[29]!) | (t >>> (32 - k[29]!));
    r ^= ((((T[t >>> 24]! - T[256 + ((t >>> 16) & 255)]!) + T[512 + ((t >>> 8) & 255)]!) | 0) ^ T[768 + (t & 255)]!);
    t = (k[14]! - r) | 0;
    t = (t << k[30]!) | (t >>> (32 - k[30]!));
    l ^= ((((T[t >>> 24]! + T[256 + ((t >>> 16) & 255)]!) | 0) ^ T[512 + ((t >>> 8) & 255)]!) - T[768 + (t & 255)]!);
    t = (k[15]! + l) | 0;
    t = (t << k[31]!) | (t >>> (32 - k[31]!));
    r ^= (((T[t >>> 24]! ^ T[256 + ((t >>> 16) & 255)]!) - T[512 + ((t >>> 8) & 255)]! + T[768 + (t & 255)]!) | 0);
    // The output is R16 then L16.
    w[i] = bswap(r);
    w[i + 1] = bswap(l);
  }

  protected decryptBlock(w: Int32Array, i: number): void {
    const k = this.k;
    let l = bswap(w[i]!);
    let r = bswap(w[i + 1]!);
    let t: number;
    t = (k[15]! + r) | 0;
    t = (t << k[31]!) | (t >>> (32 - k[31]!));
    l ^= (((T[t >>> 24]! ^ T[256 + ((t >>> 16) & 255)]!) - T[512 + ((t >>> 8) & 255)]! + T[768 + (t & 255)]!) | 0);
    t = (k[14]! - l) | 0;
    t = (t << k[30]!) | (t >>> (32 - k[30]!));
    r ^= ((((T[t >>> 24]! + T[256 + ((t >>> 16) & 255)]!) | 0) ^ T[512 + ((t >>> 8) & 255)]!) - T[768 + (t & 255)]!);
    t = k[13]! ^ r;
    t = (t << k[29]!) | (t >>> (32 - k[29]!));
    l ^= ((((T[t >>> 24]! - T[256 + ((t >>> 16) & 255)]!) + T[512 + ((t >>> 8) & 255)]!) | 0) ^ T[768 + (t & 255)]!);
    t = (k[12]! + l) | 0;
    t = (t << k[28]!) | (t >>> (32 - k[28]!));
    r ^= (((T[t >>> 24]! ^ T[256 + ((t >>> 16) & 255)]!) - T[512 + ((t >>> 8) & 255)]! + T[768 + (t & 255)]!) | 0);
    t = (k[11]! - r) | 0;
    t = (t << k[27]!) | (t >>> (32 - k[27]!));
    l ^= ((((T[t >>> 24]! + T[256 + ((t >>> 16) & 255)]!) | 0) ^ T[512 + ((t >>> 8) & 255)]!) - T[768 + (t & 255)]!);
    t = k[10]! ^ l;
    t = (t << k[26]!) | (t >>> (32 - k[26]!));
    r ^= ((((T[t >>> 24]! - T[256 + ((t >>> 16) & 255)]!) + T[512 + ((t >>> 8) & 255)]!) | 0) ^ T[768 + (t & 255)]!);
    t = (k[9]! + r) | 0;
    t = (t << k[25]!) | (t >>> (32 - k[25]!));
    l ^= (((T[t >>> 24]! ^ T[256 + ((t >>> 16) & 255)]!) - T[512 + ((t >>> 8) & 255)]! + T[768 + (t & 255)]!) | 0);
    t = (k[8]! - l) | 0;
    t = (t << k[24]!) | (t >>> (32 - k[24]!));
    r ^= ((((T[t >>> 24]! + T[256 + ((t >>> 16) & 255)]!) | 0) ^ T[512 + ((t >>> 8) & 255)]!) - T[768 + (t & 255)]!);
    t = k[7]! ^ r;
    t = (t << k[23]!) | (t >>> (32 - k[23]!));
    l ^= ((((T[t >>> 24]! - T[256 + ((t >>> 16) & 255)]!) + T[512 + ((t >>> 8) & 255)]!) | 0) ^ T[768 + (t & 255)]!);
    t = (k[6]! + l) | 0;
    t = (t << k[22]!) | (t >>> (32 - k[22]!));
    r ^= (((T[t >>> 24]! ^ T[256 + ((t >>> 16) & 255)]!) - T[512 + ((t >>> 8) & 255)]! + T[768 + (t & 255)]!) | 0);
    t = (k[5]! - r) | 0;
    t = (t << k[21]!) | (t >>> (32 - k[21]!));
    l ^= ((((T[t >>> 24]! + T[256 + ((t >>> 16) & 255)]!) | 0) ^ T[512 + ((t >>> 8) & 255)]!) - T[768 + (t & 255)]!);
    t = k[4]! ^ l;
    t = (t << k[20]!) | (t >>> (32 - k[20]!));
    r ^= ((((T[t >>> 24]! - T[256 + ((t >>> 16) & 255)]!) + T[512 + ((t >>> 8) & 255)]!) | 0) ^ T[768 + (t & 255)]!);
    t = (k[3]! + r) | 0;
    t = (t << k[19]!) | (t >>> (32 - k[19]!));
    l ^= (((T[t >>> 24]! ^ T[256 + ((t >>> 16) & 255)]!) - T[512 + ((t >>> 8) & 255)]! + T[768 + (t & 255)]!) | 0);
    t = (k[2]! - l) | 0;
    t = (t << k[18]!) | (t >>> (32 - k[18]!));
    r ^= ((((T[t >>> 24]! + T[256 + ((t >>> 16) & 255)]!) | 0) ^ T[512 + ((t >>> 8) & 255)]!) - T[768 + (t & 255)]!);
    t = k[1]! ^ r;
    t = (t << k[17]!) | (t >>> (32 - k[17]!));
    l ^= ((((T[t >>> 24]! - T[256 + ((t >>> 16) & 255)]!) + T[512 + ((t >>> 8) & 255)]!) | 0) ^ T[768 + (t & 255)]!);
    t = (k[0]! + l) | 0;
    t = (t << k[16]!) | (t >>> (32 - k[16]!));
    r ^= (((T[t >>> 24]! ^ T[256 + ((t >>> 16) & 255)]!) - T[512 + ((t >>> 8) & 255)]! + T[768 + (t & 255)]!) | 0);
    w[i] = bswap(r);
    w[i + 1] = bswap(l);
  }

  release(): void {
    this.k.fill(0);
  }
}

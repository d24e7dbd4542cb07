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
import type { EcbEngine } from './sector-modes.js';

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

/** A CAST-128 key: masking keys Km1..Km16 and rotation keys Kr1..Kr16. */
export class Cast5 implements EcbEngine {
  readonly blockSize = 8;
  readonly inPlace = true;
  private readonly km = new Uint32Array(16);
  private readonly kr = new Uint8Array(16);

  constructor(key: Uint8Array) {
    if (key.length !== 16) throw new BlockError('EINVAL', `CAST5 key of ${key.length} bytes (16 needed)`);
    const x = Uint8Array.from(key);
    const z = new Uint8Array(16);
    const kr = new Uint32Array(16);
    scheduleHalf(x, z, this.km);
    scheduleHalf(x, z, kr);
    for (let i = 0; i < 16; i++) this.kr[i] = kr[i]! & 31;
    x.fill(0);
    z.fill(0);
    kr.fill(0);
  }

  /** f of round i (0-based): type 1, 2, 3 in turn. */
  private f(i: number, d: number): number {
    const km = this.km[i]!;
    const kr = this.kr[i]!;
    const type = i % 3;
    let t = type === 0 ? (km + d) | 0 : type === 1 ? km ^ d : (km - d) | 0;
    t = (t << kr) | (t >>> ((32 - kr) & 31));
    const a = S1[t >>> 24]!;
    const b = S2[(t >>> 16) & 255]!;
    const c = S3[(t >>> 8) & 255]!;
    const e = S4[t & 255]!;
    if (type === 0) return ((a ^ b) - c + e) | 0;
    if (type === 1) return ((a - b + c) | 0) ^ e;
    return (((a + b) | 0) ^ c) - e;
  }

  private crypt(data: Uint8Array, encrypt: boolean): Uint8Array {
    if (data.length % 8 !== 0) throw new BlockError('EINVAL', `CAST5 data of ${data.length} bytes is not a whole number of 8-byte blocks`);
    for (let at = 0; at < data.length; at += 8) {
      let l = (data[at]! << 24) | (data[at + 1]! << 16) | (data[at + 2]! << 8) | data[at + 3]!;
      let r = (data[at + 4]! << 24) | (data[at + 5]! << 16) | (data[at + 6]! << 8) | data[at + 7]!;
      for (let n = 0; n < 16; n++) {
        const t = l ^ this.f(encrypt ? n : 15 - n, r);
        l = r;
        r = t;
      }
      // The output is R16 then L16.
      data[at] = r >>> 24;
      data[at + 1] = r >>> 16;
      data[at + 2] = r >>> 8;
      data[at + 3] = r;
      data[at + 4] = l >>> 24;
      data[at + 5] = l >>> 16;
      data[at + 6] = l >>> 8;
      data[at + 7] = l;
    }
    return data;
  }

  encrypt(data: Uint8Array): Uint8Array {
    return this.crypt(data, true);
  }

  decrypt(data: Uint8Array): Uint8Array {
    return this.crypt(data, false);
  }

  release(): void {
    this.km.fill(0);
    this.kr.fill(0);
  }
}

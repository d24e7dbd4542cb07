/**
 * MD5, SHA-224 and RIPEMD-160 in TypeScript, for the LUKS hashes WebCrypto
 * lacks (QEMU accepts all three for PBKDF2, the anti-forensic splitter and
 * ESSIV). Node serves them from node:crypto; these run in browsers. Each is a
 * 64-byte-block Merkle–Damgård hash, so one class pads and feeds blocks and
 * PBKDF2-HMAC reuses the keyed inner and outer states across iterations.
 */

/** A hash's compression function over one 64-byte block at `at` of `block`. */
interface Compressor {
  readonly init: readonly number[];
  readonly outLen: number;
  readonly bigEndian: boolean;
  compress(state: Uint32Array, block: DataView, at: number): void;
}

const rotl = (x: number, n: number): number => (x << n) | (x >>> (32 - n));

// --- MD5 (RFC 1321) ---

const MD5_SHIFTS = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
/** T[i] = floor(|sin(i + 1)| * 2^32), as the RFC defines them. */
const MD5_T = Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 0x100000000) >>> 0);
const md5Words = new Uint32Array(16);

const MD5: Compressor = {
  init: [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476],
  outLen: 16,
  bigEndian: false,
  compress(st, dv, at) {
    const x = md5Words;
    for (let i = 0; i < 16; i++) x[i] = dv.getUint32(at + i * 4, true);
    let a = st[0]!;
    let b = st[1]!;
    let c = st[2]!;
    let d = st[3]!;
    for (let i = 0; i < 64; i++) {
      const round = i >> 4;
      let f: number;
      let g: number;
      if (round === 0) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (round === 1) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) & 15;
      } else if (round === 2) {
        f = b ^ c ^ d;
        g = (3 * i + 5) & 15;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) & 15;
      }
      const t = d;
      d = c;
      c = b;
      b = (b + rotl((a + f + MD5_T[i]! + x[g]!) | 0, MD5_SHIFTS[(round << 2) | (i & 3)]!)) | 0;
      a = t;
    }
    st[0] = st[0]! + a;
    st[1] = st[1]! + b;
    st[2] = st[2]! + c;
    st[3] = st[3]! + d;
  },
};

// --- SHA-224 (FIPS 180-4: SHA-256's compression, its own initial state, 28 bytes out) ---

function primes(n: number): number[] {
  const out: number[] = [];
  for (let c = 2; out.length < n; c++) if (out.every((p) => c % p !== 0)) out.push(c);
  return out;
}
/** The first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
const SHA256_K = primes(64).map((p) => {
  const r = Math.cbrt(p);
  return Math.floor((r - Math.floor(r)) * 0x100000000) >>> 0;
});
const shaWords = new Uint32Array(64);

const SHA224: Compressor = {
  init: [0xc1059ed8, 0x367cd507, 0x3070dd17, 0xf70e5939, 0xffc00b31, 0x68581511, 0x64f98fa7, 0xbefa4fa4],
  outLen: 28,
  bigEndian: true,
  compress(st, dv, at) {
    const w = shaWords;
    for (let i = 0; i < 16; i++) w[i] = dv.getUint32(at + i * 4);
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15]!;
      const b = w[i - 2]!;
      const s0 = rotl(a, 25) ^ rotl(a, 14) ^ (a >>> 3);
      const s1 = rotl(b, 15) ^ rotl(b, 13) ^ (b >>> 10);
      w[i] = w[i - 16]! + s0 + w[i - 7]! + s1;
    }
    let a = st[0]!;
    let b = st[1]!;
    let c = st[2]!;
    let d = st[3]!;
    let e = st[4]!;
    let f = st[5]!;
    let g = st[6]!;
    let h = st[7]!;
    for (let i = 0; i < 64; i++) {
      const t1 = (h + (rotl(e, 26) ^ rotl(e, 21) ^ rotl(e, 7)) + ((e & f) ^ (~e & g)) + SHA256_K[i]! + w[i]!) | 0;
      const t2 = ((rotl(a, 30) ^ rotl(a, 19) ^ rotl(a, 10)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    st[0] = st[0]! + a;
    st[1] = st[1]! + b;
    st[2] = st[2]! + c;
    st[3] = st[3]! + d;
    st[4] = st[4]! + e;
    st[5] = st[5]! + f;
    st[6] = st[6]! + g;
    st[7] = st[7]! + h;
  },
};

// --- RIPEMD-160 (Dobbertin, Bosselaers, Preneel) ---

const digits = (s: string): number[] => s.split(' ').map(Number);
/** Message word order of the left and right lines, five rounds of 16. */
const RMD_R = digits('0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 7 4 13 1 10 6 15 3 12 0 9 5 2 14 11 8 3 10 14 4 9 15 8 1 2 7 0 6 13 11 5 12 1 9 11 10 0 8 12 4 13 3 7 15 14 5 6 2 4 0 5 9 7 12 2 10 14 1 3 8 11 6 15 13');
const RMD_RP = digits('5 14 7 0 9 2 11 4 13 6 15 8 1 10 3 12 6 11 3 7 0 13 5 10 14 15 8 12 4 9 1 2 15 5 1 3 7 14 6 9 11 8 12 2 10 0 4 13 8 6 4 1 3 11 15 0 5 12 2 13 9 7 10 14 12 15 10 4 1 5 8 7 6 2 13 14 0 3 9 11');
/** Rotation amounts of the left and right lines. */
const RMD_S = digits('11 14 15 12 5 8 7 9 11 13 14 15 6 7 9 8 7 6 8 13 11 9 7 15 7 12 15 9 11 7 13 12 11 13 6 7 14 9 13 15 14 8 13 6 5 12 7 5 11 12 14 15 14 15 9 8 9 14 5 6 8 6 5 12 9 15 5 11 6 8 13 12 5 12 13 14 11 8 5 6');
const RMD_SP = digits('8 9 9 11 13 15 15 5 7 7 8 11 14 14 12 6 9 13 15 7 12 8 9 11 7 7 12 7 6 15 13 11 9 7 15 11 8 6 6 14 12 13 5 14 13 13 7 5 15 5 8 11 14 14 6 14 6 9 12 9 12 5 15 8 8 5 12 9 12 5 14 6 8 13 6 5 15 13 11 11');
const RMD_K = [0, 0x5a827999, 0x6ed9eba1, 0x8f1bbcdc, 0xa953fd4e];
const RMD_KP = [0x50a28be6, 0x5c4dd124, 0x6d703ef3, 0x7a6d76e9, 0];

function rmdF(round: number, x: number, y: number, z: number): number {
  switch (round) {
    case 0:
      return x ^ y ^ z;
    case 1:
      return (x & y) | (~x & z);
    case 2:
      return (x | ~y) ^ z;
    case 3:
      return (x & z) | (y & ~z);
    default:
      return x ^ (y | ~z);
  }
}
const rmdWords = new Uint32Array(16);

const RIPEMD160: Compressor = {
  init: [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0],
  outLen: 20,
  bigEndian: false,
  compress(st, dv, at) {
    const x = rmdWords;
    for (let i = 0; i < 16; i++) x[i] = dv.getUint32(at + i * 4, true);
    let [al, bl, cl, dl, el] = [st[0]!, st[1]!, st[2]!, st[3]!, st[4]!];
    let [ar, br, cr, dr, er] = [al, bl, cl, dl, el];
    for (let j = 0; j < 80; j++) {
      const round = (j / 16) | 0;
      let t = (rotl((al + rmdF(round, bl, cl, dl) + x[RMD_R[j]!]! + RMD_K[round]!) | 0, RMD_S[j]!) + el) | 0;
      al = el;
      el = dl;
      dl = rotl(cl, 10);
      cl = bl;
      bl = t;
      t = (rotl((ar + rmdF(4 - round, br, cr, dr) + x[RMD_RP[j]!]! + RMD_KP[round]!) | 0, RMD_SP[j]!) + er) | 0;
      ar = er;
      er = dr;
      dr = rotl(cr, 10);
      cr = br;
      br = t;
    }
    const t = (st[1]! + cl + dr) | 0;
    st[1] = st[2]! + dl + er;
    st[2] = st[3]! + el + ar;
    st[3] = st[4]! + al + br;
    st[4] = st[0]! + bl + cr;
    st[0] = t;
  },
};

const COMPRESSORS = { md5: MD5, sha224: SHA224, ripemd160: RIPEMD160 } as const;

/** The hashes this file implements. */
export type TsHashAlg = keyof typeof COMPRESSORS;

export function isTsHash(name: string): name is TsHashAlg {
  return Object.prototype.hasOwnProperty.call(COMPRESSORS, name);
}

/** An incremental hash: update any number of times, then digest once. */
export class TsHash {
  private readonly state: Uint32Array;
  private readonly buf = new Uint8Array(64);
  private readonly view = new DataView(this.buf.buffer);
  private fill = 0;
  private total = 0;

  constructor(
    private readonly c: Compressor,
    state?: Uint32Array,
    total = 0,
  ) {
    this.state = state ? state.slice() : Uint32Array.from(c.init);
    this.total = total;
  }

  static create(alg: TsHashAlg): TsHash {
    return new TsHash(COMPRESSORS[alg]);
  }

  /** A copy at a block boundary (for HMAC's precomputed pads). */
  clone(): TsHash {
    if (this.fill !== 0) throw new Error('TsHash.clone: only at a block boundary');
    return new TsHash(this.c, this.state, this.total);
  }

  update(data: Uint8Array): this {
    let i = 0;
    this.total += data.length;
    if (this.fill > 0) {
      const n = Math.min(64 - this.fill, data.length);
      this.buf.set(data.subarray(0, n), this.fill);
      this.fill += n;
      i = n;
      if (this.fill < 64) return this;
      this.c.compress(this.state, this.view, 0);
      this.fill = 0;
    }
    if (data.length - i >= 64) {
      const dv = new DataView(data.buffer, data.byteOffset, data.length);
      for (; i + 64 <= data.length; i += 64) this.c.compress(this.state, dv, i);
    }
    this.buf.set(data.subarray(i), 0);
    this.fill = data.length - i;
    return this;
  }

  digest(): Uint8Array {
    const bits = this.total * 8;
    const pad = new Uint8Array(((this.fill < 56 ? 56 : 120) - this.fill) + 8);
    pad[0] = 0x80;
    const dv = new DataView(pad.buffer);
    const lo = bits >>> 0;
    const hi = Math.floor(bits / 0x100000000) >>> 0;
    if (this.c.bigEndian) {
      dv.setUint32(pad.length - 8, hi);
      dv.setUint32(pad.length - 4, lo);
    } else {
      dv.setUint32(pad.length - 8, lo, true);
      dv.setUint32(pad.length - 4, hi, true);
    }
    this.update(pad);
    const out = new Uint8Array(this.state.length * 4);
    const ov = new DataView(out.buffer);
    for (let i = 0; i < this.state.length; i++) ov.setUint32(i * 4, this.state[i]!, !this.c.bigEndian);
    return out.subarray(0, this.c.outLen);
  }
}

/** The digest of the concatenated parts. */
export function tsDigest(alg: TsHashAlg, parts: Uint8Array[]): Uint8Array {
  const h = TsHash.create(alg);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** PBKDF2-HMAC (RFC 8018) over one of these hashes. */
export function tsPbkdf2(alg: TsHashAlg, password: Uint8Array, salt: Uint8Array, iterations: number, length: number): Uint8Array {
  const c = COMPRESSORS[alg];
  let key = password;
  if (key.length > 64) key = tsDigest(alg, [key]);
  const pad = new Uint8Array(64);
  pad.set(key);
  for (let i = 0; i < 64; i++) pad[i]! ^= 0x36;
  const inner = new TsHash(c).update(pad);
  for (let i = 0; i < 64; i++) pad[i]! ^= 0x36 ^ 0x5c;
  const outer = new TsHash(c).update(pad);
  pad.fill(0);
  const hmac = (data: Uint8Array[]): Uint8Array => {
    const h = inner.clone();
    for (const d of data) h.update(d);
    return outer.clone().update(h.digest()).digest();
  };
  const out = new Uint8Array(length);
  const index = new Uint8Array(4);
  for (let block = 1, at = 0; at < length; block++, at += c.outLen) {
    new DataView(index.buffer).setUint32(0, block);
    let u = hmac([salt, index]);
    const t = u.slice();
    for (let i = 1; i < iterations; i++) {
      u = hmac([u]);
      for (let j = 0; j < t.length; j++) t[j]! ^= u[j]!;
    }
    out.set(t.subarray(0, Math.min(c.outLen, length - at)), at);
  }
  return out;
}

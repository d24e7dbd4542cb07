/**
 * The TypeScript twin of the WASM AES (assembly/aes.ts): the same bit-sliced,
 * table-free construction on 32-bit planes (two blocks per batch; lane =
 * 16 * block + byte), the S-box computed as x^254 in GF(2^8) and the affine
 * map. Same modes, IV generators and answers; used where the module cannot load.
 */
import { BlockError } from '../core/errors.js';
import type { AesKey, AesMode, IvGen } from '../wasm/aes.js';

type Planes = Uint32Array; // 8 planes

function pack(src: Uint8Array, at: number, p: Planes): void {
  p.fill(0);
  for (let j = 0; j < 32; j++) {
    const v = src[at + j]!;
    for (let k = 0; k < 8; k++) p[k]! |= ((v >>> k) & 1) << j;
  }
}

function unpack(p: Planes, dst: Uint8Array, at: number): void {
  for (let j = 0; j < 32; j++) {
    let v = 0;
    for (let k = 0; k < 8; k++) v |= ((p[k]! >>> j) & 1) << k;
    dst[at + j] = v;
  }
}

/** out = a * b in GF(2^8), lane by lane. */
function gfMul(a: Planes, b: Planes, out: Planes): void {
  const c = new Uint32Array(15);
  for (let i = 0; i < 8; i++) for (let j = 0; j < 8; j++) c[i + j]! ^= a[i]! & b[j]!;
  for (let n = 14; n >= 8; n--) {
    const h = c[n]!;
    c[n - 8]! ^= h;
    c[n - 7]! ^= h;
    c[n - 5]! ^= h;
    c[n - 4]! ^= h;
  }
  for (let i = 0; i < 8; i++) out[i] = c[i]!;
}

function gfInvert(a: Planes, out: Planes): void {
  const x2 = new Uint32Array(8), x3 = new Uint32Array(8), x12 = new Uint32Array(8), t = new Uint32Array(8);
  gfMul(a, a, x2);
  gfMul(x2, a, x3);
  gfMul(x3, x3, x12); // x^6
  gfMul(x12, x12, x12); // x^12
  gfMul(x12, x3, t); // x^15
  for (let i = 0; i < 4; i++) gfMul(t, t, t); // x^240
  gfMul(t, x12, t); // x^252
  gfMul(t, x2, out); // x^254
}

function subBytes(p: Planes): void {
  const x = new Uint32Array(8);
  gfInvert(p, x);
  for (let i = 0; i < 8; i++) {
    let v = x[i]! ^ x[(i + 4) & 7]! ^ x[(i + 5) & 7]! ^ x[(i + 6) & 7]! ^ x[(i + 7) & 7]!;
    if ((0x63 >>> i) & 1) v = ~v;
    p[i] = v;
  }
}

function invSubBytes(p: Planes): void {
  const y = new Uint32Array(8);
  for (let i = 0; i < 8; i++) {
    let v = p[(i + 2) & 7]! ^ p[(i + 5) & 7]! ^ p[(i + 7) & 7]!;
    if ((0x05 >>> i) & 1) v = ~v;
    y[i] = v;
  }
  gfInvert(y, p);
}

/** Rotates each 16-bit group right by s. */
function rotGroups(x: number, s: number): number {
  const lo = ((0xffff >>> s) * 0x00010001) >>> 0;
  return (((x >>> s) & lo) | ((x << (16 - s)) & ~lo)) >>> 0;
}

function shiftRows(p: Planes, inverse: boolean): void {
  for (let k = 0; k < 8; k++) {
    const x = p[k]!;
    p[k] = (x & 0x11111111) | rotGroups(x & 0x22222222, inverse ? 12 : 4) | rotGroups(x & 0x44444444, 8) | rotGroups(x & 0x88888888, inverse ? 4 : 12);
  }
}

/** Lane r of each column takes lane r + n (mod 4). */
function rotRows(x: number, n: number): number {
  const lo = ((0xf >>> n) * 0x11111111) >>> 0;
  return (((x >>> n) & lo) | ((x << (4 - n)) & ~lo)) >>> 0;
}

function xtime(s: Planes, d: Planes): void {
  const x7 = s[7]!;
  d[7] = s[6]!;
  d[6] = s[5]!;
  d[5] = s[4]!;
  d[4] = s[3]! ^ x7;
  d[3] = s[2]! ^ x7;
  d[2] = s[1]!;
  d[1] = s[0]! ^ x7;
  d[0] = x7;
}

function mixColumns(p: Planes): void {
  const t = new Uint32Array(8), u = new Uint32Array(8);
  for (let k = 0; k < 8; k++) t[k] = p[k]! ^ rotRows(p[k]!, 1);
  xtime(t, u);
  for (let k = 0; k < 8; k++) p[k] = u[k]! ^ rotRows(p[k]!, 1) ^ rotRows(t[k]!, 2);
}

function invMixColumns(p: Planes): void {
  const t = new Uint32Array(8), u = new Uint32Array(8);
  for (let k = 0; k < 8; k++) t[k] = p[k]! ^ rotRows(p[k]!, 2);
  xtime(t, u);
  xtime(u, t);
  for (let k = 0; k < 8; k++) p[k]! ^= t[k]!;
  mixColumns(p);
}

/** An expanded key: round keys as planes, the round count. */
class TsKey implements AesKey {
  readonly ctx = 0;
  constructor(
    readonly rounds: Uint32Array[],
    readonly nr: number,
  ) {}
  release(): void {
    for (const r of this.rounds) r.fill(0);
  }
}

function expand(key: Uint8Array): TsKey {
  const nk = key.length / 4;
  const nr = nk + 6;
  const w = new Uint8Array(16 * (nr + 1));
  w.set(key);
  const sub = (bytes: Uint8Array): void => {
    const buf = new Uint8Array(32);
    buf.set(bytes);
    const p = new Uint32Array(8);
    pack(buf, 0, p);
    subBytes(p);
    unpack(p, buf, 0);
    bytes.set(buf.subarray(0, 4));
  };
  let rcon = 1;
  for (let i = nk; i < 4 * (nr + 1); i++) {
    const t = w.slice(4 * (i - 1), 4 * i);
    if (i % nk === 0) {
      t.set([t[1]!, t[2]!, t[3]!, t[0]!]);
      sub(t);
      t[0]! ^= rcon;
      rcon = ((rcon << 1) ^ ((rcon >>> 7) * 0x11b)) & 0xff;
    } else if (nk > 6 && i % nk === 4) {
      sub(t);
    }
    for (let b = 0; b < 4; b++) w[4 * i + b] = w[4 * (i - nk) + b]! ^ t[b]!;
  }
  const rounds: Uint32Array[] = [];
  const two = new Uint8Array(32);
  for (let r = 0; r <= nr; r++) {
    two.set(w.subarray(16 * r, 16 * r + 16), 0);
    two.set(w.subarray(16 * r, 16 * r + 16), 16);
    const p = new Uint32Array(8);
    pack(two, 0, p);
    rounds.push(p);
  }
  w.fill(0);
  two.fill(0);
  return new TsKey(rounds, nr);
}

/** Runs the cipher over two blocks (32 bytes) at `at`, in place. */
function crypt2(k: TsKey, buf: Uint8Array, at: number, encrypt: boolean): void {
  const p = new Uint32Array(8);
  pack(buf, at, p);
  const ark = (r: number) => {
    const rk = k.rounds[r]!;
    for (let i = 0; i < 8; i++) p[i]! ^= rk[i]!;
  };
  if (encrypt) {
    ark(0);
    for (let r = 1; r < k.nr; r++) {
      subBytes(p);
      shiftRows(p, false);
      mixColumns(p);
      ark(r);
    }
    subBytes(p);
    shiftRows(p, false);
    ark(k.nr);
  } else {
    ark(k.nr);
    for (let r = k.nr - 1; r >= 1; r--) {
      shiftRows(p, true);
      invSubBytes(p);
      ark(r);
      invMixColumns(p);
    }
    shiftRows(p, true);
    invSubBytes(p);
    ark(0);
  }
  unpack(p, buf, at);
  p.fill(0);
}

/** One block through the cipher. */
function block(k: TsKey, b: Uint8Array, encrypt: boolean): void {
  const two = new Uint8Array(32);
  two.set(b.subarray(0, 16));
  crypt2(k, two, 0, encrypt);
  b.set(two.subarray(0, 16));
}

/** The TypeScript AES engine, with the WASM engine's interface. */
export class TsAesEngine {
  key(bytes: Uint8Array): AesKey {
    if (bytes.length !== 16 && bytes.length !== 24 && bytes.length !== 32) {
      throw new BlockError('EINVAL', `AES key length ${bytes.length} is not 16, 24 or 32 bytes`);
    }
    return expand(bytes);
  }

  crypt(mode: AesMode, key: AesKey, tweak: AesKey | undefined, ivgen: IvGen, ivKey: AesKey | undefined, buf: Uint8Array, sector: number, sectorSize: number, encrypt: boolean): void {
    if (buf.length % 16 !== 0 || sectorSize % 16 !== 0 || sectorSize <= 0) {
      throw new BlockError('EINVAL', `AES ${mode}: length ${buf.length} or sector size ${sectorSize} is not a multiple of 16`);
    }
    const k = key as TsKey;
    if (mode === 'ecb') {
      for (let off = 0; off < buf.length; off += 32) {
        const n = Math.min(32, buf.length - off);
        const two = new Uint8Array(32);
        two.set(buf.subarray(off, off + n));
        crypt2(k, two, 0, encrypt);
        buf.set(two.subarray(0, n), off);
      }
      return;
    }
    for (let off = 0, s = sector; off < buf.length; off += sectorSize, s++) {
      const iv = new Uint8Array(16);
      const dv = new DataView(iv.buffer);
      dv.setUint32(0, s >>> 0, true);
      if (ivgen !== 'plain') dv.setUint32(4, Math.floor(s / 0x100000000) >>> 0, true);
      if (ivgen === 'essiv') block(ivKey as TsKey, iv, true);
      const sec = buf.subarray(off, Math.min(buf.length, off + sectorSize));
      if (mode === 'xts') this.xts(k, tweak as TsKey, iv, sec, encrypt);
      else this.cbc(k, iv, sec, encrypt);
    }
  }

  private xts(k: TsKey, tk: TsKey, iv: Uint8Array, sec: Uint8Array, encrypt: boolean): void {
    const t = iv.slice();
    block(tk, t, true);
    for (let b = 0; b < sec.length; b += 16) {
      const blk = sec.subarray(b, b + 16);
      for (let i = 0; i < 16; i++) blk[i]! ^= t[i]!;
      block(k, blk, encrypt);
      for (let i = 0; i < 16; i++) blk[i]! ^= t[i]!;
      // The tweak times alpha, constant time: the carry selects 0x87 by mask.
      const carry = t[15]! >>> 7;
      for (let i = 15; i > 0; i--) t[i] = ((t[i]! << 1) | (t[i - 1]! >>> 7)) & 0xff;
      t[0] = ((t[0]! << 1) & 0xff) ^ (0x87 & -carry);
    }
  }

  private cbc(k: TsKey, iv: Uint8Array, sec: Uint8Array, encrypt: boolean): void {
    let chain = iv.slice();
    for (let b = 0; b < sec.length; b += 16) {
      const blk = sec.subarray(b, b + 16);
      if (encrypt) {
        for (let i = 0; i < 16; i++) blk[i]! ^= chain[i]!;
        block(k, blk, true);
        chain = blk.slice();
      } else {
        const c = blk.slice();
        block(k, blk, false);
        for (let i = 0; i < 16; i++) blk[i]! ^= chain[i]!;
        chain = c;
      }
    }
  }
}

// AES (128/192/256) for disk encryption: ECB, CBC and XTS over 512-byte sectors with
// the plain / plain64 / essiv IV generators of LUKS and qcow2.
//
// Constant time and table-free: the state of four blocks is held bit-sliced in eight
// 64-bit planes (plane k holds bit k of each of the 64 bytes; lane = 16 * block + byte),
// and the S-box is computed, not looked up: the inverse in GF(2^8) as x^254 with
// bit-sliced multiplications, followed by the affine map. No branch and no memory
// index depends on key or data.
//
// Memory contract: the caller allocates a key context of CTX_BYTES (alloc), fills it
// with expandKey, and passes pointers to data in this module's memory. Lengths are
// multiples of 16. Results are 0 or a negative status (shared/common.ts).

import { E_INVAL } from './shared/common';

/** Bytes of one key context: the round count, then 15 rounds of 8 bit-sliced planes. */
export const CTX_BYTES: i32 = 8 + 15 * 64;

// Scratch areas (allocated once, never freed).
const STATE: usize = heap.alloc(64); // the 8 planes being worked on
const T0: usize = heap.alloc(64); // multiplication operands and results
const T1: usize = heap.alloc(64);
const T2: usize = heap.alloc(64);
const T3: usize = heap.alloc(64);
const T4: usize = heap.alloc(64);
const WORK: usize = heap.alloc(64); // four blocks in byte order
const TWEAKS: usize = heap.alloc(64); // the XTS tweaks of the four blocks in WORK
const IV: usize = heap.alloc(16);
const CHAIN: usize = heap.alloc(16);
const KEYWORDS: usize = heap.alloc(240); // expanded key in byte order

/** Allocates `size` bytes of module memory (16-byte aligned). Never freed (stub runtime). */
export function alloc(size: usize): usize {
  return heap.alloc(size);
}

// ---------------------------------------------------------------- bit slicing

/** Packs the 64 bytes at `src` into the planes at `dst`. */
function pack(src: usize, dst: usize): void {
  let p0: u64 = 0, p1: u64 = 0, p2: u64 = 0, p3: u64 = 0;
  let p4: u64 = 0, p5: u64 = 0, p6: u64 = 0, p7: u64 = 0;
  for (let j: i32 = 0; j < 64; j++) {
    const v = <u64>load<u8>(src + <usize>j);
    const s = <u64>j;
    p0 |= (v & 1) << s;
    p1 |= ((v >> 1) & 1) << s;
    p2 |= ((v >> 2) & 1) << s;
    p3 |= ((v >> 3) & 1) << s;
    p4 |= ((v >> 4) & 1) << s;
    p5 |= ((v >> 5) & 1) << s;
    p6 |= ((v >> 6) & 1) << s;
    p7 |= ((v >> 7) & 1) << s;
  }
  store<u64>(dst, p0, 0); store<u64>(dst, p1, 8); store<u64>(dst, p2, 16); store<u64>(dst, p3, 24);
  store<u64>(dst, p4, 32); store<u64>(dst, p5, 40); store<u64>(dst, p6, 48); store<u64>(dst, p7, 56);
}

/** Unpacks the planes at `src` into 64 bytes at `dst`. */
function unpack(src: usize, dst: usize): void {
  const p0 = load<u64>(src, 0), p1 = load<u64>(src, 8), p2 = load<u64>(src, 16), p3 = load<u64>(src, 24);
  const p4 = load<u64>(src, 32), p5 = load<u64>(src, 40), p6 = load<u64>(src, 48), p7 = load<u64>(src, 56);
  for (let j: i32 = 0; j < 64; j++) {
    const s = <u64>j;
    const v = ((p0 >> s) & 1) | (((p1 >> s) & 1) << 1) | (((p2 >> s) & 1) << 2) | (((p3 >> s) & 1) << 3) |
      (((p4 >> s) & 1) << 4) | (((p5 >> s) & 1) << 5) | (((p6 >> s) & 1) << 6) | (((p7 >> s) & 1) << 7);
    store<u8>(dst + <usize>j, <u8>v);
  }
}

// ---------------------------------------------------------------- GF(2^8), bit-sliced

/** out = a * b in GF(2^8), lane by lane (out may alias a or b); unrolled, in locals. */
function gfMul(a: usize, b: usize, out: usize): void {
  const a0 = load<u64>(a, 0), b0 = load<u64>(b, 0);
  const a1 = load<u64>(a, 8), b1 = load<u64>(b, 8);
  const a2 = load<u64>(a, 16), b2 = load<u64>(b, 16);
  const a3 = load<u64>(a, 24), b3 = load<u64>(b, 24);
  const a4 = load<u64>(a, 32), b4 = load<u64>(b, 32);
  const a5 = load<u64>(a, 40), b5 = load<u64>(b, 40);
  const a6 = load<u64>(a, 48), b6 = load<u64>(b, 48);
  const a7 = load<u64>(a, 56), b7 = load<u64>(b, 56);
  let c0: u64 = (a0 & b0);
  let c1: u64 = (a0 & b1) ^ (a1 & b0);
  let c2: u64 = (a0 & b2) ^ (a1 & b1) ^ (a2 & b0);
  let c3: u64 = (a0 & b3) ^ (a1 & b2) ^ (a2 & b1) ^ (a3 & b0);
  let c4: u64 = (a0 & b4) ^ (a1 & b3) ^ (a2 & b2) ^ (a3 & b1) ^ (a4 & b0);
  let c5: u64 = (a0 & b5) ^ (a1 & b4) ^ (a2 & b3) ^ (a3 & b2) ^ (a4 & b1) ^ (a5 & b0);
  let c6: u64 = (a0 & b6) ^ (a1 & b5) ^ (a2 & b4) ^ (a3 & b3) ^ (a4 & b2) ^ (a5 & b1) ^ (a6 & b0);
  let c7: u64 = (a0 & b7) ^ (a1 & b6) ^ (a2 & b5) ^ (a3 & b4) ^ (a4 & b3) ^ (a5 & b2) ^ (a6 & b1) ^ (a7 & b0);
  let c8: u64 = (a1 & b7) ^ (a2 & b6) ^ (a3 & b5) ^ (a4 & b4) ^ (a5 & b3) ^ (a6 & b2) ^ (a7 & b1);
  let c9: u64 = (a2 & b7) ^ (a3 & b6) ^ (a4 & b5) ^ (a5 & b4) ^ (a6 & b3) ^ (a7 & b2);
  let c10: u64 = (a3 & b7) ^ (a4 & b6) ^ (a5 & b5) ^ (a6 & b4) ^ (a7 & b3);
  let c11: u64 = (a4 & b7) ^ (a5 & b6) ^ (a6 & b5) ^ (a7 & b4);
  let c12: u64 = (a5 & b7) ^ (a6 & b6) ^ (a7 & b5);
  let c13: u64 = (a6 & b7) ^ (a7 & b6);
  let c14: u64 = (a7 & b7);
  // Reduce modulo x^8 + x^4 + x^3 + x + 1: x^n = x^(n-8) * (x^4 + x^3 + x + 1).
  c6 ^= c14;
  c7 ^= c14;
  c9 ^= c14;
  c10 ^= c14;
  c5 ^= c13;
  c6 ^= c13;
  c8 ^= c13;
  c9 ^= c13;
  c4 ^= c12;
  c5 ^= c12;
  c7 ^= c12;
  c8 ^= c12;
  c3 ^= c11;
  c4 ^= c11;
  c6 ^= c11;
  c7 ^= c11;
  c2 ^= c10;
  c3 ^= c10;
  c5 ^= c10;
  c6 ^= c10;
  c1 ^= c9;
  c2 ^= c9;
  c4 ^= c9;
  c5 ^= c9;
  c0 ^= c8;
  c1 ^= c8;
  c3 ^= c8;
  c4 ^= c8;
  store<u64>(out, c0, 0);
  store<u64>(out, c1, 8);
  store<u64>(out, c2, 16);
  store<u64>(out, c3, 24);
  store<u64>(out, c4, 32);
  store<u64>(out, c5, 40);
  store<u64>(out, c6, 48);
  store<u64>(out, c7, 56);
}

/** out = a^2 (squaring is linear: bit i moves to 2i, then the reduction). */
function gfSquare(a: usize, out: usize): void {
  const a0 = load<u64>(a, 0);
  const a1 = load<u64>(a, 8);
  const a2 = load<u64>(a, 16);
  const a3 = load<u64>(a, 24);
  const a4 = load<u64>(a, 32);
  const a5 = load<u64>(a, 40);
  const a6 = load<u64>(a, 48);
  const a7 = load<u64>(a, 56);
  store<u64>(out, a0 ^ a4 ^ a6, 0);
  store<u64>(out, a4 ^ a6 ^ a7, 8);
  store<u64>(out, a1 ^ a5, 16);
  store<u64>(out, a4 ^ a5 ^ a6 ^ a7, 24);
  store<u64>(out, a2 ^ a4 ^ a7, 32);
  store<u64>(out, a5 ^ a6, 40);
  store<u64>(out, a3 ^ a5, 48);
  store<u64>(out, a6 ^ a7, 56);
}

/** out = a^254, the multiplicative inverse (0 stays 0). */
function gfInvert(a: usize, out: usize): void {
  gfSquare(a, T1); // x^2
  gfMul(T1, a, T2); // x^3
  gfSquare(T2, T3); // x^6
  gfSquare(T3, T3); // x^12
  gfMul(T3, T2, T4); // x^15
  gfSquare(T4, T4); // x^30
  gfSquare(T4, T4); // x^60
  gfSquare(T4, T4); // x^120
  gfSquare(T4, T4); // x^240
  gfMul(T4, T3, T4); // x^252
  gfMul(T4, T1, out); // x^254
}

/** The AES S-box on every lane of the planes at `p`. */
function subBytes(p: usize): void {
  gfInvert(p, T0);
  const x0 = load<u64>(T0, 0), x1 = load<u64>(T0, 8), x2 = load<u64>(T0, 16), x3 = load<u64>(T0, 24);
  const x4 = load<u64>(T0, 32), x5 = load<u64>(T0, 40), x6 = load<u64>(T0, 48), x7 = load<u64>(T0, 56);
  // b_i ^ b_(i+4) ^ b_(i+5) ^ b_(i+6) ^ b_(i+7) ^ bit i of 0x63 (bits 0, 1, 5, 6).
  store<u64>(p, ~(x0 ^ x4 ^ x5 ^ x6 ^ x7), 0);
  store<u64>(p, ~(x1 ^ x5 ^ x6 ^ x7 ^ x0), 8);
  store<u64>(p, x2 ^ x6 ^ x7 ^ x0 ^ x1, 16);
  store<u64>(p, x3 ^ x7 ^ x0 ^ x1 ^ x2, 24);
  store<u64>(p, x4 ^ x0 ^ x1 ^ x2 ^ x3, 32);
  store<u64>(p, ~(x5 ^ x1 ^ x2 ^ x3 ^ x4), 40);
  store<u64>(p, ~(x6 ^ x2 ^ x3 ^ x4 ^ x5), 48);
  store<u64>(p, x7 ^ x3 ^ x4 ^ x5 ^ x6, 56);
}

/** The inverse S-box: undo the affine map (b'_(i+2) ^ b'_(i+5) ^ b'_(i+7) ^ bit i of 0x05), then invert. */
function invSubBytes(p: usize): void {
  const y0 = load<u64>(p, 0), y1 = load<u64>(p, 8), y2 = load<u64>(p, 16), y3 = load<u64>(p, 24);
  const y4 = load<u64>(p, 32), y5 = load<u64>(p, 40), y6 = load<u64>(p, 48), y7 = load<u64>(p, 56);
  store<u64>(T0, ~(y2 ^ y5 ^ y7), 0);
  store<u64>(T0, y3 ^ y6 ^ y0, 8);
  store<u64>(T0, ~(y4 ^ y7 ^ y1), 16);
  store<u64>(T0, y5 ^ y0 ^ y2, 24);
  store<u64>(T0, y6 ^ y1 ^ y3, 32);
  store<u64>(T0, y7 ^ y2 ^ y4, 40);
  store<u64>(T0, y0 ^ y3 ^ y5, 48);
  store<u64>(T0, y1 ^ y4 ^ y6, 56);
  gfInvert(T0, p);
}

// ---------------------------------------------------------------- linear layers

const ROW1: u64 = 0x2222222222222222;
const ROW2: u64 = 0x4444444444444444;
const ROW3: u64 = 0x8888888888888888;
const ROW0: u64 = 0x1111111111111111;

/** Rotates every 16-bit group of `x` right by `s` bits (0 < s < 16). */
// @ts-ignore: decorator
@inline function rotGroups(x: u64, s: u64): u64 {
  const lo: u64 = (<u64>0xffff >> s) * 0x0001000100010001;
  return ((x >> s) & lo) | ((x << (16 - s)) & ~lo);
}

/** ShiftRows: row r of each block moves left by r columns (lanes r + 4c). */
function shiftRows(p: usize, inverse: bool): void {
  for (let k: usize = 0; k < 64; k += 8) {
    const x = load<u64>(p + k);
    const r1 = rotGroups(x & ROW1, inverse ? 12 : 4);
    const r2 = rotGroups(x & ROW2, 8);
    const r3 = rotGroups(x & ROW3, inverse ? 4 : 12);
    store<u64>(p + k, (x & ROW0) | r1 | r2 | r3);
  }
}

/** Lane (r, c) takes the value of lane (r + n mod 4, c), for every column. */
// @ts-ignore: decorator
@inline function rotRows(x: u64, n: u64): u64 {
  const lo: u64 = (<u64>0xf >> n) * 0x1111111111111111;
  return ((x >> n) & lo) | ((x << (4 - n)) & ~lo);
}

/** Multiplies every lane by x (xtime) from the planes at `src` into `dst`. */
function xtime(src: usize, dst: usize): void {
  const x0 = load<u64>(src, 0), x1 = load<u64>(src, 8), x2 = load<u64>(src, 16), x3 = load<u64>(src, 24);
  const x4 = load<u64>(src, 32), x5 = load<u64>(src, 40), x6 = load<u64>(src, 48), x7 = load<u64>(src, 56);
  store<u64>(dst, x7, 0);
  store<u64>(dst, x0 ^ x7, 8);
  store<u64>(dst, x1, 16);
  store<u64>(dst, x2 ^ x7, 24);
  store<u64>(dst, x3 ^ x7, 32);
  store<u64>(dst, x4, 40);
  store<u64>(dst, x5, 48);
  store<u64>(dst, x6, 56);
}

/** MixColumns: b_r = 2(a_r ^ a_(r+1)) ^ a_(r+1) ^ a_(r+2) ^ a_(r+3). */
function mixColumns(p: usize): void {
  for (let k: usize = 0; k < 64; k += 8) {
    const a = load<u64>(p + k);
    store<u64>(T0 + k, a ^ rotRows(a, 1));
  }
  xtime(T0, T1);
  for (let k: usize = 0; k < 64; k += 8) {
    const a = load<u64>(p + k);
    const t = load<u64>(T0 + k);
    store<u64>(p + k, load<u64>(T1 + k) ^ rotRows(a, 1) ^ rotRows(t, 2));
  }
}

/** InvMixColumns: multiply each column by 04x^2 + 05 first, then MixColumns. */
function invMixColumns(p: usize): void {
  for (let k: usize = 0; k < 64; k += 8) {
    const a = load<u64>(p + k);
    store<u64>(T0 + k, a ^ rotRows(a, 2));
  }
  xtime(T0, T1);
  xtime(T1, T0);
  for (let k: usize = 0; k < 64; k += 8) store<u64>(p + k, load<u64>(p + k) ^ load<u64>(T0 + k));
  mixColumns(p);
}

// @ts-ignore: decorator
@inline function addRoundKey(ctx: usize, r: i32, p: usize): void {
  const rk = ctx + 8 + (<usize>r << 6);
  for (let k: usize = 0; k < 64; k += 8) store<u64>(p + k, load<u64>(p + k) ^ load<u64>(rk + k));
}

/** Encrypts the planes at STATE in place. */
function encryptState(ctx: usize): void {
  const nr = load<i32>(ctx);
  addRoundKey(ctx, 0, STATE);
  for (let r: i32 = 1; r < nr; r++) {
    subBytes(STATE);
    shiftRows(STATE, false);
    mixColumns(STATE);
    addRoundKey(ctx, r, STATE);
  }
  subBytes(STATE);
  shiftRows(STATE, false);
  addRoundKey(ctx, nr, STATE);
}

/** Decrypts the planes at STATE in place. */
function decryptState(ctx: usize): void {
  const nr = load<i32>(ctx);
  addRoundKey(ctx, nr, STATE);
  for (let r: i32 = nr - 1; r >= 1; r--) {
    shiftRows(STATE, true);
    invSubBytes(STATE);
    addRoundKey(ctx, r, STATE);
    invMixColumns(STATE);
  }
  shiftRows(STATE, true);
  invSubBytes(STATE);
  addRoundKey(ctx, 0, STATE);
}

/** Runs the cipher over the four blocks at WORK in place. */
function cryptWork(ctx: usize, encrypt: bool): void {
  pack(WORK, STATE);
  if (encrypt) encryptState(ctx);
  else decryptState(ctx);
  unpack(STATE, WORK);
}

// ---------------------------------------------------------------- key schedule

/** The S-box of the four bytes of `w` (lanes 0..3). */
function subWord(w: u32): u32 {
  memory.fill(WORK, 0, 64);
  store<u32>(WORK, w);
  pack(WORK, STATE);
  subBytes(STATE);
  unpack(STATE, WORK);
  return load<u32>(WORK);
}

/**
 * Expands a 16, 24 or 32-byte key at `key` into the context at `ctx`.
 * Returns 0, or E_INVAL for another key length.
 */
export function expandKey(ctx: usize, key: usize, keyLen: i32): i32 {
  if (keyLen != 16 && keyLen != 24 && keyLen != 32) return E_INVAL;
  const nk = keyLen >> 2;
  const nr = nk + 6;
  const words = (nr + 1) << 2;
  memory.copy(KEYWORDS, key, <usize>keyLen);
  let rcon: u32 = 1;
  for (let i = nk; i < words; i++) {
    let t = load<u32>(KEYWORDS + (<usize>(i - 1) << 2));
    if (i % nk == 0) {
      // Bytes are little-endian in the word: RotWord is a right rotation by 8.
      t = subWord(rotr<u32>(t, 8)) ^ rcon;
      rcon = (rcon << 1) ^ (((rcon >> 7) & 1) * 0x11b);
    } else if (nk > 6 && i % nk == 4) {
      t = subWord(t);
    }
    store<u32>(KEYWORDS + (<usize>i << 2), load<u32>(KEYWORDS + (<usize>(i - nk) << 2)) ^ t);
  }
  store<i32>(ctx, nr);
  for (let r: i32 = 0; r <= nr; r++) {
    // The round key repeated for the four blocks of a batch.
    for (let b: usize = 0; b < 4; b++) memory.copy(WORK + (b << 4), KEYWORDS + (<usize>r << 4), 16);
    pack(WORK, ctx + 8 + (<usize>r << 6));
  }
  memory.fill(KEYWORDS, 0, 240);
  memory.fill(WORK, 0, 64);
  memory.fill(STATE, 0, 64);
  return 0;
}

/** Clears a key context. */
export function wipeKey(ctx: usize): void {
  memory.fill(ctx, 0, <usize>CTX_BYTES);
}

// ---------------------------------------------------------------- modes

/** Encrypts (or decrypts) `len` bytes at `ptr` block by block (ECB). */
export function ecb(ctx: usize, ptr: usize, len: i32, encrypt: bool): i32 {
  if (len < 0 || (len & 15) != 0) return E_INVAL;
  for (let off: i32 = 0; off < len; off += 64) {
    const n = <usize>min(64, len - off);
    const at = ptr + <usize>off;
    memory.fill(WORK, 0, 64);
    memory.copy(WORK, at, n);
    cryptWork(ctx, encrypt);
    memory.copy(at, WORK, n);
  }
  return 0;
}

/** IV generators (ivMode of crypt). */
const IV_PLAIN: i32 = 0;
const IV_PLAIN64: i32 = 1;
const IV_ESSIV: i32 = 2;

/** Fills IV with the IV of sector (hi, lo). */
function makeIv(mode: i32, ivCtx: usize, lo: u32, hi: u32): void {
  memory.fill(IV, 0, 16);
  store<u32>(IV, lo);
  if (mode != IV_PLAIN) store<u32>(IV, hi, 4);
  if (mode == IV_ESSIV) {
    memory.fill(WORK, 0, 64);
    memory.copy(WORK, IV, 16);
    cryptWork(ivCtx, true);
    memory.copy(IV, WORK, 16);
  }
}

/** XTS over one sector of `len` bytes; the tweak starts as E(tweakCtx, IV). */
function xtsSector(ctx: usize, tweakCtx: usize, at: usize, len: i32, encrypt: bool): void {
  memory.fill(WORK, 0, 64);
  memory.copy(WORK, IV, 16);
  cryptWork(tweakCtx, true);
  let t0 = load<u64>(WORK), t1 = load<u64>(WORK, 8);
  for (let off: i32 = 0; off < len; off += 64) {
    const n = min(64, len - off);
    memory.fill(WORK, 0, 64);
    for (let b: i32 = 0; b < n; b += 16) {
      const src = at + <usize>(off + b);
      const w = WORK + <usize>b;
      store<u64>(TWEAKS + <usize>b, t0);
      store<u64>(TWEAKS + <usize>b, t1, 8);
      store<u64>(w, load<u64>(src) ^ t0);
      store<u64>(w, load<u64>(src, 8) ^ t1, 8);
      // Multiply the tweak by alpha: a 128-bit little-endian left shift, 0x87 folded back.
      const carry = t1 >> 63;
      t1 = (t1 << 1) | (t0 >> 63);
      t0 = (t0 << 1) ^ (carry * 0x87);
    }
    cryptWork(ctx, encrypt);
    for (let b: i32 = 0; b < n; b += 16) {
      const dst = at + <usize>(off + b);
      const w = WORK + <usize>b;
      store<u64>(dst, load<u64>(w) ^ load<u64>(TWEAKS + <usize>b));
      store<u64>(dst, load<u64>(w, 8) ^ load<u64>(TWEAKS + <usize>b, 8), 8);
    }
  }
}

/** CBC over one sector of `len` bytes with IV. */
function cbcSector(ctx: usize, at: usize, len: i32, encrypt: bool): void {
  if (encrypt) {
    memory.copy(CHAIN, IV, 16);
    for (let off: i32 = 0; off < len; off += 16) {
      const p = at + <usize>off;
      memory.fill(WORK, 0, 64);
      store<u64>(WORK, load<u64>(p) ^ load<u64>(CHAIN));
      store<u64>(WORK, load<u64>(p, 8) ^ load<u64>(CHAIN, 8), 8);
      cryptWork(ctx, true);
      memory.copy(p, WORK, 16);
      memory.copy(CHAIN, p, 16);
    }
    return;
  }
  // Decryption is parallel: four blocks per batch, each XORed with the ciphertext before it.
  memory.copy(CHAIN, IV, 16);
  for (let off: i32 = 0; off < len; off += 64) {
    const n = <usize>min(64, len - off);
    const p = at + <usize>off;
    memory.fill(WORK, 0, 64);
    memory.copy(WORK, p, n);
    memory.copy(TWEAKS, p, n); // the ciphertext of this batch, kept for chaining
    cryptWork(ctx, false);
    for (let b: usize = 0; b < n; b += 16) {
      const prev = b == 0 ? CHAIN : TWEAKS + b - 16;
      store<u64>(p + b, load<u64>(WORK + b) ^ load<u64>(prev));
      store<u64>(p + b, load<u64>(WORK + b, 8) ^ load<u64>(prev, 8), 8);
    }
    memory.copy(CHAIN, TWEAKS + n - 16, 16);
  }
}

/** Cipher modes (mode of crypt). */
const MODE_ECB: i32 = 0;
const MODE_CBC: i32 = 1;
const MODE_XTS: i32 = 2;

/**
 * Encrypts or decrypts `len` bytes at `ptr`, sector by sector: each `sectorSize`
 * sector (the last may be shorter) gets the IV of its number, counted from
 * (sectorHi, sectorLo). `tweakCtx` is XTS's second key; `ivCtx` is ESSIV's key.
 * Returns 0, or E_INVAL for bad lengths or modes.
 */
export function crypt(
  mode: i32, ctx: usize, tweakCtx: usize, ivMode: i32, ivCtx: usize,
  ptr: usize, len: i32, sectorSize: i32, sectorLo: u32, sectorHi: u32, encrypt: bool,
): i32 {
  if (len < 0 || (len & 15) != 0 || sectorSize <= 0 || (sectorSize & 15) != 0) return E_INVAL;
  if (mode < MODE_ECB || mode > MODE_XTS || ivMode < IV_PLAIN || ivMode > IV_ESSIV) return E_INVAL;
  if (mode == MODE_ECB) return ecb(ctx, ptr, len, encrypt);
  let lo = sectorLo, hi = sectorHi;
  for (let off: i32 = 0; off < len; off += sectorSize) {
    const n = min(sectorSize, len - off);
    makeIv(ivMode, ivCtx, lo, hi);
    if (mode == MODE_XTS) xtsSector(ctx, tweakCtx, ptr + <usize>off, n, encrypt);
    else cbcSector(ctx, ptr + <usize>off, n, encrypt);
    lo++;
    if (lo == 0) hi++;
  }
  memory.fill(WORK, 0, 64);
  memory.fill(STATE, 0, 64);
  memory.fill(TWEAKS, 0, 64);
  memory.fill(CHAIN, 0, 16);
  return 0;
}

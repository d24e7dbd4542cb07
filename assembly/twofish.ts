// Twofish for disk encryption: ECB, CBC and XTS over sectors. The key schedule is
// computed by the caller (src/crypto/twofish.ts, twofishKeyWords) and copied into a key
// context of KEY_BYTES: the four key-dependent g tables (S-box folded with its MDS
// column, 256 words each; the paper's "full keying") followed by the 40 subkeys.
//
// g() is four table lookups, so SIMD lanes do not help the rounds (WebAssembly has no
// gather); what helps is two blocks at a time, their rounds interleaved so that one
// block's loads overlap the other's arithmetic. ECB, XTS and CBC decryption take two
// neighbouring blocks; CBC encryption chains each sector's blocks, so it runs two
// sectors side by side (block i of each). SIMD only moves and XORs whole blocks.
//
// Memory contract: as assembly/serpent.ts (the caller allocates contexts and buffers
// and passes pointers; lengths multiples of 16; sectors of `bps` blocks, the last one
// of a buffer may be shorter; IVs and first tweaks 16 bytes per sector; results 0 or
// a negative status).

import { E_INVAL } from './shared/common';

/** Bytes of one key context: four g tables of 256 words, then 40 subkeys. */
export const KEY_BYTES: i32 = 4096 + 160;
/** Where the subkeys start in a key context. */
const SUBKEYS: usize = 4096;

/** Allocates `size` bytes of module memory (16-byte aligned). Never freed (stub runtime). */
export function alloc(size: usize): usize {
  return heap.alloc(size);
}

/** Zeroes `len` bytes at `p` (key contexts on release, buffers after use). */
export function wipe(p: usize, len: usize): void {
  memory.fill(p, 0, len);
}

// g of a word: its bytes through the four tables (g0), or its bytes rotated by 8 (g1).
// @ts-ignore: decorator
@inline function g0(t: usize, x: u32): u32 {
  return load<u32>(t + ((x & 255) << 2)) ^ load<u32>(t + (((x >> 8) & 255) << 2), 1024) ^ load<u32>(t + (((x >> 16) & 255) << 2), 2048) ^ load<u32>(t + ((x >> 24) << 2), 3072);
}

// @ts-ignore: decorator
@inline function g1(t: usize, x: u32): u32 {
  return load<u32>(t + ((x >> 24) << 2)) ^ load<u32>(t + ((x & 255) << 2), 1024) ^ load<u32>(t + (((x >> 8) & 255) << 2), 2048) ^ load<u32>(t + (((x >> 16) & 255) << 2), 3072);
}

/** Encrypts the blocks at p and q in place (p == q: one block), their rounds interleaved. */
function encrypt2(p: usize, q: usize, t: usize): void {
  const k = t + SUBKEYS;
  let a0 = load<u32>(p) ^ load<u32>(k);
  let a1 = load<u32>(p, 4) ^ load<u32>(k, 4);
  let a2 = load<u32>(p, 8) ^ load<u32>(k, 8);
  let a3 = load<u32>(p, 12) ^ load<u32>(k, 12);
  let b0 = load<u32>(q) ^ load<u32>(k);
  let b1 = load<u32>(q, 4) ^ load<u32>(k, 4);
  let b2 = load<u32>(q, 8) ^ load<u32>(k, 8);
  let b3 = load<u32>(q, 12) ^ load<u32>(k, 12);
  for (let r: usize = 32; r < 160; r += 16) {
    // Two rounds, the second with the halves swapped back by naming.
    const kr = k + r;
    let ta = g0(t, a0);
    let ua = g1(t, a1);
    let tb = g0(t, b0);
    let ub = g1(t, b1);
    a2 = rotr<u32>(a2 ^ (ta + ua + load<u32>(kr)), 1);
    a3 = rotl<u32>(a3, 1) ^ (ta + (ua << 1) + load<u32>(kr, 4));
    b2 = rotr<u32>(b2 ^ (tb + ub + load<u32>(kr)), 1);
    b3 = rotl<u32>(b3, 1) ^ (tb + (ub << 1) + load<u32>(kr, 4));
    ta = g0(t, a2);
    ua = g1(t, a3);
    tb = g0(t, b2);
    ub = g1(t, b3);
    a0 = rotr<u32>(a0 ^ (ta + ua + load<u32>(kr, 8)), 1);
    a1 = rotl<u32>(a1, 1) ^ (ta + (ua << 1) + load<u32>(kr, 12));
    b0 = rotr<u32>(b0 ^ (tb + ub + load<u32>(kr, 8)), 1);
    b1 = rotl<u32>(b1, 1) ^ (tb + (ub << 1) + load<u32>(kr, 12));
  }
  store<u32>(p, a2 ^ load<u32>(k, 16));
  store<u32>(p, a3 ^ load<u32>(k, 20), 4);
  store<u32>(p, a0 ^ load<u32>(k, 24), 8);
  store<u32>(p, a1 ^ load<u32>(k, 28), 12);
  store<u32>(q, b2 ^ load<u32>(k, 16));
  store<u32>(q, b3 ^ load<u32>(k, 20), 4);
  store<u32>(q, b0 ^ load<u32>(k, 24), 8);
  store<u32>(q, b1 ^ load<u32>(k, 28), 12);
}

/** Decrypts the blocks at p and q in place (p == q: one block), their rounds interleaved. */
function decrypt2(p: usize, q: usize, t: usize): void {
  const k = t + SUBKEYS;
  let a2 = load<u32>(p) ^ load<u32>(k, 16);
  let a3 = load<u32>(p, 4) ^ load<u32>(k, 20);
  let a0 = load<u32>(p, 8) ^ load<u32>(k, 24);
  let a1 = load<u32>(p, 12) ^ load<u32>(k, 28);
  let b2 = load<u32>(q) ^ load<u32>(k, 16);
  let b3 = load<u32>(q, 4) ^ load<u32>(k, 20);
  let b0 = load<u32>(q, 8) ^ load<u32>(k, 24);
  let b1 = load<u32>(q, 12) ^ load<u32>(k, 28);
  for (let r: isize = 144; r >= 32; r -= 16) {
    const kr = k + <usize>r;
    let ta = g0(t, a2);
    let ua = g1(t, a3);
    let tb = g0(t, b2);
    let ub = g1(t, b3);
    a0 = rotl<u32>(a0, 1) ^ (ta + ua + load<u32>(kr, 8));
    a1 = rotr<u32>(a1 ^ (ta + (ua << 1) + load<u32>(kr, 12)), 1);
    b0 = rotl<u32>(b0, 1) ^ (tb + ub + load<u32>(kr, 8));
    b1 = rotr<u32>(b1 ^ (tb + (ub << 1) + load<u32>(kr, 12)), 1);
    ta = g0(t, a0);
    ua = g1(t, a1);
    tb = g0(t, b0);
    ub = g1(t, b1);
    a2 = rotl<u32>(a2, 1) ^ (ta + ua + load<u32>(kr));
    a3 = rotr<u32>(a3 ^ (ta + (ua << 1) + load<u32>(kr, 4)), 1);
    b2 = rotl<u32>(b2, 1) ^ (tb + ub + load<u32>(kr));
    b3 = rotr<u32>(b3 ^ (tb + (ub << 1) + load<u32>(kr, 4)), 1);
  }
  store<u32>(p, a0 ^ load<u32>(k));
  store<u32>(p, a1 ^ load<u32>(k, 4), 4);
  store<u32>(p, a2 ^ load<u32>(k, 8), 8);
  store<u32>(p, a3 ^ load<u32>(k, 12), 12);
  store<u32>(q, b0 ^ load<u32>(k));
  store<u32>(q, b1 ^ load<u32>(k, 4), 4);
  store<u32>(q, b2 ^ load<u32>(k, 8), 8);
  store<u32>(q, b3 ^ load<u32>(k, 12), 12);
}

/** Runs the block at p and, when `blocks` is 2, the one after it through the cipher. */
// @ts-ignore: decorator
@inline function crypt2(p: usize, blocks: usize, k: usize, encrypt: bool): void {
  const q = blocks == 2 ? p + 16 : p;
  if (encrypt) encrypt2(p, q, k);
  else decrypt2(p, q, k);
}

/** ECB: encrypts (`encrypt` 1) or decrypts the `len` bytes at p in place. */
export function ecb(k: usize, p: usize, len: usize, encrypt: i32): i32 {
  if ((len & 15) != 0) return E_INVAL;
  const n = len >> 4;
  for (let b: usize = 0; b < n; b += 2) crypt2(p + (b << 4), min<usize>(2, n - b), k, encrypt != 0);
  return 0;
}

/**
 * CBC decryption of the `len` bytes at p in place: each block's decryption XORed with
 * the ciphertext block before it, or with its sector's IV (at `ivs`, 16 bytes per
 * sector of `bps` blocks) for a sector's first block.
 */
export function cbcDecrypt(k: usize, p: usize, len: usize, ivs: usize, bps: u32): i32 {
  if ((len & 15) != 0 || bps == 0) return E_INVAL;
  const n = len >> 4;
  // Block b is block `pos` of sector `sec`; `prev` the ciphertext of block b - 1.
  let pos: u32 = 0;
  let sec: usize = 0;
  let prev = i32x4.splat(0);
  for (let b: usize = 0; b < n; b += 2) {
    const q = p + (b << 4);
    const m = min<usize>(2, n - b);
    // The ciphertext, kept before the blocks are overwritten.
    const c0 = v128.load(q);
    const c1 = m > 1 ? v128.load(q, 16) : prev;
    crypt2(q, m, k, false);
    v128.store(q, v128.xor(v128.load(q), pos == 0 ? v128.load(ivs + (sec << 4)) : prev));
    prev = c0;
    if (++pos == bps) {
      pos = 0;
      sec++;
    }
    if (m > 1) {
      v128.store(q, v128.xor(v128.load(q, 16), pos == 0 ? v128.load(ivs + (sec << 4)) : prev), 16);
      prev = c1;
      if (++pos == bps) {
        pos = 0;
        sec++;
      }
    }
  }
  return 0;
}

/**
 * CBC encryption of the `len` bytes at p in place, each sector of `bps` blocks its own
 * chain from its IV (at `ivs`, 16 bytes per sector). Two sectors run side by side; a
 * sector left alone (an odd count, or a short last sector) runs in both lanes.
 */
export function cbcEncrypt(k: usize, p: usize, len: usize, ivs: usize, bps: u32): i32 {
  if ((len & 15) != 0 || bps == 0) return E_INVAL;
  const n = len >> 4;
  const ss: usize = (<usize>bps) << 4;
  const full: usize = n / bps;
  for (let s: usize = 0; s < full; s += 2) cbcLanes(k, p, ivs, s, min<usize>(s + 1, full - 1), ss, bps);
  const rest = <u32>(n - full * bps);
  if (rest > 0) cbcLanes(k, p, ivs, full, full, ss, rest);
  return 0;
}

/** CBC-encrypts the first `blocks` blocks of sectors s0 and s1 (sectors of `ss` bytes at p), block i of each at once. */
function cbcLanes(k: usize, p: usize, ivs: usize, s0: usize, s1: usize, ss: usize, blocks: u32): void {
  let q0 = p + s0 * ss;
  let q1 = p + s1 * ss;
  let c0 = v128.load(ivs + (s0 << 4));
  let c1 = v128.load(ivs + (s1 << 4));
  for (let i: u32 = 0; i < blocks; i++) {
    v128.store(q0, v128.xor(v128.load(q0), c0));
    // The same sector in both lanes: XOR it once (the block is then encrypted twice, to the same bytes).
    if (q1 != q0) v128.store(q1, v128.xor(v128.load(q1), c1));
    encrypt2(q0, q1, k);
    c0 = v128.load(q0);
    c1 = v128.load(q1);
    q0 += 16;
    q1 += 16;
  }
}

/** The XTS tweak times α in GF(2^128) (little-endian, x^128 + x^7 + x^2 + x + 1). */
// @ts-ignore: decorator
@inline function timesAlpha(t: v128): v128 {
  const out = i64x2.shr_s(t, 63); // all ones in a half whose top bit is set
  const carry = v128.and(i64x2.shuffle(out, out, 1, 0), i64x2(0x87, 1));
  return v128.xor(i64x2.shl(t, 1), carry);
}

/**
 * XTS over the `len` bytes at p in place: each block XORed with its tweak before and
 * after the cipher, the tweak starting at its sector's 16 bytes in `tweaks` (the IV
 * encrypted with the tweak key) and multiplied by α per block.
 */
export function xts(k: usize, p: usize, len: usize, tweaks: usize, bps: u32, encrypt: i32): i32 {
  if ((len & 15) != 0 || bps == 0) return E_INVAL;
  const n = len >> 4;
  let pos: u32 = 0;
  let sec: usize = 0;
  let t = i32x4.splat(0);
  for (let b: usize = 0; b < n; b += 2) {
    const q = p + (b << 4);
    const m = min<usize>(2, n - b);
    if (pos == 0) t = v128.load(tweaks + (sec << 4));
    const t0 = t;
    v128.store(q, v128.xor(v128.load(q), t0));
    t = timesAlpha(t);
    if (++pos == bps) {
      pos = 0;
      sec++;
    }
    let t1 = t;
    if (m > 1) {
      if (pos == 0) t = v128.load(tweaks + (sec << 4));
      t1 = t;
      v128.store(q, v128.xor(v128.load(q, 16), t1), 16);
      t = timesAlpha(t);
      if (++pos == bps) {
        pos = 0;
        sec++;
      }
    }
    crypt2(q, m, k, encrypt != 0);
    v128.store(q, v128.xor(v128.load(q), t0));
    if (m > 1) v128.store(q, v128.xor(v128.load(q, 16), t1), 16);
  }
  return 0;
}

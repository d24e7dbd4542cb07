// CAST5 (CAST-128, RFC 2144) for disk encryption: ECB and CBC over sectors of 8-byte
// blocks (CAST5 has no XTS: the caller refuses it, as QEMU does). The key schedule is
// computed by the caller (src/crypto/cast5.ts, cast5KeyWords) and copied into a key
// context of KEY_BYTES: S1..S4 (256 words each; the round functions' tables), then the
// 16 masking keys and the 16 rotation keys.
//
// Each round is one F of four table lookups on the previous one's result: a chain with
// nothing to overlap within a block, so two blocks run at a time, their rounds
// interleaved. ECB and CBC decryption take two neighbouring blocks; CBC encryption
// runs two sectors side by side (block i of each). Blocks move as 64-bit integers (no
// SIMD needed).
//
// Memory contract: as assembly/serpent.ts, with 8-byte blocks: lengths multiples of 8,
// sectors of `bps` blocks (the last one of a buffer may be shorter), IVs 8 bytes per
// sector; results 0 or a negative status.

import { E_INVAL } from './shared/common';

/** Bytes of one key context: S1..S4, then Km1..Km16 and Kr1..Kr16. */
export const KEY_BYTES: i32 = 4096 + 128;
/** Where the masking and rotation keys start in a key context. */
const SUBKEYS: usize = 4096;

/** Allocates `size` bytes of module memory (16-byte aligned). Never freed (stub runtime). */
export function alloc(size: usize): usize {
  return heap.alloc(size);
}

/** Zeroes `len` bytes at `p` (key contexts on release, buffers after use). */
export function wipe(p: usize, len: usize): void {
  memory.fill(p, 0, len);
}

// The round functions of types 1, 2 and 3 (RFC 2144, section 2.2): I from the masking
// key km, the rotation kr and the half d, then S1..S4 of I's bytes (high to low).
// @ts-ignore: decorator
@inline function f1(t: usize, km: u32, kr: u32, d: u32): u32 {
  const i = rotl<u32>(km + d, kr);
  return ((load<u32>(t + ((i >> 24) << 2)) ^ load<u32>(t + (((i >> 16) & 255) << 2), 1024)) - load<u32>(t + (((i >> 8) & 255) << 2), 2048)) + load<u32>(t + ((i & 255) << 2), 3072);
}

// @ts-ignore: decorator
@inline function f2(t: usize, km: u32, kr: u32, d: u32): u32 {
  const i = rotl<u32>(km ^ d, kr);
  return ((load<u32>(t + ((i >> 24) << 2)) - load<u32>(t + (((i >> 16) & 255) << 2), 1024)) + load<u32>(t + (((i >> 8) & 255) << 2), 2048)) ^ load<u32>(t + ((i & 255) << 2), 3072);
}

// @ts-ignore: decorator
@inline function f3(t: usize, km: u32, kr: u32, d: u32): u32 {
  const i = rotl<u32>(km - d, kr);
  return ((load<u32>(t + ((i >> 24) << 2)) + load<u32>(t + (((i >> 16) & 255) << 2), 1024)) ^ load<u32>(t + (((i >> 8) & 255) << 2), 2048)) - load<u32>(t + ((i & 255) << 2), 3072);
}

/** Encrypts the blocks at p and q in place (p == q: one block), their rounds interleaved. */
function encrypt2(p: usize, q: usize, t: usize): void {
  const k = t + SUBKEYS;
  // The halves are big-endian words.
  let la = bswap<u32>(load<u32>(p));
  let ra = bswap<u32>(load<u32>(p, 4));
  let lb = bswap<u32>(load<u32>(q));
  let rb = bswap<u32>(load<u32>(q, 4));
  la ^= f1(t, load<u32>(k, 0), load<u32>(k, 64), ra);
  lb ^= f1(t, load<u32>(k, 0), load<u32>(k, 64), rb);
  ra ^= f2(t, load<u32>(k, 4), load<u32>(k, 68), la);
  rb ^= f2(t, load<u32>(k, 4), load<u32>(k, 68), lb);
  la ^= f3(t, load<u32>(k, 8), load<u32>(k, 72), ra);
  lb ^= f3(t, load<u32>(k, 8), load<u32>(k, 72), rb);
  ra ^= f1(t, load<u32>(k, 12), load<u32>(k, 76), la);
  rb ^= f1(t, load<u32>(k, 12), load<u32>(k, 76), lb);
  la ^= f2(t, load<u32>(k, 16), load<u32>(k, 80), ra);
  lb ^= f2(t, load<u32>(k, 16), load<u32>(k, 80), rb);
  ra ^= f3(t, load<u32>(k, 20), load<u32>(k, 84), la);
  rb ^= f3(t, load<u32>(k, 20), load<u32>(k, 84), lb);
  la ^= f1(t, load<u32>(k, 24), load<u32>(k, 88), ra);
  lb ^= f1(t, load<u32>(k, 24), load<u32>(k, 88), rb);
  ra ^= f2(t, load<u32>(k, 28), load<u32>(k, 92), la);
  rb ^= f2(t, load<u32>(k, 28), load<u32>(k, 92), lb);
  la ^= f3(t, load<u32>(k, 32), load<u32>(k, 96), ra);
  lb ^= f3(t, load<u32>(k, 32), load<u32>(k, 96), rb);
  ra ^= f1(t, load<u32>(k, 36), load<u32>(k, 100), la);
  rb ^= f1(t, load<u32>(k, 36), load<u32>(k, 100), lb);
  la ^= f2(t, load<u32>(k, 40), load<u32>(k, 104), ra);
  lb ^= f2(t, load<u32>(k, 40), load<u32>(k, 104), rb);
  ra ^= f3(t, load<u32>(k, 44), load<u32>(k, 108), la);
  rb ^= f3(t, load<u32>(k, 44), load<u32>(k, 108), lb);
  la ^= f1(t, load<u32>(k, 48), load<u32>(k, 112), ra);
  lb ^= f1(t, load<u32>(k, 48), load<u32>(k, 112), rb);
  ra ^= f2(t, load<u32>(k, 52), load<u32>(k, 116), la);
  rb ^= f2(t, load<u32>(k, 52), load<u32>(k, 116), lb);
  la ^= f3(t, load<u32>(k, 56), load<u32>(k, 120), ra);
  lb ^= f3(t, load<u32>(k, 56), load<u32>(k, 120), rb);
  ra ^= f1(t, load<u32>(k, 60), load<u32>(k, 124), la);
  rb ^= f1(t, load<u32>(k, 60), load<u32>(k, 124), lb);
  // The output is R16 then L16.
  store<u32>(p, bswap<u32>(ra));
  store<u32>(p, bswap<u32>(la), 4);
  store<u32>(q, bswap<u32>(rb));
  store<u32>(q, bswap<u32>(lb), 4);
}

/** Decrypts the blocks at p and q in place (p == q: one block), their rounds interleaved. */
function decrypt2(p: usize, q: usize, t: usize): void {
  const k = t + SUBKEYS;
  let la = bswap<u32>(load<u32>(p));
  let ra = bswap<u32>(load<u32>(p, 4));
  let lb = bswap<u32>(load<u32>(q));
  let rb = bswap<u32>(load<u32>(q, 4));
  la ^= f1(t, load<u32>(k, 60), load<u32>(k, 124), ra);
  lb ^= f1(t, load<u32>(k, 60), load<u32>(k, 124), rb);
  ra ^= f3(t, load<u32>(k, 56), load<u32>(k, 120), la);
  rb ^= f3(t, load<u32>(k, 56), load<u32>(k, 120), lb);
  la ^= f2(t, load<u32>(k, 52), load<u32>(k, 116), ra);
  lb ^= f2(t, load<u32>(k, 52), load<u32>(k, 116), rb);
  ra ^= f1(t, load<u32>(k, 48), load<u32>(k, 112), la);
  rb ^= f1(t, load<u32>(k, 48), load<u32>(k, 112), lb);
  la ^= f3(t, load<u32>(k, 44), load<u32>(k, 108), ra);
  lb ^= f3(t, load<u32>(k, 44), load<u32>(k, 108), rb);
  ra ^= f2(t, load<u32>(k, 40), load<u32>(k, 104), la);
  rb ^= f2(t, load<u32>(k, 40), load<u32>(k, 104), lb);
  la ^= f1(t, load<u32>(k, 36), load<u32>(k, 100), ra);
  lb ^= f1(t, load<u32>(k, 36), load<u32>(k, 100), rb);
  ra ^= f3(t, load<u32>(k, 32), load<u32>(k, 96), la);
  rb ^= f3(t, load<u32>(k, 32), load<u32>(k, 96), lb);
  la ^= f2(t, load<u32>(k, 28), load<u32>(k, 92), ra);
  lb ^= f2(t, load<u32>(k, 28), load<u32>(k, 92), rb);
  ra ^= f1(t, load<u32>(k, 24), load<u32>(k, 88), la);
  rb ^= f1(t, load<u32>(k, 24), load<u32>(k, 88), lb);
  la ^= f3(t, load<u32>(k, 20), load<u32>(k, 84), ra);
  lb ^= f3(t, load<u32>(k, 20), load<u32>(k, 84), rb);
  ra ^= f2(t, load<u32>(k, 16), load<u32>(k, 80), la);
  rb ^= f2(t, load<u32>(k, 16), load<u32>(k, 80), lb);
  la ^= f1(t, load<u32>(k, 12), load<u32>(k, 76), ra);
  lb ^= f1(t, load<u32>(k, 12), load<u32>(k, 76), rb);
  ra ^= f3(t, load<u32>(k, 8), load<u32>(k, 72), la);
  rb ^= f3(t, load<u32>(k, 8), load<u32>(k, 72), lb);
  la ^= f2(t, load<u32>(k, 4), load<u32>(k, 68), ra);
  lb ^= f2(t, load<u32>(k, 4), load<u32>(k, 68), rb);
  ra ^= f1(t, load<u32>(k, 0), load<u32>(k, 64), la);
  rb ^= f1(t, load<u32>(k, 0), load<u32>(k, 64), lb);
  store<u32>(p, bswap<u32>(ra));
  store<u32>(p, bswap<u32>(la), 4);
  store<u32>(q, bswap<u32>(rb));
  store<u32>(q, bswap<u32>(lb), 4);
}

/** Runs the block at p and, when `blocks` is 2, the one after it through the cipher. */
// @ts-ignore: decorator
@inline function crypt2(p: usize, blocks: usize, k: usize, encrypt: bool): void {
  const q = blocks == 2 ? p + 8 : p;
  if (encrypt) encrypt2(p, q, k);
  else decrypt2(p, q, k);
}

/** ECB: encrypts (`encrypt` 1) or decrypts the `len` bytes at p in place. */
export function ecb(k: usize, p: usize, len: usize, encrypt: i32): i32 {
  if ((len & 7) != 0) return E_INVAL;
  const n = len >> 3;
  for (let b: usize = 0; b < n; b += 2) crypt2(p + (b << 3), min<usize>(2, n - b), k, encrypt != 0);
  return 0;
}

/**
 * CBC decryption of the `len` bytes at p in place: each block's decryption XORed with
 * the ciphertext block before it, or with its sector's IV (at `ivs`, 8 bytes per
 * sector of `bps` blocks) for a sector's first block.
 */
export function cbcDecrypt(k: usize, p: usize, len: usize, ivs: usize, bps: u32): i32 {
  if ((len & 7) != 0 || bps == 0) return E_INVAL;
  const n = len >> 3;
  // Block b is block `pos` of sector `sec`; `prev` the ciphertext of block b - 1.
  let pos: u32 = 0;
  let sec: usize = 0;
  let prev: u64 = 0;
  for (let b: usize = 0; b < n; b += 2) {
    const q = p + (b << 3);
    const m = min<usize>(2, n - b);
    const c0 = load<u64>(q);
    const c1 = m > 1 ? load<u64>(q, 8) : prev;
    crypt2(q, m, k, false);
    store<u64>(q, load<u64>(q) ^ (pos == 0 ? load<u64>(ivs + (sec << 3)) : prev));
    prev = c0;
    if (++pos == bps) {
      pos = 0;
      sec++;
    }
    if (m > 1) {
      store<u64>(q, load<u64>(q, 8) ^ (pos == 0 ? load<u64>(ivs + (sec << 3)) : prev), 8);
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
 * chain from its IV (at `ivs`, 8 bytes per sector). Two sectors run side by side; a
 * sector left alone (an odd count, or a short last sector) runs in both lanes.
 */
export function cbcEncrypt(k: usize, p: usize, len: usize, ivs: usize, bps: u32): i32 {
  if ((len & 7) != 0 || bps == 0) return E_INVAL;
  const n = len >> 3;
  const ss: usize = (<usize>bps) << 3;
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
  let c0 = load<u64>(ivs + (s0 << 3));
  let c1 = load<u64>(ivs + (s1 << 3));
  for (let i: u32 = 0; i < blocks; i++) {
    store<u64>(q0, load<u64>(q0) ^ c0);
    // The same sector in both lanes: XOR it once (the block is then encrypted twice, to the same bytes).
    if (q1 != q0) store<u64>(q1, load<u64>(q1) ^ c1);
    encrypt2(q0, q1, k);
    c0 = load<u64>(q0);
    c1 = load<u64>(q1);
    q0 += 8;
    q1 += 8;
  }
}

/** XTS needs a 16-byte block: refused (the block-cipher modules' common interface has it). */
export function xts(k: usize, p: usize, len: usize, tweaks: usize, bps: u32, encrypt: i32): i32 {
  return E_INVAL;
}

// Serpent for disk encryption: ECB, CBC and XTS over sectors, four blocks at a time in
// 128-bit SIMD vectors (the rounds are generated: serpent/rounds.ts, from the S-boxes
// of src/crypto/serpent.ts). The key schedule is computed by the caller
// (src/crypto/serpent.ts) and copied into a key context of KEY_BYTES: the 33 round keys
// of four 32-bit words.
//
// Four blocks at a time needs four independent blocks: ECB, XTS and CBC decryption
// have them within a sector; CBC encryption chains each sector's blocks, so it runs
// four sectors side by side (block i of each).
//
// Memory contract: the caller allocates contexts and buffers (alloc) and passes
// pointers into this module's memory. Data lengths are multiples of 16 bytes; sectors
// are `bps` blocks (the last one of a buffer may be shorter). The IVs (CBC) and first
// tweaks (XTS) are 16 bytes per sector. Results are 0 or a negative status.

import { E_INVAL } from './shared/common';
import { decrypt4, encrypt4 } from './serpent/rounds';

/** Bytes of one key context: 33 round keys of four words. */
export const KEY_BYTES: i32 = 33 * 16;

// Four blocks gathered from four sectors (CBC encryption) or a short group at a buffer's end.
const GROUP: usize = heap.alloc(64);

/** Allocates `size` bytes of module memory (16-byte aligned). Never freed (stub runtime). */
export function alloc(size: usize): usize {
  return heap.alloc(size);
}

/** Zeroes `len` bytes at `p` (key contexts on release, buffers after use). */
export function wipe(p: usize, len: usize): void {
  memory.fill(p, 0, len);
  memory.fill(GROUP, 0, 64);
}

/** Runs `blocks` (1 to 4) blocks at p through the cipher, a short group through GROUP. */
// @ts-ignore: decorator
@inline function crypt4(p: usize, blocks: usize, k: usize, encrypt: bool): void {
  if (blocks == 4) {
    if (encrypt) encrypt4(p, k);
    else decrypt4(p, k);
    return;
  }
  memory.copy(GROUP, p, blocks << 4);
  if (encrypt) encrypt4(GROUP, k);
  else decrypt4(GROUP, k);
  memory.copy(p, GROUP, blocks << 4);
}

/** ECB: encrypts (`encrypt` 1) or decrypts the `len` bytes at p in place. */
export function ecb(k: usize, p: usize, len: usize, encrypt: i32): i32 {
  if ((len & 15) != 0) return E_INVAL;
  const n = len >> 4;
  for (let b: usize = 0; b < n; b += 4) crypt4(p + (b << 4), min<usize>(4, n - b), k, encrypt != 0);
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
  for (let b: usize = 0; b < n; b += 4) {
    const q = p + (b << 4);
    const m = min<usize>(4, n - b);
    // The ciphertext, kept before the blocks are overwritten (blocks past the end are never stored).
    const c0 = v128.load(q, 0);
    const c1 = m > 1 ? v128.load(q, 16) : prev;
    const c2 = m > 2 ? v128.load(q, 32) : prev;
    const c3 = m > 3 ? v128.load(q, 48) : prev;
    crypt4(q, m, k, false);
    for (let j: usize = 0; j < m; j++) {
      const c = j == 0 ? c0 : j == 1 ? c1 : j == 2 ? c2 : c3;
      const chain = pos == 0 ? v128.load(ivs + (sec << 4)) : prev;
      const at = q + (j << 4);
      v128.store(at, v128.xor(v128.load(at), chain));
      prev = c;
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
 * chain from its IV (at `ivs`, 16 bytes per sector). Four sectors run side by side;
 * when fewer are left, the last one fills the spare lanes (the same input gives the
 * same output, stored twice). A short last sector runs alone.
 */
export function cbcEncrypt(k: usize, p: usize, len: usize, ivs: usize, bps: u32): i32 {
  if ((len & 15) != 0 || bps == 0) return E_INVAL;
  const n = len >> 4;
  const ss: usize = (<usize>bps) << 4;
  const full: usize = n / bps;
  for (let s: usize = 0; s < full; s += 4) {
    const last = min<usize>(s + 3, full - 1);
    cbcLanes(k, p, ivs, s, min<usize>(s + 1, last), min<usize>(s + 2, last), last, ss, bps);
  }
  const rest = <u32>(n - full * bps);
  if (rest > 0) cbcLanes(k, p, ivs, full, full, full, full, ss, rest);
  return 0;
}

/** CBC-encrypts the first `blocks` blocks of sectors s0..s3 (sectors of `ss` bytes at p), block i of each at once. */
function cbcLanes(k: usize, p: usize, ivs: usize, s0: usize, s1: usize, s2: usize, s3: usize, ss: usize, blocks: u32): void {
  let q0 = p + s0 * ss;
  let q1 = p + s1 * ss;
  let q2 = p + s2 * ss;
  let q3 = p + s3 * ss;
  let c0 = v128.load(ivs + (s0 << 4));
  let c1 = v128.load(ivs + (s1 << 4));
  let c2 = v128.load(ivs + (s2 << 4));
  let c3 = v128.load(ivs + (s3 << 4));
  for (let i: u32 = 0; i < blocks; i++) {
    v128.store(GROUP, v128.xor(v128.load(q0), c0), 0);
    v128.store(GROUP, v128.xor(v128.load(q1), c1), 16);
    v128.store(GROUP, v128.xor(v128.load(q2), c2), 32);
    v128.store(GROUP, v128.xor(v128.load(q3), c3), 48);
    encrypt4(GROUP, k);
    c0 = v128.load(GROUP, 0);
    c1 = v128.load(GROUP, 16);
    c2 = v128.load(GROUP, 32);
    c3 = v128.load(GROUP, 48);
    v128.store(q0, c0);
    v128.store(q1, c1);
    v128.store(q2, c2);
    v128.store(q3, c3);
    q0 += 16;
    q1 += 16;
    q2 += 16;
    q3 += 16;
  }
}

/** The XTS tweak times α in GF(2^128) (little-endian, x^128 + x^7 + x^2 + x + 1). */
// @ts-ignore: decorator
@inline function timesAlpha(t: v128): v128 {
  // Each 64-bit half shifted left by one; the bit that leaves the low half enters the
  // high one, the bit that leaves the high half comes back as 0x87 in the low byte.
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
  for (let b: usize = 0; b < n; b += 4) {
    const q = p + (b << 4);
    const m = min<usize>(4, n - b);
    let t0 = t;
    let t1 = t;
    let t2 = t;
    let t3 = t;
    for (let j: usize = 0; j < m; j++) {
      if (pos == 0) t = v128.load(tweaks + (sec << 4));
      if (j == 0) t0 = t;
      else if (j == 1) t1 = t;
      else if (j == 2) t2 = t;
      else t3 = t;
      const at = q + (j << 4);
      v128.store(at, v128.xor(v128.load(at), t));
      t = timesAlpha(t);
      if (++pos == bps) {
        pos = 0;
        sec++;
      }
    }
    crypt4(q, m, k, encrypt != 0);
    v128.store(q, v128.xor(v128.load(q), t0));
    if (m > 1) v128.store(q, v128.xor(v128.load(q, 16), t1), 16);
    if (m > 2) v128.store(q, v128.xor(v128.load(q, 32), t2), 32);
    if (m > 3) v128.store(q, v128.xor(v128.load(q, 48), t3), 48);
  }
  return 0;
}

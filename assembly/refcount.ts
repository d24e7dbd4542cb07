// qcow2 refcount blocks: entries of 2^order bits (order 0..6, i.e. 1 to 64 bits).
// Widths of 8 bits and more are big-endian; narrower entries are packed from the least
// significant bit of each byte (entry i of a 1-bit block is bit i % 8 of byte i / 8).
//
// Values cross the boundary as f64 (exact up to 2^53; refcounts never get near that),
// with getU64 / setU64 for the full 64-bit range.

import { E_INVAL, E_RANGE } from './shared/common';

let errIndex: i32 = -1;
let foundLen: u32 = 0;

export function alloc(size: usize): usize {
  return heap.alloc(size);
}

/** Entry index behind the last E_RANGE. */
export function errorIndex(): i32 {
  return errIndex;
}

/** Length of the free run findFree() returned (at most the requested count). */
export function foundLength(): u32 {
  return foundLen;
}

@inline function maxFor(order: u32): u64 {
  return order == 6 ? <u64>-1 : ((<u64>1) << ((<u64>1) << order)) - 1;
}

@inline function getRaw(ptr: usize, order: u32, i: u32): u64 {
  switch (order) {
    case 3: return <u64>load<u8>(ptr + i);
    case 4: return <u64>bswap<u16>(load<u16>(ptr + ((<usize>i) << 1)));
    case 5: return <u64>bswap<u32>(load<u32>(ptr + ((<usize>i) << 2)));
    case 6: return bswap<u64>(load<u64>(ptr + ((<usize>i) << 3)));
    default: {
      const perByteLog = 3 - order;
      const b = <u32>load<u8>(ptr + (i >> perByteLog));
      const shift = (i & ((1 << perByteLog) - 1)) << order;
      return <u64>((b >> shift) & ((1 << (1 << order)) - 1));
    }
  }
}

@inline function setRaw(ptr: usize, order: u32, i: u32, v: u64): void {
  switch (order) {
    case 3: store<u8>(ptr + i, <u8>v); break;
    case 4: store<u16>(ptr + ((<usize>i) << 1), bswap<u16>(<u16>v)); break;
    case 5: store<u32>(ptr + ((<usize>i) << 2), bswap<u32>(<u32>v)); break;
    case 6: store<u64>(ptr + ((<usize>i) << 3), bswap<u64>(v)); break;
    default: {
      const perByteLog = 3 - order;
      const p = ptr + (i >> perByteLog);
      const shift = (i & ((1 << perByteLog) - 1)) << order;
      const mask = ((1 << (1 << order)) - 1) << shift;
      store<u8>(p, <u8>((<u32>load<u8>(p) & ~mask) | ((<u32>v << shift) & mask)));
    }
  }
}

/** Refcount of entry `index` (as f64). */
export function get(ptr: usize, order: u32, index: u32): f64 {
  return <f64>getRaw(ptr, order & 7, index);
}

/** Refcount of entry `index`, all 64 bits. */
export function getU64(ptr: usize, order: u32, index: u32): u64 {
  return getRaw(ptr, order & 7, index);
}

/** Sets entry `index`; E_RANGE if `value` is negative, fractional or too wide, E_INVAL for a bad order. */
export function set(ptr: usize, order: u32, index: u32, value: f64): i32 {
  if (order > 6) return E_INVAL;
  if (!(value >= 0) || value != Math.floor(value) || value >= 18446744073709551616.0) return E_RANGE;
  const v = <u64>value;
  if (v > maxFor(order)) return E_RANGE;
  setRaw(ptr, order, index, v);
  return 0;
}

/** Sets entry `index` to a full 64-bit value. */
export function setU64(ptr: usize, order: u32, index: u32, value: u64): i32 {
  if (order > 6) return E_INVAL;
  if (value > maxFor(order)) return E_RANGE;
  setRaw(ptr, order, index, value);
  return 0;
}

/** Does the 64-bit word `v` (64 >> order entries) hold a zero entry? */
@inline function wordHasZero(v: u64, order: u32): bool {
  switch (order) {
    case 0: return v != <u64>-1;
    case 1: {
      // 2-bit lanes: a lane is zero when neither bit is set.
      const any = (v | (v >> 1)) & 0x5555555555555555;
      return any != 0x5555555555555555;
    }
    case 2: return ((v - 0x1111111111111111) & ~v & 0x8888888888888888) != 0;
    case 3: return ((v - 0x0101010101010101) & ~v & 0x8080808080808080) != 0;
    case 4: return ((v - 0x0001000100010001) & ~v & 0x8000800080008000) != 0;
    case 5: return ((v - 0x0000000100000001) & ~v & 0x8000000080000000) != 0;
    default: return v == 0;
  }
}

/**
 * From entry `start`, finds the first run of `n` free (zero) entries, or the first free
 * run that reaches the end of the block (it may continue in the next block). Returns its
 * index (foundLength() tells its length, at most n) or nEntries when there is none.
 */
export function findFree(ptr: usize, order: u32, nEntries: u32, start: u32, n: u32): i32 {
  foundLen = 0;
  if (order > 6 || n == 0) return E_INVAL;
  const perWordLog: u32 = 6 - order;
  const perWordMask: u32 = (1 << perWordLog) - 1;
  let i = start;
  while (i < nEntries) {
    if ((i & perWordMask) == 0) {
      // Skip whole 64-bit words without a free entry.
      while (i + perWordMask < nEntries && !wordHasZero(load<u64>(ptr + (((<usize>i) >> perWordLog) << 3)), order)) {
        i += perWordMask + 1;
      }
      if (i >= nEntries) break;
    }
    if (getRaw(ptr, order, i) != 0) {
      i++;
      continue;
    }
    let j = i + 1;
    const limit = <u64>i + <u64>n;
    while (<u64>j < limit && j < nEntries && getRaw(ptr, order, j) == 0) j++;
    if (<u64>j == limit || j == nEntries) {
      foundLen = j - i;
      return <i32>i;
    }
    i = j + 1;
  }
  return <i32>nEntries;
}

/**
 * findFree() for 16-bit entries (refcount_order 4, QEMU's default), in a loop of its own:
 * an allocation in a fresh process scans every used entry before the first free one (a
 * fully allocated image: all of them), and the generic loop's per-word width switch made
 * that scan long enough for V8 to compile the function again with its optimising tier,
 * which cost more than the scan. Same results as findFree(ptr, 4, ...).
 */
export function findFree16(ptr: usize, nEntries: u32, start: u32, n: u32): i32 {
  foundLen = 0;
  if (n == 0) return E_INVAL;
  let i = start;
  while (i < nEntries) {
    if ((i & 3) == 0) {
      // Whole 64-bit words (four entries) without a zero entry are skipped.
      let w = ptr + ((<usize>i) << 1);
      const wEnd = ptr + ((<usize>(nEntries & ~3)) << 1);
      while (w < wEnd) {
        const v = load<u64>(w);
        if (((v - 0x0001000100010001) & ~v & 0x8000800080008000) != 0) break;
        w += 8;
      }
      i = <u32>((w - ptr) >> 1);
      if (i >= nEntries) break;
    }
    if (load<u16>(ptr + ((<usize>i) << 1)) != 0) {
      i++;
      continue;
    }
    let j = i + 1;
    const limit = <u64>i + <u64>n;
    while (<u64>j < limit && j < nEntries && load<u16>(ptr + ((<usize>j) << 1)) == 0) j++;
    if (<u64>j == limit || j == nEntries) {
      foundLen = j - i;
      return <i32>i;
    }
    i = j + 1;
  }
  return <i32>nEntries;
}

/**
 * Adds `delta` (may be negative) to entries [start, start + count). Nothing is written
 * unless every result fits in [0, max]; otherwise returns E_RANGE and errorIndex() names
 * the first entry that would overflow or underflow.
 */
export function addRange(ptr: usize, order: u32, nEntries: u32, start: u32, count: u32, delta: f64): i32 {
  errIndex = -1;
  if (order > 6 || <u64>start + <u64>count > <u64>nEntries || delta != Math.floor(delta)) return E_INVAL;
  const max = maxFor(order);
  const neg = delta < 0;
  const mag: f64 = neg ? -delta : delta;
  if (mag >= 18446744073709551616.0) return E_RANGE;
  const d = <u64>mag;
  const end = start + count;
  for (let i = start; i < end; i++) {
    const v = getRaw(ptr, order, i);
    if (neg ? v < d : (d > max || v > max - d)) {
      errIndex = <i32>i;
      return E_RANGE;
    }
  }
  for (let i = start; i < end; i++) {
    const v = getRaw(ptr, order, i);
    setRaw(ptr, order, i, neg ? v - d : v + d);
  }
  return 0;
}

/** Number of non-zero entries in [start, start + count) (for check and allocated-size). */
export function countUsed(ptr: usize, order: u32, nEntries: u32, start: u32, count: u32): i32 {
  if (order > 6 || <u64>start + <u64>count > <u64>nEntries) return E_INVAL;
  let c: i32 = 0;
  const end = start + count;
  for (let i = start; i < end; i++) if (getRaw(ptr, order, i) != 0) c++;
  return c;
}

let lastUsedIdx: i32 = -1;
let scanStop: u32 = 0;

/** Last entry in use seen by the last compareCounts() (-1: none). */
export function lastUsed(): i32 {
  return lastUsedIdx;
}

/** Where the last compareCounts() stopped (its `end`, or the entry after the mismatch that filled `out`). */
export function scanEnd(): u32 {
  return scanStop;
}

/**
 * check's compare_refcounts over entries [start, end) of a block: `counts` (f64, the
 * counted references of entry start + k at index k) against the stored entries. Writes the
 * indexes of mismatching entries to `out` (u32, at most outCap) and returns how many;
 * scanEnd() tells where it stopped, lastUsed() the last entry before that whose stored or
 * counted refcount is not zero.
 */
export function compareCounts(ptr: usize, order: u32, nEntries: u32, start: u32, end: u32, countsPtr: usize, outPtr: usize, outCap: u32): i32 {
  lastUsedIdx = -1;
  scanStop = start;
  if (order > 6 || start > end || end > nEntries || outCap == 0) return E_INVAL;
  let k: u32 = 0;
  let last: i32 = -1;
  let i = start;
  const c0 = countsPtr - ((<usize>start) << 3);
  // order 4 (16-bit, QEMU's default) gets its own loop: the per-entry width switch costs more than the compare.
  if (order == 4) {
    for (; i < end; i++) {
      const s = <u32>bswap<u16>(load<u16>(ptr + ((<usize>i) << 1)));
      const c = load<f64>(c0 + ((<usize>i) << 3));
      if (<f64>s != c) {
        store<u32>(outPtr + ((<usize>k) << 2), i);
        last = <i32>i;
        if (++k == outCap) { i++; break; }
      } else if (s != 0) last = <i32>i;
    }
  } else {
    for (; i < end; i++) {
      const s = getRaw(ptr, order, i);
      const c = load<f64>(c0 + ((<usize>i) << 3));
      if (<f64>s != c) {
        store<u32>(outPtr + ((<usize>k) << 2), i);
        last = <i32>i;
        if (++k == outCap) { i++; break; }
      } else if (s != 0) last = <i32>i;
    }
  }
  scanStop = i;
  lastUsedIdx = last;
  return <i32>k;
}

// The snapshot refcount walk over one L2 slice (src/formats/qcow2/snapshot-walk.ts): for
// each standard entry, the refcount of the cluster it points to changes by `addend` (-1, 0
// or +1) in a refcount block held in a slot, and the entry's COPIED flag becomes
// "refcount is exactly 1". A slot record is WALK_SLOT_BYTES bytes: i32 block index (-1:
// empty), u32 address of the block's bytes, i32 written (set when an entry changed).

const L2_COPIED: u64 = 1 << 63;
const L2_COMPRESSED: u64 = 1 << 62;
const L2_OFFSET_MASK: u64 = 0x00fffffffffffe00;
const WALK_SLOT_BYTES: usize = 16;

let walkNeed: i32 = -1;
let walkFlags: i32 = 0;

/** The block index the last walkL2() stopped for (no slot holds it), or -1. */
export function walkNeededBlock(): i32 {
  return walkNeed;
}

/** Whether the last walkL2() changed a COPIED flag. */
export function walkChangedFlags(): i32 {
  return walkFlags;
}

/**
 * Walks big-endian 8-byte L2 entries [from, end) at `l2` and returns the index of the
 * first entry it leaves unchanged to the caller: a compressed entry, an unaligned offset,
 * a refcount that would reach 0 or pass the maximum, or a cluster whose block is in no
 * slot (walkNeededBlock() names it then). Returns `end` when all were done.
 */
export function walkL2(l2: usize, from: u32, end: u32, addend: i32, order: u32, clusterBits: u32, blockBits: u32, slots: usize, nSlots: u32): i32 {
  walkNeed = -1;
  walkFlags = 0;
  if (order > 5 || clusterBits > 30 || blockBits > 31) return E_INVAL;
  const max = maxFor(order);
  const clusterMask: u64 = ((<u64>1) << clusterBits) - 1;
  const perMask: u64 = ((<u64>1) << blockBits) - 1;
  let curBlock: i64 = -1;
  let cur: usize = 0;
  let curSlot: usize = 0;
  let changed: i32 = 0;
  let j = from;
  for (; j < end; j++) {
    const p = l2 + ((<usize>j) << 3);
    const e = bswap<u64>(load<u64>(p));
    if (e == 0) continue;
    if (e & L2_COMPRESSED) break;
    const host = e & L2_OFFSET_MASK;
    let rc: u64 = 0;
    if (host != 0) {
      if (host & clusterMask) break;
      const ci = host >> clusterBits;
      const b = <i64>(ci >> blockBits);
      if (b != curBlock) {
        let found: i32 = -1;
        if (b <= 0x7fffffff) {
          for (let s: u32 = 0; s < nSlots; s++) {
            if (<i64>load<i32>(slots + (<usize>s) * WALK_SLOT_BYTES) == b) {
              found = <i32>s;
              break;
            }
          }
        }
        if (found < 0) {
          walkNeed = b <= 0x7fffffff ? <i32>b : -1;
          break;
        }
        curSlot = slots + (<usize>found) * WALK_SLOT_BYTES;
        cur = <usize>load<u32>(curSlot + 4);
        curBlock = b;
      }
      const idx = <u32>(ci & perMask);
      const v = getRaw(cur, order, idx);
      if (addend == 0) {
        rc = v;
      } else if (addend > 0) {
        if (v >= max) break;
        rc = v + 1;
        setRaw(cur, order, idx, rc);
        store<i32>(curSlot + 8, 1);
      } else {
        if (v <= 1) break;
        rc = v - 1;
        setRaw(cur, order, idx, rc);
        store<i32>(curSlot + 8, 1);
      }
    }
    const flagged = rc == 1 ? e | L2_COPIED : e & ~L2_COPIED;
    if (flagged != e) {
      store<u64>(p, bswap<u64>(flagged));
      changed = 1;
    }
  }
  walkFlags = changed;
  return <i32>j;
}

/** An L2 entry as load<u64> reads it (little-endian) keeps its first byte, the flags, lowest. */
const RAW_COPIED: u64 = 0x80;
const RAW_COMPRESSED: u64 = 0x40;

/**
 * walkL2() for 16-bit refcounts (refcount_order 4, QEMU's default): the same results, in a
 * loop that tests and sets the flags on the entry as stored (no byte swap of the whole entry
 * but for its offset) and marks its slot written once per block instead of once per entry.
 * A small function: V8 compiles its optimised code sooner and in less time than walkL2's,
 * and its baseline code runs the entries of a short walk faster.
 */
export function walkL2w16(l2: usize, from: u32, end: u32, addend: i32, clusterBits: u32, blockBits: u32, slots: usize, nSlots: u32): i32 {
  walkNeed = -1;
  walkFlags = 0;
  if (clusterBits > 30 || blockBits > 31) return E_INVAL;
  const clusterMask: u64 = ((<u64>1) << clusterBits) - 1;
  const perMask: u64 = ((<u64>1) << blockBits) - 1;
  let curBlock: i64 = -1;
  let cur: usize = 0;
  let curSlot: usize = 0;
  let written: i32 = 0;
  let changed: i32 = 0;
  let j = from;
  for (; j < end; j++) {
    const p = l2 + ((<usize>j) << 3);
    const raw = load<u64>(p);
    if (raw == 0) continue;
    if (raw & RAW_COMPRESSED) break;
    const host = bswap<u64>(raw) & L2_OFFSET_MASK;
    let rc: u32 = 0;
    if (host != 0) {
      if (host & clusterMask) break;
      const ci = host >> clusterBits;
      const b = <i64>(ci >> blockBits);
      if (b != curBlock) {
        let found: i32 = -1;
        if (b <= 0x7fffffff) {
          for (let s: u32 = 0; s < nSlots; s++) {
            if (<i64>load<i32>(slots + (<usize>s) * WALK_SLOT_BYTES) == b) {
              found = <i32>s;
              break;
            }
          }
        }
        if (found < 0) {
          walkNeed = b <= 0x7fffffff ? <i32>b : -1;
          break;
        }
        if (written) store<i32>(curSlot + 8, 1);
        written = 0;
        curSlot = slots + (<usize>found) * WALK_SLOT_BYTES;
        cur = <usize>load<u32>(curSlot + 4);
        curBlock = b;
      }
      const q = cur + ((<usize>(ci & perMask)) << 1);
      const v = <u32>bswap<u16>(load<u16>(q));
      if (addend == 0) {
        rc = v;
      } else if (addend > 0) {
        if (v >= 0xffff) break;
        rc = v + 1;
        store<u16>(q, bswap<u16>(<u16>rc));
        written = 1;
      } else {
        if (v <= 1) break;
        rc = v - 1;
        store<u16>(q, bswap<u16>(<u16>rc));
        written = 1;
      }
    }
    const flagged = rc == 1 ? raw | RAW_COPIED : raw & ~RAW_COPIED;
    if (flagged != raw) {
      store<u64>(p, flagged);
      changed = 1;
    }
  }
  if (written) store<i32>(curSlot + 8, 1);
  walkFlags = changed;
  return <i32>j;
}

// qcow2 L2 mapping: a guest range through an L2 slice into runs, for standard (64-bit) and
// extended (128-bit, 32 subclusters) L2 entries. Entries are big-endian and are read in
// place, where the metadata cache keeps them (in this module's memory).
//
// On-disk L2 entry (qcow2 spec, docs/interop/qcow2.txt):
//   bit 63      COPIED: refcount is exactly one (writable in place)
//   bit 62      COMPRESSED
//   standard:   bits 9..55 host cluster offset, bit 0 "reads as zero" (version 3)
//   compressed: bits 0..x-1 host byte offset, bits x..61 (additional 512-byte sectors),
//               x = 62 - (cluster_bits - 8)
//   extended:   second 64-bit word: bits 0..31 subcluster allocated, 32..63 reads as zero;
//               bit 0 of the first word is reserved.
//
// A run record is RUN_FIELDS f64 values (exact for offsets < 2^53):
//   [kind, guest offset, host offset, length, compressed size, l2 index of the first entry]

import { E_INVAL, E_CORRUPT } from './shared/common';

export const KIND_NORMAL: i32 = 0;
export const KIND_ZERO_PLAIN: i32 = 1;
export const KIND_ZERO_ALLOC: i32 = 2;
export const KIND_UNALLOCATED_PLAIN: i32 = 3;
export const KIND_UNALLOCATED_ALLOC: i32 = 4;
export const KIND_COMPRESSED: i32 = 5;

const RUN_FIELDS: usize = 6;
const RUN_BYTES: usize = RUN_FIELDS * 8;

const COPIED: u64 = 1 << 63;
const COMPRESSED: u64 = 1 << 62;
const ZERO: u64 = 1;
const OFFSET_MASK: u64 = 0x00fffffffffffe00;
// Bits that must be zero in a standard (non-compressed) entry: 1..8 and 56..61.
const RESERVED_MASK: u64 = 0x3f000000000001fe;

/** Index of the L2 entry that caused the last E_CORRUPT. */
let errIndex: i32 = -1;
/** Guest offset just past the last run written by map(). */
let mappedEnd: f64 = 0;

export function alloc(size: usize): usize {
  return heap.alloc(size);
}

export function errorIndex(): i32 {
  return errIndex;
}

export function lastEnd(): f64 {
  return mappedEnd;
}

@inline function entryAt(l2: usize, i: u32, extended: i32): u64 {
  return bswap<u64>(load<u64>(l2 + ((<usize>i) << (extended ? 4 : 3))));
}

@inline function bitmapAt(l2: usize, i: u32): u64 {
  return bswap<u64>(load<u64>(l2 + ((<usize>i) << 4) + 8));
}

/**
 * Cluster-level class of an entry: KIND_COMPRESSED, KIND_NORMAL (host offset != 0),
 * KIND_ZERO_* (standard only) or KIND_UNALLOCATED_PLAIN; -1 if the entry is invalid.
 */
@inline function clusterKind(e: u64, extended: i32, clusterMask: u64): i32 {
  if (e & COMPRESSED) return KIND_COMPRESSED;
  const host = e & OFFSET_MASK;
  if ((e & RESERVED_MASK) != 0 || (host & clusterMask) != 0) return -1;
  if (!extended && (e & ZERO)) return host ? KIND_ZERO_ALLOC : KIND_ZERO_PLAIN;
  if (extended && (e & ZERO)) return -1;
  return host ? KIND_NORMAL : KIND_UNALLOCATED_PLAIN;
}

/** Subcluster kind in an extended entry of cluster class `ck`; -1 if invalid. */
@inline function subKind(ck: i32, bitmap: u64, sc: u32): i32 {
  const allocBits = bitmap & 0xffffffff;
  const zeroBits = bitmap >> 32;
  if (ck == KIND_NORMAL) {
    if (allocBits & zeroBits) return -1;
    if ((zeroBits >> sc) & 1) return KIND_ZERO_ALLOC;
    if ((allocBits >> sc) & 1) return KIND_NORMAL;
    return KIND_UNALLOCATED_ALLOC;
  }
  // Unallocated cluster: no subcluster may be allocated.
  if (allocBits) return -1;
  if ((zeroBits >> sc) & 1) return KIND_ZERO_PLAIN;
  return KIND_UNALLOCATED_PLAIN;
}

let runCount: i32 = 0;
let runMax: i32 = 0;
let outBase: usize = 0;
let curKind: i32 = -1;
let curGuest: u64 = 0;
let curHost: u64 = 0;
let curLen: u64 = 0;
let curCsize: u64 = 0;
let curIndex: u32 = 0;

@inline function flush(): void {
  if (curKind < 0) return;
  const p = outBase + (<usize>runCount) * RUN_BYTES;
  store<f64>(p, <f64>curKind);
  store<f64>(p, <f64>curGuest, 8);
  store<f64>(p, <f64>curHost, 16);
  store<f64>(p, <f64>curLen, 24);
  store<f64>(p, <f64>curCsize, 32);
  store<f64>(p, <f64>curIndex, 40);
  runCount++;
  curKind = -1;
}

/** Appends a piece; returns false when the run buffer is full (the piece is not taken). */
@inline function piece(kind: i32, guest: u64, host: u64, len: u64, csize: u64, index: u32): bool {
  if (kind == curKind && kind != KIND_COMPRESSED) {
    const hostless = kind == KIND_ZERO_PLAIN || kind == KIND_UNALLOCATED_PLAIN;
    if (hostless || curHost + curLen == host) {
      curLen += len;
      return true;
    }
  }
  if (curKind >= 0) {
    if (runCount + 1 >= runMax) {
      // Room for the current run only: close it and stop.
      flush();
      return false;
    }
    flush();
  }
  curKind = kind;
  curGuest = guest;
  curHost = host;
  curLen = len;
  curCsize = csize;
  curIndex = index;
  return true;
}

/**
 * Maps guest bytes [offset, offset + length) through the L2 slice at `l2` (`nEntries`
 * entries, the first of which maps guest offset `sliceBase`) into at most `maxRuns` runs
 * written at `out`. Adjacent pieces of the same kind merge when their host offsets are
 * contiguous (or when they have none). Returns the number of runs (lastEnd() tells how far
 * they reach when maxRuns cut the mapping short), E_INVAL for bad arguments, or E_CORRUPT
 * for an invalid entry (errorIndex() names it).
 */
export function map(
  l2: usize, nEntries: u32, clusterBits: u32, extended: i32,
  sliceBase: f64, offset: f64, length: f64, out: usize, maxRuns: i32,
): i32 {
  errIndex = -1;
  if (clusterBits < 9 || clusterBits > 21 || (extended && clusterBits < 14) || maxRuns < 1) return E_INVAL;
  if (!(offset >= sliceBase) || !(length >= 0)) return E_INVAL;
  const clusterSize: u64 = (<u64>1) << clusterBits;
  const clusterMask: u64 = clusterSize - 1;
  const base = <u64>sliceBase;
  const start = <u64>offset;
  const end = start + <u64>length;
  if ((base & clusterMask) != 0 || end > base + ((<u64>nEntries) << clusterBits)) return E_INVAL;
  const csizeShift: u64 = 62 - (clusterBits - 8);
  const csizeMask: u64 = ((<u64>1) << (clusterBits - 8)) - 1;
  const coffMask: u64 = ((<u64>1) << csizeShift) - 1;
  const scBits: u32 = clusterBits - 5;
  const scSize: u64 = (<u64>1) << scBits;

  runCount = 0;
  runMax = maxRuns;
  outBase = out;
  curKind = -1;
  let pos = start;
  while (pos < end) {
    const idx = <u32>((pos - base) >> clusterBits);
    const inCluster = pos & clusterMask;
    const clusterEnd = pos - inCluster + clusterSize;
    const stop = clusterEnd < end ? clusterEnd : end;
    const e = entryAt(l2, idx, extended);
    const ck = clusterKind(e, extended, clusterMask);
    if (ck < 0) {
      errIndex = <i32>idx;
      return E_CORRUPT;
    }
    if (ck == KIND_COMPRESSED) {
      const coff = e & coffMask;
      const nSectors = ((e >> csizeShift) & csizeMask) + 1;
      const csize = nSectors * 512 - (coff & 511);
      if (!piece(KIND_COMPRESSED, pos, coff, stop - pos, csize, idx)) break;
      pos = stop;
      continue;
    }
    const host = e & OFFSET_MASK;
    if (!extended) {
      if (!piece(ck, pos, host ? host + inCluster : 0, stop - pos, 0, idx)) break;
      pos = stop;
      continue;
    }
    const bitmap = bitmapAt(l2, idx);
    let full = false;
    while (pos < stop) {
      const off = pos & clusterMask;
      const sc = <u32>(off >> scBits);
      const scEnd = pos - (off & (scSize - 1)) + scSize;
      const pend = scEnd < stop ? scEnd : stop;
      const k = subKind(ck, bitmap, sc);
      if (k < 0) {
        errIndex = <i32>idx;
        return E_CORRUPT;
      }
      const h = k == KIND_ZERO_PLAIN || k == KIND_UNALLOCATED_PLAIN ? 0 : host + off;
      if (!piece(k, pos, h, pend - pos, 0, idx)) {
        full = true;
        break;
      }
      pos = pend;
    }
    if (full) break;
  }
  if (curKind >= 0) {
    mappedEnd = <f64>(curGuest + curLen);
    flush();
  } else {
    mappedEnd = <f64>pos;
  }
  return runCount;
}

/**
 * Counts entries from `first` (at most `max`, within `nEntries`) that continue the first
 * one: same cluster class, and for allocated ones (normal, zero-alloc) contiguous host
 * offsets and the same COPIED flag. A compressed entry counts 1. For extended entries the
 * subcluster bitmap must be equal too. Returns the count or E_INVAL / E_CORRUPT.
 */
export function countContiguous(l2: usize, nEntries: u32, clusterBits: u32, extended: i32, first: u32, max: u32): i32 {
  errIndex = -1;
  if (clusterBits < 9 || clusterBits > 21 || first >= nEntries) return E_INVAL;
  const clusterMask: u64 = ((<u64>1) << clusterBits) - 1;
  const clusterSize: u64 = clusterMask + 1;
  const last = min<u64>(<u64>nEntries, <u64>first + <u64>max);
  const e0 = entryAt(l2, first, extended);
  const k0 = clusterKind(e0, extended, clusterMask);
  if (k0 < 0) {
    errIndex = <i32>first;
    return E_CORRUPT;
  }
  if (k0 == KIND_COMPRESSED || max == 0) return max == 0 ? 0 : 1;
  const b0: u64 = extended ? bitmapAt(l2, first) : 0;
  const allocated = (e0 & OFFSET_MASK) != 0;
  const flags0 = e0 & (COPIED | ZERO);
  let expect = e0 & OFFSET_MASK;
  let i = first + 1;
  for (; <u64>i < last; i++) {
    const e = entryAt(l2, i, extended);
    if (allocated) {
      expect += clusterSize;
      if ((e & (OFFSET_MASK | COPIED | ZERO | COMPRESSED)) != (expect | flags0)) break;
      if (e & RESERVED_MASK) break;
    } else if (e != e0) {
      break;
    }
    if (extended && bitmapAt(l2, i) != b0) break;
  }
  return <i32>(i - first);
}

/**
 * Counts standard entries from `first` (at most `max`, within `nEntries`) that continue
 * the first one the way a read or block-status lookup sees them: the same cluster type
 * (normal, zero with or without a host cluster, unallocated; a compressed entry counts 1)
 * and, for types with a host cluster, contiguous host offsets. The COPIED flag and
 * reserved bits are not looked at (the lookup validates the first entry itself; an
 * unaligned offset never continues an aligned run). Returns the count, or E_INVAL.
 */
export function lookupRun(l2: usize, nEntries: u32, clusterBits: u32, first: u32, max: u32): i32 {
  if (clusterBits < 9 || clusterBits > 21 || first >= nEntries) return E_INVAL;
  if (max == 0) return 0;
  const last = <u32>min<u64>(<u64>nEntries, <u64>first + <u64>max);
  const e0 = entryAt(l2, first, 0);
  if (e0 & COMPRESSED) return 1;
  const cmp: u64 = OFFSET_MASK | ZERO | COMPRESSED;
  let i = first + 1;
  if (e0 & OFFSET_MASK) {
    const step: u64 = (<u64>1) << clusterBits;
    let want = e0 & (OFFSET_MASK | ZERO);
    for (; i < last; i++) {
      want += step;
      if ((bswap<u64>(load<u64>(l2 + ((<usize>i) << 3))) & cmp) != want) break;
    }
  } else {
    const want = e0 & ZERO;
    for (; i < last; i++) {
      if ((bswap<u64>(load<u64>(l2 + ((<usize>i) << 3))) & cmp) != want) break;
    }
  }
  return <i32>(i - first);
}

/**
 * Counts entries from `first` (at most `max`) that need a new cluster before a write:
 * every entry that is not an allocated, uncompressed cluster with COPIED set.
 */
export function countNeedingAlloc(l2: usize, nEntries: u32, extended: i32, first: u32, max: u32): i32 {
  if (first > nEntries) return E_INVAL;
  const last = min<u64>(<u64>nEntries, <u64>first + <u64>max);
  let i = first;
  for (; <u64>i < last; i++) {
    const e = entryAt(l2, i, extended);
    if ((e & COPIED) != 0 && (e & COMPRESSED) == 0 && (e & OFFSET_MASK) != 0) break;
  }
  return <i32>(i - first);
}

/**
 * Writes `n` entries from `first`: host offsets host0, host0 + step, ... with the high
 * flag bits `flagsHigh` (bits 32..63 of the entry, e.g. COPIED = 0x80000000) and low flag
 * bits `flagsLow`; for extended entries the bitmap word is set to `bitmapLo | bitmapHi << 32`.
 */
export function fill(
  l2: usize, nEntries: u32, extended: i32, first: u32, n: u32,
  host0: f64, step: f64, flagsHigh: u32, flagsLow: u32, bitmapLo: u32, bitmapHi: u32,
): i32 {
  if (<u64>first + <u64>n > <u64>nEntries) return E_INVAL;
  let h = <u64>host0;
  const s = <u64>step;
  const flags = ((<u64>flagsHigh) << 32) | <u64>flagsLow;
  const bm = ((<u64>bitmapHi) << 32) | <u64>bitmapLo;
  for (let i: u32 = 0; i < n; i++) {
    const p = l2 + ((<usize>(first + i)) << (extended ? 4 : 3));
    store<u64>(p, bswap<u64>(h | flags));
    if (extended) store<u64>(p, bswap<u64>(bm), 8);
    h += s;
  }
  return <i32>n;
}

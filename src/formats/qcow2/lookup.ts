/**
 * The mapping walk: from a guest offset to the run of same-typed,
 * host-contiguous (sub)clusters that starts there (QEMU's
 * qcow2_get_host_offset), through the L1 table and the cached L2 slices.
 * Entries that cannot be valid (unaligned offsets, compressed clusters with an
 * external data file, invalid subcluster bits) mark the image corrupt.
 */
import { SUBCLUSTERS } from './constants.js';
import { ClusterType, clusterType, compressedInfo, entryOffset, readEntry, subclusterType } from './l2-entry.js';
import { markCorrupt } from './metadata-index.js';
import type { Qcow2Image } from './qcow2.js';
import { loadL2, type WasmL2 } from '../../wasm/l2.js';
import { cHex as hex } from '../../core/c-hex.js';

/** C's %#x, as QEMU's messages print numbers: 0 without the prefix. */

/** One answer of the mapping walk: a run of (sub)clusters of one type. */
export interface Run {
  type: ClusterType;
  bytes: number;
  /** Host offset of the first byte (NORMAL, ZERO_ALLOC, UNALLOC_ALLOC). */
  host: number;
  /** Compressed descriptor (COMPRESSED). */
  coffset: number;
  csize: number;
}

// Long runs of standard entries (block status and map over allocated images, large
// reads) are counted by the WASM L2 module: the entries the run can cover are copied into
// module memory (a memcpy) and compared there, several times faster than the
// entry-by-entry walk below (bench/qcow2/block-status.bench.ts). Short runs, extended L2
// entries and external data files stay in TypeScript, where the copy and the call would
// cost more than they save or the rules differ. The first entry of a run is always
// decoded and validated by the TypeScript walk, so errors are the same either way.

/** Runs that may cover at least this many entries go to the WASM module. */
const WASM_MIN_ENTRIES = 16;

let mapper: WasmL2 | null | undefined;
let mapperEnabled = true;

/**
 * Loads the WASM L2 module (once; opening a qcow2 image awaits it). Until it has loaded,
 * or when it cannot load, lookups use the TypeScript walk only.
 */
export async function initL2Mapper(): Promise<void> {
  if (mapper !== undefined) return;
  try {
    mapper = await loadL2(1);
  } catch {
    mapper = null;
  }
}

/** Whether long runs are counted in WASM here ('not loaded' before the first qcow2 open). */
export function l2MapperState(): 'wasm' | 'typescript' | 'not loaded' {
  if (mapper === undefined) return 'not loaded';
  return mapper && mapperEnabled ? 'wasm' : 'typescript';
}

/** Switches the WASM path off or back on (for tests and benchmarks comparing the two). */
export function setL2MapperEnabled(on: boolean): void {
  mapperEnabled = on;
}

/**
 * Entries from `i0` (at most `n`) of standard slice `buf` that continue the run of entry
 * `i0`, counted in WASM; -1 when the TypeScript walk should count them.
 */
function wasmRunEntries(buf: Uint8Array, cbits: number, i0: number, n: number): number {
  const m = mapper;
  if (!m || !mapperEnabled || n < WASM_MIN_ENTRIES) return -1;
  return m.lookupRun(buf.subarray(i0 * 8, (i0 + n) * 8), cbits, 0, n);
}

/** The L2 table offset of L1 entry `l1i` (0 = none), refusing unaligned ones. */
export async function l2TableOffset(img: Qcow2Image, l1i: number): Promise<number> {
  const off = img.l1[l1i]!;
  if (off % img.clusterSize !== 0) {
    throw await markCorrupt(img, `L2 table offset ${hex(off)} unaligned (L1 index: ${hex(l1i)})`);
  }
  return off;
}

/**
 * The first run of same-typed, host-contiguous (sub)clusters from `offset`,
 * at most `max` bytes and never past the end of one L2 slice.
 */
export async function lookup(img: Qcow2Image, offset: number, max: number): Promise<Run> {
  const cs = img.clusterSize;
  const ci = Math.floor(offset / cs);
  const inCluster = offset - ci * cs;
  const l1i = Math.floor(ci / img.l2Entries);
  const run: Run = { type: ClusterType.UNALLOC, bytes: 0, host: 0, coffset: 0, csize: 0 };
  if (l1i >= img.l1.length) {
    run.bytes = max;
    return run;
  }
  const idx = ci % img.l2Entries;
  const sliceIdx = Math.floor(idx / img.sliceEntries);
  const i0 = idx % img.sliceEntries;
  const sliceEnd = (ci - i0 + img.sliceEntries) * cs;
  const limit = Math.min(max, sliceEnd - offset);
  const l2off = await l2TableOffset(img, l1i);
  if (l2off === 0) {
    run.bytes = limit;
    return run;
  }
  const buf = await img.l2cache.get(l2off + sliceIdx * img.sliceBytes);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const ext = img.extendedL2;
  const df = img.hasDataFile;
  let e = readEntry(dv, i0, ext);
  const ct: ClusterType = clusterType(e, ext, df);
  if (ct === ClusterType.COMPRESSED) {
    const ci2 = compressedInfo(e, img.clusterBits);
    run.type = ClusterType.COMPRESSED;
    run.coffset = ci2.offset;
    run.csize = ci2.sectors * 512 - (ci2.offset & 511);
    run.bytes = Math.min(limit, cs - inCluster);
    if (df) throw await markCorrupt(img, `Compressed cluster with an external data file (L2 index ${hex(idx)})`);
    return run;
  }
  if (!ext) {
    let host = entryOffset(e.hi, e.lo);
    if ((ct === ClusterType.NORMAL || ct === ClusterType.ZERO_ALLOC) && host % cs !== 0) {
      throw await markCorrupt(img, `Cluster allocation offset ${hex(host)} unaligned (L2 offset: ${hex(l2off)}, L2 index: ${hex(idx)})`);
    }
    if (ct === ClusterType.NORMAL && df && host !== ci * cs) {
      throw await markCorrupt(img, `External data file cluster at ${hex(host)} does not match guest offset ${hex(ci * cs)}`);
    }
    run.type = ct as ClusterType;
    run.host = host + inCluster;
    let bytes = cs - inCluster;
    if (bytes < limit && !df) {
      const k = wasmRunEntries(buf, img.clusterBits, i0, Math.min(img.sliceEntries - i0, Math.ceil((inCluster + limit) / cs)));
      if (k > 0) {
        run.bytes = Math.min(k * cs - inCluster, limit);
        return run;
      }
    }
    let i = i0 + 1;
    while (bytes < limit) {
      e = readEntry(dv, i, false);
      const t2: ClusterType = clusterType(e, false, df);
      if (t2 !== (ct as ClusterType) || t2 === ClusterType.COMPRESSED) break;
      if (ct === ClusterType.NORMAL || ct === ClusterType.ZERO_ALLOC) {
        host += cs;
        if (entryOffset(e.hi, e.lo) !== host) break;
      }
      bytes += cs;
      i++;
    }
    run.bytes = Math.min(bytes, limit);
    return run;
  }
  // Extended L2: walk subclusters.
  const sc = img.subSize;
  let s = Math.floor(inCluster / sc);
  const host0 = entryOffset(e.hi, e.lo);
  if (ct === ClusterType.NORMAL && host0 % cs !== 0) {
    throw await markCorrupt(img, `Cluster allocation offset ${hex(host0)} unaligned (L2 offset: ${hex(l2off)}, L2 index: ${hex(idx)})`);
  }
  const st = subclusterType(ct, e, s);
  if (st === ClusterType.INVALID) {
    throw await markCorrupt(img, `Invalid cluster entry found  (L2 offset: ${hex(l2off)}, L2 index: ${hex(idx)})`);
  }
  run.type = st;
  run.host = host0 + inCluster;
  let expectHost = host0 + (s + 1) * sc;
  let bytes = (s + 1) * sc - inCluster;
  let i = i0;
  s++;
  const hasHost = st === ClusterType.NORMAL || st === ClusterType.ZERO_ALLOC || st === ClusterType.UNALLOC_ALLOC;
  let cur = e;
  let curType: ClusterType = ct;
  while (bytes < limit) {
    if (s === SUBCLUSTERS) {
      i++;
      s = 0;
      cur = readEntry(dv, i, true);
      curType = clusterType(cur, true, df);
      if (curType === ClusterType.COMPRESSED) break;
      if (hasHost && entryOffset(cur.hi, cur.lo) !== expectHost) break;
    }
    const t2 = subclusterType(curType, cur, s);
    if (t2 !== st) break;
    bytes += sc;
    expectHost += sc;
    s++;
  }
  run.bytes = Math.min(bytes, limit);
  return run;
}

/**
 * The last L2 slice the fast path used (per image): its buffer, the guest
 * range it maps and what makes it current (the cache epoch, the L1 entry).
 */
export class SliceMemo {
  /** Guest range [lo, hi) mapped by the slice; hi = 0 when empty. */
  lo = 0;
  hi = 0;
  buf: Uint8Array = new Uint8Array(0);
  /** The cache's epoch, and the L1 entry pointing at the table, when memoised. */
  epoch = -1;
  l1i = 0;
  l2off = 0;
  /** Cache key of the slice, and the cache clock when it was last marked used. */
  key = 0;
  clock = -1;
}

/**
 * Host offset of [offset, offset+bytes) when it is plain data in one run of
 * a cached slice of a standard L2 table; -1 otherwise (take the full path).
 * Synchronous, so a cache hit costs no promise. The hot case (the slice of
 * the previous read) costs no map lookup and no division.
 */
export function fastDataHost(img: Qcow2Image, offset: number, bytes: number): number {
  const m = img.sliceMemo;
  const cache = img.l2cache;
  if (offset >= m.lo && offset + bytes <= m.hi && m.epoch === cache.epoch && img.l1[m.l1i] === m.l2off && !img.hasDataFile) {
    if (cache.clock !== m.clock) m.clock = cache.touch(m.key);
    // The slice maps less than 2^31 bytes (checked when memoised): int arithmetic.
    const rel = offset - m.lo;
    const bits = img.clusterBits;
    return plainRun(m.buf, rel >>> bits, (rel + bytes - 1) >>> bits, img.clusterSize, rel & (img.clusterSize - 1));
  }
  if (img.extendedL2 || img.hasDataFile) return -1;
  const cs = img.clusterSize;
  const ci = Math.floor(offset / cs);
  const l1i = Math.floor(ci / img.l2Entries);
  if (l1i >= img.l1.length) return -1;
  const l2off = img.l1[l1i]!;
  if (l2off === 0 || l2off % cs !== 0) return -1;
  const idx = ci % img.l2Entries;
  const i0 = idx % img.sliceEntries;
  const lastCi = Math.floor((offset + bytes - 1) / cs);
  if (lastCi - ci >= img.sliceEntries - i0) return -1;
  const key = l2off + (idx - i0) * img.l2EntryBytes;
  const b = cache.peek(key);
  if (!b) return -1;
  const lo = (ci - i0) * cs;
  const span = img.sliceEntries * cs;
  if (span <= 0x4000_0000) {
    m.lo = lo;
    m.hi = lo + span;
    m.buf = b;
    m.epoch = cache.epoch;
    m.l1i = l1i;
    m.l2off = l2off;
    m.key = key;
    m.clock = cache.clock;
  }
  return plainRun(b, i0, i0 + (lastCi - ci), cs, offset - ci * cs);
}

/**
 * Host offset of byte `inCluster` of entry `first` when entries first..last
 * of slice `b` are plain, host-contiguous data; -1 otherwise.
 */
function plainRun(b: Uint8Array, first: number, last: number, cs: number, inCluster: number): number {
  // Big-endian entries read byte by byte: no DataView allocated per read (this is the hot path).
  let expect = -1;
  let start = -1;
  for (let i = first, p = first << 3; i <= last; i++, p += 8) {
    const hi = (b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!;
    const lo = (b[p + 4]! << 24) | (b[p + 5]! << 16) | (b[p + 6]! << 8) | b[p + 7]!;
    // Compressed or zero flag: not plain data; an offset not aligned to the cluster: the slow path reports it.
    if (hi & 0x40000000 || lo & 1 || lo & (cs - 1) & 0xfffffe00) return -1;
    const host = (hi & 0x00ffffff) * 4294967296 + ((lo & 0xfffffe00) >>> 0);
    if (host === 0) return -1;
    if (start < 0) start = host;
    else if (host !== expect) return -1;
    expect = host + cs;
  }
  return start + inCluster;
}

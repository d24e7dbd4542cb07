/**
 * qcow2 L2 mapping: a guest range through an L2 slice into runs of one kind.
 *
 * Entries stay big-endian where the metadata cache keeps them. The WASM path
 * ({@link WasmL2}) reads slices that live in its memory (get them with
 * {@link WasmL2.allocSlice}) without copying; the TypeScript path ({@link mapL2Ts}) reads
 * any Uint8Array and gives the same answers. Both write runs as {@link RUN_FIELDS} float64
 * values each: kind, guest offset, host offset, length, compressed size, L2 index.
 */
import { BlockError } from '../core/errors.js';
import { loadWasm, loadWasmSync, statusError, trapError, WasmStatus, type WasmBaseExports, type WasmModule } from './loader.js';

/** What a run of guest bytes is (QEMU's QCow2SubclusterType). */
export const L2Kind = {
  /** Data at `hostOffset` in the image file. */
  NORMAL: 0,
  /** Reads as zero, no host cluster. */
  ZERO_PLAIN: 1,
  /** Reads as zero, host cluster preallocated at `hostOffset`. */
  ZERO_ALLOC: 2,
  /** Not allocated: read from the backing file (or zero). */
  UNALLOCATED_PLAIN: 3,
  /** Subcluster not allocated in an allocated cluster (`hostOffset` is where it would be). */
  UNALLOCATED_ALLOC: 4,
  /** A compressed cluster: `hostOffset` / `compressedSize` locate the compressed bytes. */
  COMPRESSED: 5,
} as const;
export type L2Kind = (typeof L2Kind)[keyof typeof L2Kind];

/** One run of the mapping. */
export interface L2Run {
  kind: L2Kind;
  guestOffset: number;
  /** Host byte offset (0 for *_PLAIN kinds); for COMPRESSED the start of the compressed data. */
  hostOffset: number;
  length: number;
  /** Bytes of compressed data (COMPRESSED only, else 0). */
  compressedSize: number;
  /** Index in the slice of the entry the run starts in. */
  l2Index: number;
}

/** Number of float64 values per run record. */
export const RUN_FIELDS = 6;

/** Geometry of an L2 slice. */
export interface L2Geometry {
  clusterBits: number;
  /** Extended L2 entries (128 bits, 32 subclusters). */
  extended: boolean;
}

/** Raised for an invalid entry: names the entry index. */
function corruptEntry(index: number, entryOffset?: number): BlockError {
  return statusError(WasmStatus.CORRUPT, `invalid L2 entry ${index}`, entryOffset !== undefined ? { offset: entryOffset } : {});
}

function checkArgs(nEntries: number, g: L2Geometry, sliceBase: number, offset: number, length: number): void {
  const cb = g.clusterBits;
  if (!Number.isInteger(cb) || cb < 9 || cb > 21 || (g.extended && cb < 14)) {
    throw new BlockError('EINVAL', `L2 map: bad cluster_bits ${cb}${g.extended ? ' with extended L2' : ''}`);
  }
  const cs = 2 ** cb;
  if (!(offset >= sliceBase) || !(length >= 0) || sliceBase % cs !== 0 || offset + length > sliceBase + nEntries * cs) {
    throw new BlockError('EINVAL', `L2 map: range ${offset}+${length} outside slice at ${sliceBase} of ${nEntries} entries`);
  }
}

const TWO32 = 2 ** 32;

/**
 * TypeScript version of the mapping (the reference for the WASM module, and the fallback).
 * Writes at most `maxRuns` runs into `out`; returns [run count, guest offset reached].
 */
export function mapL2Ts(
  slice: Uint8Array, g: L2Geometry, sliceBase: number, offset: number, length: number, out: Float64Array, maxRuns = Math.floor(out.length / RUN_FIELDS),
): [number, number] {
  const esize = g.extended ? 16 : 8;
  const nEntries = Math.floor(slice.byteLength / esize);
  checkArgs(nEntries, g, sliceBase, offset, length);
  const dv = new DataView(slice.buffer, slice.byteOffset, slice.byteLength);
  const cb = g.clusterBits;
  const cs = 2 ** cb;
  const x = 70 - cb; // first bit of the compressed sector count
  const coffHiMask = 2 ** (x - 32) - 1;
  const csizeMask = 2 ** (cb - 8) - 1;
  const scSize = cs / 32;
  let n = 0;
  let kind = -1;
  let gOff = 0;
  let hOff = 0;
  let len = 0;
  let csz = 0;
  let lidx = 0;
  const end = offset + length;
  let pos = offset;
  const emit = (): void => {
    const p = n * RUN_FIELDS;
    out[p] = kind;
    out[p + 1] = gOff;
    out[p + 2] = hOff;
    out[p + 3] = len;
    out[p + 4] = csz;
    out[p + 5] = lidx;
    n++;
    kind = -1;
  };
  // Returns false when out is full.
  const add = (k: number, go: number, ho: number, l: number, c: number, i: number): boolean => {
    if (k === kind && k !== L2Kind.COMPRESSED) {
      if (k === L2Kind.ZERO_PLAIN || k === L2Kind.UNALLOCATED_PLAIN || hOff + len === ho) {
        len += l;
        return true;
      }
    }
    if (kind >= 0) {
      emit();
      if (n >= maxRuns) return false;
    }
    kind = k;
    gOff = go;
    hOff = ho;
    len = l;
    csz = c;
    lidx = i;
    return true;
  };
  outer: while (pos < end) {
    const idx = Math.floor((pos - sliceBase) / cs);
    const inC = pos - sliceBase - idx * cs;
    const stop = Math.min(end, pos - inC + cs);
    const hi = dv.getUint32(idx * esize);
    const lo = dv.getUint32(idx * esize + 4);
    if (hi & 0x40000000) {
      const coff = (hi & coffHiMask) * TWO32 + lo;
      const sectors = ((hi >>> (x - 32)) & csizeMask) + 1;
      if (!add(L2Kind.COMPRESSED, pos, coff, stop - pos, sectors * 512 - (coff % 512), idx)) break;
      pos = stop;
      continue;
    }
    const host = (hi & 0x00ffffff) * TWO32 + ((lo & 0xfffffe00) >>> 0);
    if ((hi & 0x3f000000) !== 0 || (lo & 0x1fe) !== 0 || host % cs !== 0) throw corruptEntry(idx);
    const zeroFlag = (lo & 1) !== 0;
    if (!g.extended) {
      const k = zeroFlag ? (host ? L2Kind.ZERO_ALLOC : L2Kind.ZERO_PLAIN) : host ? L2Kind.NORMAL : L2Kind.UNALLOCATED_PLAIN;
      if (!add(k, pos, host ? host + inC : 0, stop - pos, 0, idx)) break;
      pos = stop;
      continue;
    }
    if (zeroFlag) throw corruptEntry(idx);
    const allocBits = dv.getUint32(idx * esize + 12);
    const zeroBits = dv.getUint32(idx * esize + 8);
    if (host ? (allocBits & zeroBits) !== 0 : allocBits !== 0) throw corruptEntry(idx);
    while (pos < stop) {
      const off = pos - sliceBase - idx * cs;
      const sc = Math.floor(off / scSize);
      const pend = Math.min(stop, pos - (off % scSize) + scSize);
      const bit = 2 ** sc;
      const z = Math.floor(zeroBits / bit) % 2 === 1;
      const a = Math.floor(allocBits / bit) % 2 === 1;
      let k: number;
      if (host) k = z ? L2Kind.ZERO_ALLOC : a ? L2Kind.NORMAL : L2Kind.UNALLOCATED_ALLOC;
      else k = z ? L2Kind.ZERO_PLAIN : L2Kind.UNALLOCATED_PLAIN;
      const h = k === L2Kind.ZERO_PLAIN || k === L2Kind.UNALLOCATED_PLAIN ? 0 : host + off;
      if (!add(k, pos, h, pend - pos, 0, idx)) break outer;
      pos = pend;
    }
  }
  if (kind >= 0) {
    pos = gOff + len;
    emit();
  }
  return [n, pos];
}

/** Turns run records into objects. */
export function runsToObjects(runs: Float64Array, count: number): L2Run[] {
  const res: L2Run[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const p = i * RUN_FIELDS;
    res[i] = {
      kind: runs[p] as L2Kind,
      guestOffset: runs[p + 1]!,
      hostOffset: runs[p + 2]!,
      length: runs[p + 3]!,
      compressedSize: runs[p + 4]!,
      l2Index: runs[p + 5]!,
    };
  }
  return res;
}

/** The whole mapping of a range as objects, TypeScript path. */
export function mapL2RunsTs(slice: Uint8Array, g: L2Geometry, sliceBase: number, offset: number, length: number): L2Run[] {
  const out = new Float64Array(256 * RUN_FIELDS);
  const res: L2Run[] = [];
  let pos = offset;
  const end = offset + length;
  do {
    const [n, reached] = mapL2Ts(slice, g, sliceBase, pos, end - pos, out);
    res.push(...runsToObjects(out, n));
    pos = reached;
  } while (pos < end);
  return res;
}

interface L2Exports extends WasmBaseExports {
  map(l2: number, nEntries: number, clusterBits: number, extended: number, sliceBase: number, offset: number, length: number, out: number, maxRuns: number): number;
  countContiguous(l2: number, nEntries: number, clusterBits: number, extended: number, first: number, max: number): number;
  lookupRun(l2: number, nEntries: number, clusterBits: number, first: number, max: number): number;
  countNeedingAlloc(l2: number, nEntries: number, extended: number, first: number, max: number): number;
  fill(l2: number, nEntries: number, extended: number, first: number, n: number, host0: number, step: number, flagsHigh: number, flagsLow: number, bitmapLo: number, bitmapHi: number): number;
  errorIndex(): number;
  lastEnd(): number;
}

/** An L2 slice kept in module memory. Re-read `bytes` after allocations (memory may grow). */
export class L2Slice {
  constructor(private readonly owner: WasmL2, readonly ptr: number, readonly byteLength: number) {}
  /** A view of the slice (valid until module memory grows). */
  get bytes(): Uint8Array {
    return this.owner.module.bytes(this.ptr, this.byteLength);
  }
}

/** The WASM L2 mapper. */
export class WasmL2 {
  readonly module: WasmModule<L2Exports>;
  /** Capacity of the run buffer (runs per call). */
  readonly maxRuns: number;
  private readonly runsPtr: number;
  private scratchPtr = 0;
  private scratchSize = 0;

  constructor(module: WasmModule<L2Exports>, maxRuns = 1024) {
    this.module = module;
    this.maxRuns = maxRuns;
    this.runsPtr = module.alloc(maxRuns * RUN_FIELDS * 8);
  }

  /** A buffer for an L2 slice in module memory (never freed: the cache allocates once). */
  allocSlice(byteLength: number): L2Slice {
    return new L2Slice(this, this.module.alloc(byteLength), byteLength);
  }

  /** Pointer of `slice` in module memory, copying it to scratch space if it lives elsewhere. */
  private place(slice: Uint8Array | L2Slice): number {
    if (slice instanceof L2Slice) return slice.ptr;
    if (slice.buffer === this.module.memory.buffer) return slice.byteOffset;
    if (slice.byteLength > this.scratchSize) {
      this.scratchPtr = this.module.alloc(slice.byteLength);
      this.scratchSize = slice.byteLength;
    }
    this.module.u8.set(slice, this.scratchPtr);
    return this.scratchPtr;
  }

  /**
   * One call of the mapper: writes up to {@link maxRuns} runs and returns
   * [count, view of the run records, guest offset reached]. The view is valid until the next call.
   */
  mapRaw(slice: Uint8Array | L2Slice, g: L2Geometry, sliceBase: number, offset: number, length: number): [number, Float64Array, number] {
    const esize = g.extended ? 16 : 8;
    const nEntries = Math.floor(slice.byteLength / esize);
    const ptr = this.place(slice);
    let r: number;
    const e = this.module.exports;
    try {
      r = e.map(ptr, nEntries, g.clusterBits, g.extended ? 1 : 0, sliceBase, offset, length, this.runsPtr, this.maxRuns);
    } catch (err) {
      throw trapError(err, 'L2 map');
    }
    if (r < 0) {
      if (r === WasmStatus.CORRUPT) throw corruptEntry(e.errorIndex());
      checkArgs(nEntries, g, sliceBase, offset, length);
      throw statusError(r, 'L2 map');
    }
    return [r, new Float64Array(this.module.memory.buffer, this.runsPtr, r * RUN_FIELDS), e.lastEnd()];
  }

  /** The whole mapping of [offset, offset + length) as objects. */
  map(slice: Uint8Array | L2Slice, g: L2Geometry, sliceBase: number, offset: number, length: number): L2Run[] {
    const res: L2Run[] = [];
    let pos = offset;
    const end = offset + length;
    do {
      const [n, runs, reached] = this.mapRaw(slice, g, sliceBase, pos, end - pos);
      for (const r of runsToObjects(runs, n)) res.push(r);
      pos = reached;
    } while (pos < end);
    return res;
  }

  /**
   * Entries from `first` (at most `max`) that continue the first one (same class; for
   * allocated clusters contiguous host offsets and the same COPIED flag).
   */
  countContiguous(slice: Uint8Array | L2Slice, g: L2Geometry, first: number, max: number): number {
    const esize = g.extended ? 16 : 8;
    const r = this.module.exports.countContiguous(this.place(slice), Math.floor(slice.byteLength / esize), g.clusterBits, g.extended ? 1 : 0, first, max);
    if (r === WasmStatus.CORRUPT) throw corruptEntry(first);
    if (r < 0) throw statusError(r, 'L2 countContiguous');
    return r;
  }

  /**
   * Standard entries from `first` (at most `max`) that continue the first one as a read
   * or block-status lookup sees them: same cluster type and, with a host cluster,
   * contiguous host offsets (COPIED and reserved bits not looked at; compressed counts 1).
   */
  lookupRun(slice: Uint8Array | L2Slice, clusterBits: number, first: number, max: number): number {
    const r = this.module.exports.lookupRun(this.place(slice), Math.floor(slice.byteLength / 8), clusterBits, first, max);
    if (r < 0) {
      throw new BlockError('EINVAL', `L2 lookupRun: entry ${first} of ${Math.floor(slice.byteLength / 8)} or cluster_bits ${clusterBits} out of range`);
    }
    return r;
  }

  /** Entries from `first` (at most `max`) that need a new cluster before a write. */
  countNeedingAlloc(slice: Uint8Array | L2Slice, g: L2Geometry, first: number, max: number): number {
    const esize = g.extended ? 16 : 8;
    const r = this.module.exports.countNeedingAlloc(this.place(slice), Math.floor(slice.byteLength / esize), g.extended ? 1 : 0, first, max);
    if (r < 0) throw statusError(r, 'L2 countNeedingAlloc');
    return r;
  }
}

/** TypeScript {@link WasmL2.lookupRun} (the reference for its tests). */
export function lookupRunTs(slice: Uint8Array, clusterBits: number, first: number, max: number): number {
  const dv = new DataView(slice.buffer, slice.byteOffset, slice.byteLength);
  const n = Math.floor(slice.byteLength / 8);
  const last = Math.min(n, first + max);
  if (max === 0) return 0;
  const word = (i: number): [number, number] => [dv.getUint32(i * 8), dv.getUint32(i * 8 + 4)];
  const [hi0, lo0] = word(first);
  if (hi0 & 0x40000000) return 1;
  const host = (hi: number, lo: number) => (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
  const h0 = host(hi0, lo0);
  let i = first + 1;
  for (; i < last; i++) {
    const [hi, lo] = word(i);
    if (hi & 0x40000000 || (lo & 1) !== (lo0 & 1)) break;
    if (host(hi, lo) !== (h0 === 0 ? 0 : h0 + (i - first) * 2 ** clusterBits)) break;
  }
  return i - first;
}

/** TypeScript {@link WasmL2.countContiguous}. */
export function countContiguousTs(slice: Uint8Array, g: L2Geometry, first: number, max: number): number {
  const esize = g.extended ? 16 : 8;
  const n = Math.floor(slice.byteLength / esize);
  if (first >= n) throw new BlockError('EINVAL', `L2 countContiguous: entry ${first} outside slice of ${n}`);
  const dv = new DataView(slice.buffer, slice.byteOffset, slice.byteLength);
  const cs = 2 ** g.clusterBits;
  const hi0 = dv.getUint32(first * esize);
  const lo0 = dv.getUint32(first * esize + 4);
  const host0 = (hi0 & 0x00ffffff) * TWO32 + ((lo0 & 0xfffffe00) >>> 0);
  if (hi0 & 0x40000000) return max === 0 ? 0 : 1;
  if ((hi0 & 0x3f000000) !== 0 || (lo0 & 0x1fe) !== 0 || host0 % cs !== 0 || (g.extended && (lo0 & 1))) throw corruptEntry(first);
  if (max === 0) return 0;
  const bm = (i: number): string => (g.extended ? `${dv.getUint32(i * esize + 8)}:${dv.getUint32(i * esize + 12)}` : '');
  const b0 = bm(first);
  const last = Math.min(n, first + max);
  let i = first + 1;
  for (; i < last; i++) {
    const hi = dv.getUint32(i * esize);
    const lo = dv.getUint32(i * esize + 4);
    if (host0) {
      const host = (hi & 0x00ffffff) * TWO32 + ((lo & 0xfffffe00) >>> 0);
      if (host !== host0 + (i - first) * cs) break;
      if ((hi & 0xff000000) !== (hi0 & 0xff000000) || (lo & 0x1ff) !== (lo0 & 0x1ff)) break;
    } else if (hi !== hi0 || lo !== lo0) break;
    if (g.extended && bm(i) !== b0) break;
  }
  return i - first;
}

/** TypeScript {@link WasmL2.countNeedingAlloc}. */
export function countNeedingAllocTs(slice: Uint8Array, g: L2Geometry, first: number, max: number): number {
  const esize = g.extended ? 16 : 8;
  const n = Math.floor(slice.byteLength / esize);
  const dv = new DataView(slice.buffer, slice.byteOffset, slice.byteLength);
  const last = Math.min(n, first + max);
  let i = first;
  for (; i < last; i++) {
    const hi = dv.getUint32(i * esize);
    const lo = dv.getUint32(i * esize + 4);
    const host = (hi & 0x00ffffff) * TWO32 + ((lo & 0xfffffe00) >>> 0);
    if ((hi & 0x80000000) !== 0 && (hi & 0x40000000) === 0 && host !== 0) break;
  }
  return i - first;
}

/** Loads the WASM L2 mapper. */
export async function loadL2(maxRuns?: number): Promise<WasmL2> {
  return new WasmL2(await loadWasm<L2Exports>('l2'), maxRuns);
}

/** Synchronous {@link loadL2} (Node, or after setWasmSource with bytes). */
export function loadL2Sync(maxRuns?: number): WasmL2 {
  return new WasmL2(loadWasmSync<L2Exports>('l2'), maxRuns);
}

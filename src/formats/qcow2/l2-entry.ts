/**
 * L1 / L2 entry decoding and encoding (standard 64-bit and extended 128-bit
 * entries). Entries are handled as two 32-bit halves so no BigInt is needed
 * on the hot path: `hi` holds bits 32..63, `lo` bits 0..31; with extended L2
 * `zero` / `alloc` are the subcluster zero (bits 32..63) and allocation (bits
 * 0..31) bitmaps of the second word.
 */
import { BlockError } from '../../core/errors.js';

/** Cluster / subcluster types (QEMU's QCow2SubclusterType). */
export const ClusterType = {
  /** Not allocated here: backing file, or zeros without one. */
  UNALLOC: 0,
  /** Reads zeros, no host cluster. */
  ZERO_PLAIN: 1,
  /** Reads zeros, host cluster kept (preallocated). */
  ZERO_ALLOC: 2,
  /** Data at the host offset. */
  NORMAL: 3,
  /** Compressed data. */
  COMPRESSED: 4,
  /** Extended L2: host cluster allocated but this subcluster falls through to backing. */
  UNALLOC_ALLOC: 5,
  /** Inconsistent entry (both zero and allocated bit, allocated bit without cluster). */
  INVALID: 6,
} as const;
export type ClusterType = (typeof ClusterType)[keyof typeof ClusterType];

export const TYPE_NAMES = ['unallocated', 'zero', 'zero (allocated)', 'normal', 'compressed', 'unallocated (allocated)', 'invalid'];

export interface RawEntry {
  hi: number;
  lo: number;
  zero: number;
  alloc: number;
}

export function readEntry(dv: DataView, i: number, ext: boolean): RawEntry {
  if (ext) {
    const o = i * 16;
    return { hi: dv.getUint32(o), lo: dv.getUint32(o + 4), zero: dv.getUint32(o + 8), alloc: dv.getUint32(o + 12) };
  }
  const o = i * 8;
  return { hi: dv.getUint32(o), lo: dv.getUint32(o + 4), zero: 0, alloc: 0 };
}

export function writeEntry(dv: DataView, i: number, ext: boolean, e: RawEntry): void {
  if (ext) {
    const o = i * 16;
    dv.setUint32(o, e.hi >>> 0);
    dv.setUint32(o + 4, e.lo >>> 0);
    dv.setUint32(o + 8, e.zero >>> 0);
    dv.setUint32(o + 12, e.alloc >>> 0);
  } else {
    const o = i * 8;
    dv.setUint32(o, e.hi >>> 0);
    dv.setUint32(o + 4, e.lo >>> 0);
  }
}

/** Host offset in bits 9..55. */
export function entryOffset(hi: number, lo: number): number {
  return (hi & 0x00ffffff) * 4294967296 + ((lo & 0xfffffe00) >>> 0);
}

/** hi / lo halves of an entry pointing at `offset` with the COPIED flag. */
export function makeEntry(offset: number, copied: boolean, zeroFlag = false): RawEntry {
  const hi = Math.floor(offset / 4294967296) | (copied ? 0x80000000 : 0);
  const lo = (offset >>> 0) | (zeroFlag ? 1 : 0);
  return { hi: hi >>> 0, lo: lo >>> 0, zero: 0, alloc: 0 };
}

export const isCopied = (hi: number) => (hi & 0x80000000) !== 0;

/** The first `n` L1 entries (L2 table offsets and COPIED flags) as the disk holds them, written into `out`. */
export function encodeL1(offsets: ArrayLike<number>, copied: ArrayLike<number>, n: number, out: Uint8Array = new Uint8Array(n * 8)): Uint8Array {
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < n; i++) {
    const e = makeEntry(offsets[i]!, copied[i] === 1);
    dv.setUint32(i * 8, e.hi);
    dv.setUint32(i * 8 + 4, e.lo);
  }
  return out;
}

/** `n` L1 entries from their disk form: offsets and COPIED flags (1 or 0), into the arrays given or new ones. */
export function decodeL1(
  raw: Uint8Array,
  n: number,
  offsets: Float64Array<ArrayBuffer> = new Float64Array(n),
  copied: Uint8Array<ArrayBuffer> = new Uint8Array(n),
): { offsets: Float64Array<ArrayBuffer>; copied: Uint8Array<ArrayBuffer> } {
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  for (let i = 0; i < n; i++) {
    const hi = dv.getUint32(i * 8);
    offsets[i] = entryOffset(hi, dv.getUint32(i * 8 + 4));
    copied[i] = isCopied(hi) ? 1 : 0;
  }
  return { offsets, copied };
}
export const isCompressed = (hi: number) => (hi & 0x40000000) !== 0;

/** Type of a whole cluster from its entry (the first word). */
export function clusterType(e: RawEntry, ext: boolean, dataFile: boolean): ClusterType {
  if (isCompressed(e.hi)) return ClusterType.COMPRESSED;
  const off = entryOffset(e.hi, e.lo);
  if (!ext && e.lo & 1) return off !== 0 || (dataFile && isCopied(e.hi)) ? ClusterType.ZERO_ALLOC : ClusterType.ZERO_PLAIN;
  if (off === 0 && !(dataFile && isCopied(e.hi))) return ClusterType.UNALLOC;
  return ClusterType.NORMAL;
}

/**
 * Type of subcluster `s` (extended L2) given the cluster type. As QEMU, a
 * bitmap is judged whole: an allocated cluster with any subcluster marked
 * both allocated and zero, or an unallocated one with any allocated bit, is
 * invalid whichever subcluster is asked for.
 */
export function subclusterType(ct: ClusterType, e: RawEntry, s: number): ClusterType {
  if (ct === ClusterType.COMPRESSED) return ClusterType.COMPRESSED;
  if (!bitmapValid(ct, e)) return ClusterType.INVALID;
  const bit = 1 << s;
  if (ct === ClusterType.NORMAL) return e.zero & bit ? ClusterType.ZERO_ALLOC : e.alloc & bit ? ClusterType.NORMAL : ClusterType.UNALLOC_ALLOC;
  return e.zero & bit ? ClusterType.ZERO_PLAIN : ClusterType.UNALLOC;
}

/** Whether an extended entry's subcluster bitmap is one QEMU accepts for its cluster type. */
export function bitmapValid(ct: ClusterType, e: RawEntry): boolean {
  if (ct === ClusterType.COMPRESSED) return true;
  if (ct === ClusterType.NORMAL) return (e.alloc & e.zero) === 0;
  return e.alloc === 0;
}

/** Compressed descriptor: host byte offset and the number of 512-byte sectors. */
export function compressedInfo(e: RawEntry, clusterBits: number): { offset: number; sectors: number } {
  const x = 62 - (clusterBits - 8);
  const hiBits = x - 32;
  const offset = (e.hi & ((1 << hiBits) - 1)) * 4294967296 + (e.lo >>> 0);
  const sectors = ((e.hi & 0x3fffffff) >>> hiBits) + 1;
  return { offset, sectors };
}

/** Encodes a compressed descriptor for data at `offset` of `bytes` bytes. */
export function makeCompressedEntry(offset: number, bytes: number, clusterBits: number): RawEntry {
  const x = 62 - (clusterBits - 8);
  // An offset past the field would run into the sector count: a garbled entry, never written.
  if (offset + bytes - 1 >= 2 ** x) throw new BlockError('EFBIG', 'File too large', {}, { detail: `compressed data at host offset ${offset} does not fit a ${x}-bit descriptor` });
  const hiBits = x - 32;
  const extra = Math.floor((offset + bytes - 1) / 512) - Math.floor(offset / 512);
  const hi = 0x40000000 | (extra << hiBits) | Math.floor(offset / 4294967296);
  return { hi: hi >>> 0, lo: offset >>> 0, zero: 0, alloc: 0 };
}

/** Bit mask of subclusters [first, last). */
export function subMask(first: number, last: number): number {
  if (last <= first) return 0;
  const n = last - first;
  return n >= 32 ? 0xffffffff : (((1 << n) - 1) << first) >>> 0;
}

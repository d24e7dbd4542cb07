/**
 * How the copy engine writes an extent into a target: zero detection, sparse
 * output and compressed writes. Sparse output follows qemu-img convert
 * (QEMU's is_allocated_sectors_min): within a data buffer, runs of zero
 * sectors of at least `minSparse` bytes are written as zeros (or not at all
 * when the target reads zeros already), shorter runs inside data are data.
 */
import { ReqFlag, type ReqFlags } from '../core/driver.js';
import { einval } from '../core/errors.js';
import { isZeroBuffer, zeroRunLength } from '../core/zero-detect.js';
import type { CopyExtent } from './extent.js';

/** What a copy writes into (a BlockBackend is one). */
export interface CopyTarget {
  write(offset: number, data: Uint8Array, flags?: ReqFlags): Promise<void>;
  writeZeroes(offset: number, bytes: number, flags?: ReqFlags): Promise<void>;
}

/** Zero detection in data buffers. */
export type ZeroDetect =
  /** Every data buffer is written as data. */
  | 'none'
  /** An all-zero buffer is a zero write, any other is data. */
  | 'buffer'
  /** Zero sector runs of at least `minSparse` bytes are zero writes (qemu-img convert -S). */
  | 'sectors';

/** Options of {@link targetWriter}. */
export interface TargetWriterOptions {
  target: CopyTarget;
  zeroDetect: ZeroDetect;
  /** For `sectors`: the shortest zero run (bytes, a multiple of 512, > 0) left unwritten. */
  minSparse?: number;
  /** The target reads zeros already: zero ranges are not written at all. */
  zeroInit: boolean;
  /**
   * Data is written compressed (pieces are whole target clusters). Zero
   * detection is then per buffer (`sectors` acts as `buffer`).
   */
  compress: boolean;
  /** Zero extents are written as data (qemu-img convert -S 0), compressed with `compress`. */
  fullyAllocate: boolean;
  /**
   * Run-length scan of zero / non-zero blocks (the WASM one for buffers in its
   * memory); the TypeScript scan by default.
   */
  runLength?: (buf: Uint8Array, block: number, zero: boolean) => number;
}

const SECTOR = 512;

/** The write step of a copy: writes `extent` (with its bytes for data) into the target. */
export type ExtentWriter = (extent: CopyExtent, buf: Uint8Array | null) => Promise<void>;

/** A writer for the copy engine (see the file comment). */
export function targetWriter(o: TargetWriterOptions): ExtentWriter {
  const { target, zeroInit, compress } = o;
  const minSparse = o.zeroDetect === 'sectors' ? (o.minSparse ?? 0) : 0;
  if (o.zeroDetect === 'sectors' && (!Number.isSafeInteger(minSparse) || minSparse <= 0 || minSparse % SECTOR)) {
    throw einval(`Invalid sparse size: ${minSparse} (a positive multiple of ${SECTOR})`);
  }
  const runLength = o.runLength ?? zeroRunLength;
  const minSectors = minSparse / SECTOR;
  // qemu: MAX(pow2floor(min_sparse), request_alignment in sectors); a file target's
  // request_alignment is 1 byte, so this is pow2floor(min_sparse).
  const alignSectors = minSectors > 0 ? 2 ** Math.floor(Math.log2(minSectors)) : 1;
  const sectors = (bytes: number): number => Math.ceil(bytes / SECTOR);

  /** qemu's is_allocated_sectors: [bytes, is data] of the run at `from`, end aligned. */
  const allocatedRun = (b: Uint8Array, from: number, dstOffset: number): [number, boolean] => {
    const left = b.length - from;
    const rest = b.subarray(from);
    let i = runLength(rest, SECTOR, true);
    let zero = i > 0;
    if (!zero) i = runLength(rest, SECTOR, false);
    // The whole rest is the same: no reason to split it.
    if (i >= left) return [left, !zero];
    let iSec = i / SECTOR;
    const tail = (Math.floor(dstOffset / SECTOR) + iSec) % alignSectors;
    if (tail) {
      // A zero run that is only the tail of an alignment unit is written as data.
      if (zero && iSec <= tail) zero = false;
      if (!zero) iSec = Math.min(iSec + alignSectors - tail, sectors(left));
      else iSec -= tail;
    }
    return [Math.min(left, iSec * SECTOR), !zero];
  };
  /** qemu's is_allocated_sectors_min: zero runs shorter than minSparse after data are data. */
  const allocatedRunMin = (b: Uint8Array, from: number, dstOffset: number): [number, boolean] => {
    const min = Math.min(minSectors, sectors(b.length - from));
    const [first, data] = allocatedRun(b, from, dstOffset);
    if (!data) return [first, false];
    let used = first;
    let checked = first;
    while (from + checked < b.length) {
      const [n, d] = allocatedRun(b, from + checked, dstOffset + checked);
      checked += n;
      if (d) used = checked;
      else if (sectors(n) >= min) break;
    }
    return [used, true];
  };
  const zeroes = async (offset: number, bytes: number): Promise<void> => {
    if (!zeroInit) await target.writeZeroes(offset, bytes, ReqFlag.MAY_UNMAP);
  };

  return async (e, buf) => {
    if (e.kind === 'skip') return;
    if (e.kind === 'zero') {
      if (o.fullyAllocate) await target.write(e.offset, new Uint8Array(e.length), compress ? ReqFlag.COMPRESSED : 0);
      else await zeroes(e.offset, e.length);
      return;
    }
    if (!buf || buf.length !== e.length) throw einval(`Data extent at ${e.offset} of ${e.length} bytes came with ${buf ? buf.length : 'no'} bytes`);
    if (o.zeroDetect !== 'none' && (compress || o.zeroDetect === 'buffer') && isZeroBuffer(buf)) {
      await zeroes(e.offset, e.length);
      return;
    }
    if (compress) {
      await target.write(e.offset, buf, ReqFlag.COMPRESSED);
      return;
    }
    if (o.zeroDetect !== 'sectors') {
      await target.write(e.offset, buf);
      return;
    }
    let pos = 0;
    while (pos < e.length) {
      const [n, data] = allocatedRunMin(buf, pos, e.offset + pos);
      if (data) await target.write(e.offset + pos, buf.subarray(pos, pos + n));
      else await zeroes(e.offset + pos, n);
      pos += n;
    }
  };
}

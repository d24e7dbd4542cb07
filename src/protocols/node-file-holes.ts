/**
 * Holes in a sparse file without SEEK_DATA / SEEK_HOLE (Node has neither).
 *
 * QEMU's file-posix asks the kernel where the holes are. Node can only tell
 * that a file has some: fstat's block count is below its length. In such a
 * file every hole is a whole file-system block of zeros, so block status
 * reads the range and calls each aligned all-zero block a hole. This is
 * exact for the holes; it differs from QEMU where zeros were written into a
 * sparse file (QEMU: data, here: a hole). One exception: the file's first
 * block counts as data even when it reads as zeros, because file-posix (and
 * node-file) write zeros there when they create or grow an empty file, and
 * QEMU then reports it as data; a file made sparse by other tools, whose
 * first block is a hole, differs there. A file whose block count covers
 * its length is never read for this, so fully allocated files report data
 * everywhere, as before. Compressing file systems (btrfs, ZFS) can report
 * fewer blocks than the length for a file without holes; there written zero
 * blocks are called holes too.
 */
import type { Stats } from 'node:fs';
import { isZeroBuffer } from '../core/zero-detect.js';

/** The smallest block the scan looks at: a hole is at least one sector. */
const MIN_BLOCK = 512;
/** The largest: file systems with bigger blocks still have 4 KiB-aligned zeros. */
const MAX_BLOCK = 64 * 1024;
/** Bytes read at a time. */
const WINDOW = 1 << 20;
/** Bytes one call looks at before it answers (the caller asks again for the rest). */
const MAX_SCAN = 64 << 20;

/** Whether fstat says the file has holes (allocated blocks short of its length). */
export function hasHoles(st: Pick<Stats, 'blocks' | 'size'>): boolean {
  return st.blocks * 512 < st.size;
}

/** The block size holes are aligned to: st_blksize when it is a plausible power of two, else 4 KiB. */
export function holeBlockSize(st: Pick<Stats, 'blksize'>): number {
  const b = st.blksize;
  return b >= MIN_BLOCK && b <= MAX_BLOCK && (b & (b - 1)) === 0 ? b : 4096;
}

/** The first run found by {@link scanHoles}: `zero` bytes are holes, otherwise data. */
export interface HoleRun {
  zero: boolean;
  pnum: number;
}

/**
 * The run of data or of holes that starts at `offset` (inside the file) and
 * ends before `end` (at most the file's length). A block that is partly in
 * the range counts as a whole: a hole only if all of it is zeros.
 */
export async function scanHoles(
  read: (offset: number, bytes: number, buf: Uint8Array) => Promise<void>,
  block: number,
  offset: number,
  end: number,
  fileSize: number,
): Promise<HoleRun> {
  let pos = Math.floor(offset / block) * block;
  const limit = Math.min(end, offset + MAX_SCAN);
  const buf = new Uint8Array(Math.min(WINDOW, Math.ceil((limit - pos) / block) * block));
  let zero: boolean | undefined;
  while (pos < limit) {
    const n = Math.min(buf.length, Math.ceil((limit - pos) / block) * block, fileSize - pos);
    await read(pos, n, buf.subarray(0, n));
    for (let b = 0; b < n; b += block) {
      // The first block is data (see above).
      const isZero = pos + b !== 0 && isZeroBuffer(buf.subarray(b, Math.min(b + block, n)));
      zero ??= isZero;
      if (isZero !== zero) return { zero, pnum: Math.min(pos + b, end) - offset };
    }
    pos += n;
  }
  return { zero: zero ?? false, pnum: Math.min(pos, end) - offset };
}

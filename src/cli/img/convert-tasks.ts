/**
 * `img convert` on the copy engine (src/jobs/): the sources walked as one
 * concatenated disk by block status (statusExtents), written with qemu-img's
 * sparse detection or compressed, in read-ahead buffers from the WASM zero
 * module's pool when it is loaded. Failures become qemu-img's messages.
 */
import { Buffer } from 'node:buffer';
import type { BlockBackend } from '../../core/backend.js';
import { ReqFlag } from '../../core/driver.js';
import { zeroRunLength } from '../../core/zero-detect.js';
import type { WasmZero, ZeroBufferPool } from '../../wasm/zero.js';
import { runCopy, type CopyExtent } from '../../jobs/copy-engine.js';
import { blkCopyRange } from '../../core/copy-range.js';
import { CopyBuffers } from '../../jobs/buffers.js';
import { CopyError, copyFailure } from '../../jobs/copy-error.js';
import { readConcatenated, statusExtents } from '../../jobs/plan.js';
import { targetWriter } from '../../jobs/target-writer.js';
import { CliExit, errHint, errText, strerror } from '../common.js';
import { IO_BUF_SIZE, fail, type Progress } from './context.js';

/**
 * Pieces read ahead and writes in flight: the zero pool holds READ_AHEAD +
 * WRITE_DEPTH + 1 buffers. Each is a 2 MiB piece of peak RSS; from the page
 * cache a deeper queue bought no speed (2 reads ahead and 1 write in flight
 * copied as fast as 8 and 4, with 18 MB less RSS: bench/jobs/convert-vs-qemu.ts).
 */
export const READ_AHEAD = 2;
export const WRITE_DEPTH = 1;
/**
 * Adjacent small data pieces read at once (the copy engine's coalesceReads): eight
 * 64 KiB compressed clusters, decoded on the decompression pool (all of them on libuv's
 * threads for zlib in Node, half on a worker thread elsewhere). Larger reads decoded no
 * faster and touched more of each read buffer (peak RSS).
 */
export const COALESCE_BYTES = 512 * 1024;

/** What {@link convertCopy} copies, and how. */
export interface ConvertCopy {
  srcs: readonly BlockBackend[];
  sizes: readonly number[];
  target: BlockBackend;
  /** Largest piece: IO_BUF_SIZE, or the target cluster when compressing. */
  chunkSize: number;
  /** -c: data is written compressed. */
  compress: boolean;
  /** Target cluster size when compressing, else 0. */
  compressCluster: number;
  /** -S in bytes; 0 fully allocates the target. */
  minSparse: number;
  /** The target reads zeros already (zero ranges are not written). */
  zeroInit: boolean;
  /** -B or -o backing_file: only what the sources hold above their backing is copied. */
  targetHasBacking: boolean;
  /** The zero module and its buffer pool, when loaded. */
  wz: { zero: WasmZero; pool: ZeroBufferPool } | undefined;
  /** -p: progress lines (counting the bytes copied as data, QEMU's allocated_sectors). */
  prog: Progress | null;
  /** -r: bytes per second, 0 or undefined for no limit. */
  rateLimit?: number;
  /** The target places new data in write order (vdi): one write at a time, as qemu-img's in-order writes. */
  inOrder?: boolean;
  /** -C: data goes by copy offloading until a copy fails, then by reads and writes (as qemu-img). */
  copyRange?: boolean;
}

/**
 * qemu-img's convert_co_copy_range: each data piece copied source by
 * source with {@link blkCopyRange}; the first failure turns offloading off for
 * the rest of the copy (the piece is then read and written).
 */
function offloadedCopier(srcs: readonly BlockBackend[], sizes: readonly number[], target: BlockBackend): (e: CopyExtent) => Promise<boolean> {
  let enabled = true;
  return async (e) => {
    if (!enabled) return false;
    try {
      let start = 0;
      for (let i = 0; i < srcs.length; i++) {
        const end = start + sizes[i]!;
        const from = Math.max(e.offset, start);
        const to = Math.min(e.offset + e.length, end);
        if (from < to) await blkCopyRange(srcs[i]!, from - start, target, from, to - from);
        start = end;
      }
      return true;
    } catch {
      enabled = false;
      return false;
    }
  };
}

/** Copies the sources into the target; throws qemu-img's message on failure. */
export async function convertCopy(c: ConvertCopy): Promise<void> {
  const { srcs, sizes, target, wz } = c;
  const compress = c.compress;
  const fullyAllocate = c.minSparse === 0;
  const plan = { srcs, sizes, chunkSize: c.chunkSize, compressCluster: c.compressCluster, fullyAllocate, targetHasBacking: c.targetHasBacking };
  const buffers = new CopyBuffers({
    size: Math.max(c.chunkSize, IO_BUF_SIZE),
    lender: wz && { take: (n) => wz.pool.take(n), give: (b) => wz.pool.give(b), owns: (b) => wz.zero.owns(b) },
    alloc: (n) => Buffer.allocUnsafeSlow(n),
  });
  const prog = c.prog;
  let eofRefused = false;
  try {
    await runCopy(
      {
        extents: () => statusExtents(plan),
        read: (offset, buf) => readConcatenated(srcs, sizes, offset, buf),
        ...(c.copyRange ? { copy: offloadedCopier(srcs, sizes, target) } : {}),
        write: targetWriter({
          target,
          zeroDetect: fullyAllocate ? 'none' : 'sectors',
          minSparse: c.minSparse,
          zeroInit: c.zeroInit,
          compress,
          fullyAllocate,
          // Runs are found by the WASM module when the buffer lives in its memory (no copy).
          runLength: (b, block, zero) => (wz?.zero.owns(b) ? wz.zero.runLength(b, block, zero) : zeroRunLength(b, block, zero)),
        }),
        finish: async () => {
          // Tells the format compressed writing is done (qcow2 aligns its file end). qemu-img
          // returns a failure of this call as the command's, without a message (qcow refuses it).
          if (compress) {
            await target.write(0, new Uint8Array(0), ReqFlag.COMPRESSED).catch(() => {
              eofRefused = true;
            });
          }
          if (!eofRefused) await target.flush();
        },
      },
      {
        chunkSize: c.chunkSize,
        ...(c.rateLimit ? { rateLimit: c.rateLimit } : {}),
        // Offloaded copies start where reads would: one at a time keeps the target's clusters in
        // the order qemu-img allocates them.
        readAhead: c.copyRange ? 1 : READ_AHEAD,
        // A compressed qcow2 answers block status one cluster at a time: its clusters are still
        // written one by one (qemu-img's pieces), but read COALESCE_BYTES at once, so their decoding
        // is shared with the decompression pool's threads (as qemu-img's reads in flight share its
        // thread pool).
        coalesceReads: COALESCE_BYTES,
        // Compressed clusters are packed byte by byte in write order: one write at a time, as
        // qemu-img's in-order writes, so the image and the byte a full disk fails at are QEMU's.
        // So are a vdi target's new blocks (appended as they come).
        writeDepth: compress || c.inOrder ? 1 : WRITE_DEPTH,
        buffers,
        counts: (e) => e.kind === 'data' || (fullyAllocate && e.kind === 'zero'),
        ...(prog ? { onProgress: ({ done, total }) => prog.print(total ? (100 * done) / total : 100, 0) } : {}),
      },
    );
  } catch (e) {
    if (e instanceof CopyError) fail(`${copyFailure(e.op, e.offset)}: ${strerror(e.original)}`);
    if (e instanceof CliExit) throw e;
    fail(`error while converting: ${errText(e)}`, 1, errHint(e));
  }
  if (eofRefused) throw new CliExit(1);
}

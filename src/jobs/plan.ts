/**
 * Planners of the copy engine: they turn block status into the extents a
 * copy moves. {@link statusExtents} is qemu-img convert's cut (QEMU's
 * convert_iteration_sectors): the sources are one concatenated disk, walked
 * in target offsets; each step covers a run of one block status of the
 * source under it, data in buffer-sized pieces. When compressing, every step
 * is whole target clusters: a run shorter than a cluster becomes a cluster of
 * data, which may reach into the next source (the last cluster may be
 * partial, at the end of the disk), and longer runs are cut down to whole
 * clusters, so steps stay cluster aligned even where a source ends
 * mid-cluster. {@link allocationExtents} is the commit walk: what is
 * allocated above a base is data, the rest is skipped.
 */
import type { BlockNode } from '../core/node.js';
import { Status } from '../core/driver.js';
import { blockStatusAbove, cowChild, isAllocatedAbove } from '../core/block-status.js';
import { einval } from '../core/errors.js';
import type { CopyExtent } from './extent.js';
import { CopyError } from './copy-error.js';

/** A source of a copy: its top node and a reader (a BlockBackend is one). */
export interface CopySource {
  readonly node: BlockNode;
  pread(offset: number, buf: Uint8Array): Promise<void>;
}

/** What {@link statusExtents} walks. */
export interface StatusPlan {
  /** Sources, concatenated in this order. */
  srcs: readonly CopySource[];
  /** Their lengths in bytes. */
  sizes: readonly number[];
  /** Largest data piece (the copy buffer). */
  chunkSize: number;
  /** Target cluster size when compressing, else 0. */
  compressCluster: number;
  /** -S 0: zero runs are data to write, in buffer-sized pieces too. */
  fullyAllocate: boolean;
  /**
   * The target has a backing file: only what the sources hold above their
   * own backing is copied, the rest is skipped.
   */
  targetHasBacking: boolean;
}

/** The source holding target offset `pos`: its index and where it starts. */
function sourceAt(sizes: readonly number[], pos: number): { i: number; start: number } {
  let start = 0;
  for (let i = 0; i < sizes.length; i++) {
    if (pos < start + sizes[i]!) return { i, start };
    start += sizes[i]!;
  }
  return { i: sizes.length - 1, start: start - (sizes[sizes.length - 1] ?? 0) };
}

function checkChunk(chunkSize: number): void {
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) throw einval(`Invalid copy chunk size: ${chunkSize}`);
}

/** The extents of a convert, in target order (see the file comment). */
export async function* statusExtents(p: StatusPlan): AsyncGenerator<CopyExtent> {
  checkChunk(p.chunkSize);
  const total = p.sizes.reduce((a, b) => a + b, 0);
  let nextStatus = 0;
  let runKind: CopyExtent['kind'] = 'data';
  let pos = 0;
  while (pos < total) {
    if (nextStatus <= pos) {
      const { i, start } = sourceAt(p.sizes, pos);
      const node = p.srcs[i]!.node;
      const off = pos - start;
      const left = p.sizes[i]! - off;
      let st: Awaited<ReturnType<typeof blockStatusAbove>>;
      try {
        st = await blockStatusAbove(node, p.targetHasBacking ? cowChild(node) : undefined, true, off, left);
      } catch (e) {
        throw new CopyError('status', pos, e);
      }
      const n = st.pnum > 0 ? Math.min(st.pnum, left) : left;
      if (p.targetHasBacking && !(st.status & Status.ALLOCATED)) runKind = 'skip';
      else if (st.status & Status.ZERO) runKind = 'zero';
      else runKind = 'data';
      nextStatus = pos + n;
    }
    let n = nextStatus - pos;
    let kind = runKind;
    if (kind === 'data') n = Math.min(n, p.chunkSize);
    const cs = p.compressCluster;
    if (cs) {
      if (n < cs) {
        n = Math.min(cs, total - pos);
        kind = 'data';
      } else {
        n -= n % cs;
      }
    }
    if (p.fullyAllocate && kind === 'zero') n = Math.min(n, p.chunkSize);
    yield { offset: pos, length: n, kind };
    pos += n;
  }
}

/** Reads target range [offset, offset + buf.length) from the concatenated sources. */
export async function readConcatenated(srcs: readonly CopySource[], sizes: readonly number[], offset: number, buf: Uint8Array): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { i, start } = sourceAt(sizes, offset + done);
    const off = offset + done - start;
    const n = Math.min(buf.length - done, sizes[i]! - off);
    if (n <= 0) throw einval(`Read at ${offset + done} is past the end of the sources (${sizes.reduce((a, b) => a + b, 0)} bytes)`);
    await srcs[i]!.pread(off, buf.subarray(done, done + n));
    done += n;
  }
}

/**
 * The runs of `top` from 0 to `length` (QEMU's commit walk): allocated in a
 * layer above `base` (exclusive) is data, the rest skip. A run is one answer
 * of the allocation walk; the engine cuts data runs into buffer pieces.
 */
export async function* allocationExtents(top: BlockNode, base: BlockNode | undefined, length: number): AsyncGenerator<CopyExtent> {
  let off = 0;
  while (off < length) {
    const r = await isAllocatedAbove(top, base, false, off, length - off);
    const n = r.pnum || length - off;
    yield { offset: off, length: n, kind: r.allocated ? 'data' : 'skip' };
    off += n;
  }
}

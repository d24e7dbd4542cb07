/**
 * How `img convert` cuts its work (QEMU's convert_iteration_sectors and
 * convert_co_read): the sources are one concatenated disk, walked in target
 * offsets; each step covers a run of one block status of the source under
 * it, data in buffer-sized pieces. When compressing, every step is whole
 * target clusters: a run shorter than a cluster becomes a cluster of data,
 * which may reach into the next source (the last cluster may be partial, at
 * the end of the disk), and longer runs are cut down to whole clusters, so
 * steps stay cluster aligned even where a source ends mid-cluster.
 */
import type { BlockBackend } from '../../core/backend.js';
import { Status } from '../../core/driver.js';
import { blockStatusAbove, cowChild } from '../../core/block-status.js';

/** One piece of a convert: what a range of the concatenated sources holds and where it goes. */
export interface ConvertTask {
  /** Offset in the target (and in the concatenated sources). */
  dstOffset: number;
  length: number;
  kind: 'data' | 'zero' | 'backing';
}

export interface ConvertPlan {
  srcs: readonly BlockBackend[];
  sizes: readonly number[];
  /** Largest data piece (the copy buffer). */
  chunkSize: number;
  /** Target cluster size when compressing, else 0. */
  compressCluster: number;
  /** -S 0: zero runs are written as data, in buffer-sized pieces too. */
  fullyAllocate: boolean;
  /** With a backing file for the target, only what the sources have above their own backing is copied. */
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

/** The steps of a convert, in target order. */
export async function* convertTasks(p: ConvertPlan): AsyncGenerator<ConvertTask> {
  const total = p.sizes.reduce((a, b) => a + b, 0);
  let nextStatus = 0;
  let runKind: ConvertTask['kind'] = 'data';
  let pos = 0;
  while (pos < total) {
    if (nextStatus <= pos) {
      const { i, start } = sourceAt(p.sizes, pos);
      const node = p.srcs[i]!.node;
      const off = pos - start;
      const left = p.sizes[i]! - off;
      const st = await blockStatusAbove(node, p.targetHasBacking ? cowChild(node) : undefined, true, off, left);
      const n = st.pnum > 0 ? Math.min(st.pnum, left) : left;
      if (p.targetHasBacking && !(st.status & Status.ALLOCATED)) runKind = 'backing';
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
    yield { dstOffset: pos, length: n, kind };
    pos += n;
  }
}

/** Reads target range [dstOffset, dstOffset + buf.length) from the concatenated sources. */
export async function readSources(srcs: readonly BlockBackend[], sizes: readonly number[], dstOffset: number, buf: Uint8Array): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { i, start } = sourceAt(sizes, dstOffset + done);
    const off = dstOffset + done - start;
    const n = Math.min(buf.length - done, sizes[i]! - off);
    await srcs[i]!.pread(off, buf.subarray(done, done + n));
    done += n;
  }
}

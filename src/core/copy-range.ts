/**
 * Copy offloading between nodes (QEMU 7.2's bdrv_co_copy_range): a request
 * that reads `bytes` at `srcOffset` of one link and writes them at
 * `dstOffset` of another without the data passing through the caller.
 *
 * The request goes down the source side first (`copyRangeFrom` of each
 * driver: a format maps the range onto its file, as a read would), then
 * down the destination side (`copyRangeTo`), each step as a tracked request
 * of its node (a read on the source, a write with its hooks, dirty bitmaps
 * and write generation on the destination). The protocol at the bottom
 * copies inside its back end (memory to memory, file to file). Any node on
 * the way without the hooks, or encrypted, makes it ENOTSUP; callers then
 * read and write (qemu-img convert -C does so from then on).
 */
import type { BdrvChild } from './child.js';
import { ReqFlag, type ReqFlags } from './driver.js';
import { BlockError } from './errors.js';
import { track } from './tracked-requests.js';
import { checkNotClosed, checkRequest, checkWritable, checkWriteEnd } from './request-checks.js';
import { beginInFlight, endInFlight } from './request-accounting.js';
import { afterWrite, beforeWrite, writeFinished } from './request-write-hooks.js';
import { pwriteZeroes } from './request-zero-discard.js';

/** One copy request as it goes down the graph. */
export interface CopyRangeRequest {
  src: BdrvChild;
  srcOffset: number;
  dst: BdrvChild;
  dstOffset: number;
  bytes: number;
  readFlags: ReqFlags;
  writeFlags: ReqFlags;
}

function unsupported(): BlockError {
  return new BlockError('ENOTSUP', 'Operation not supported');
}

/** Checks shared by both directions; true when the request is a zero write already done. */
async function prepare(r: CopyRangeRequest): Promise<boolean> {
  checkNotClosed(r.dst.node);
  checkRequest(r.dst.node, r.dstOffset, r.bytes);
  if (r.writeFlags & ReqFlag.ZERO_WRITE) {
    // The source reads as zeros here (an unallocated cluster): the destination gets a zero write.
    await pwriteZeroes(r.dst, r.dstOffset, r.bytes, r.writeFlags & ~ReqFlag.ZERO_WRITE);
    return true;
  }
  checkNotClosed(r.src.node);
  checkRequest(r.src.node, r.srcOffset, r.bytes);
  const from = r.src.node;
  const to = r.dst.node;
  if (!from.instance.copyRangeFrom || !to.instance.copyRangeTo || from.instance.isEncrypted?.() || to.instance.isEncrypted?.()) {
    throw unsupported();
  }
  return false;
}

/**
 * The source side (QEMU's bdrv_co_copy_range_from): a tracked read on the
 * source node while its driver passes the request on.
 */
export async function copyRangeFrom(r: CopyRangeRequest): Promise<void> {
  if (r.bytes === 0 || (await prepare(r))) return;
  const node = r.src.node;
  const req = track(node, r.srcOffset, r.bytes, 'read', false);
  beginInFlight(node);
  try {
    await req.waitForBlockers();
    await node.instance.copyRangeFrom!(r);
  } finally {
    req.end();
    endInFlight(node);
  }
}

/**
 * The destination side (QEMU's bdrv_co_copy_range_to): a tracked write on
 * the destination node, with the write hooks around its driver's copy.
 */
export async function copyRangeTo(r: CopyRangeRequest): Promise<void> {
  if (r.bytes === 0 || (await prepare(r))) return;
  const node = r.dst.node;
  checkWriteEnd(node, r.dstOffset, r.bytes);
  checkWritable(r.dst, r.writeFlags, r.dstOffset);
  const req = track(node, r.dstOffset, r.bytes, 'write', false);
  beginInFlight(node);
  let issued = false;
  try {
    await req.waitForBlockers();
    await beforeWrite(node, 'write', r.dstOffset, r.bytes);
    issued = true;
    await node.instance.copyRangeTo!(r);
    afterWrite(node, r.dstOffset, r.bytes);
  } finally {
    writeFinished(node, r.dstOffset, r.bytes, issued);
    req.end();
    endInFlight(node);
  }
}

/** Copies `bytes` from `src` at `srcOffset` to `dst` at `dstOffset` (QEMU's bdrv_co_copy_range). */
export function copyRange(src: BdrvChild, srcOffset: number, dst: BdrvChild, dstOffset: number, bytes: number, readFlags: ReqFlags = 0, writeFlags: ReqFlags = 0): Promise<void> {
  return copyRangeFrom({ src, srcOffset, dst, dstOffset, bytes, readFlags, writeFlags });
}

/** What {@link blkCopyRange} needs of a BlockBackend. */
export interface CopyRangeEnd {
  readonly root: BdrvChild;
  readonly length: number;
}

/**
 * Copy offloading between two backends (QEMU's blk_co_copy_range): both
 * ranges must lie inside their devices (EIO otherwise, as QEMU's
 * blk_check_byte_request), then {@link copyRange}.
 */
export function blkCopyRange(src: CopyRangeEnd, srcOffset: number, dst: CopyRangeEnd, dstOffset: number, bytes: number, readFlags: ReqFlags = 0, writeFlags: ReqFlags = 0): Promise<void> {
  for (const [end, offset] of [[src, srcOffset], [dst, dstOffset]] as const) {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(bytes) || offset < 0 || bytes < 0 || offset + bytes > end.length) {
      return Promise.reject(new BlockError('EIO', `Copy of ${bytes} bytes at ${offset} is beyond the ${end.length}-byte device`));
    }
  }
  return copyRange(src.root, srcOffset, dst.root, dstOffset, bytes, readFlags, writeFlags);
}

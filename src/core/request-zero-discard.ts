/**
 * The zero-write and discard paths: ranges cut at the driver's zero / discard
 * alignment and limits; zero writes fall back to writing zero buffers, and
 * discards are advisory.
 */
import type { BdrvChild } from './child.js';
import type { BlockNode } from './node.js';
import { ReqFlag, type ReqFlags } from './driver.js';
import { BlockError } from './errors.js';
import { track } from './tracked-requests.js';
import { checkMedium, checkNotClosed, checkRequest, checkWritable } from './request-checks.js';
import { account, beginInFlight, endInFlight, now } from './request-accounting.js';
import { alignDown, alignUp, rmwZero } from './request-alignment.js';
import { callWrite } from './request-driver-calls.js';
import { afterWrite, beforeWrite, writeFinished } from './request-write-hooks.js';
import { flush } from './request-flush.js';

/** Size of bounce buffers used when a driver cannot write zeros itself. */
const ZERO_FALLBACK_CHUNK = 1 << 20;

/** Makes a range read as zeros; falls back to writing zero buffers. */
export async function pwriteZeroes(child: BdrvChild, offset: number, bytes: number, flags: ReqFlags = 0): Promise<void> {
  const node = child.node;
  checkRequest(node, offset, bytes);
  if (bytes === 0) return;
  checkNotClosed(node);
  checkWritable(child, flags, offset);
  // As QEMU: a node's own zero writes to its children may unmap only where discard=unmap
  // allows (bdrv_co_pwrite_zeroes); a BlockBackend's pass MAY_UNMAP down as asked
  // (blk_co_pwrite_zeroes does not check), so a qcow2 image frees the clusters.
  if (!node.discardUnmap && child.parent.kind !== 'root') flags &= ~ReqFlag.MAY_UNMAP;
  const align = node.limits.requestAlignment;
  const aligned = offset % align === 0 && bytes % align === 0;
  const start = now();
  const req = track(node, offset, bytes, 'write', !aligned);
  beginInFlight(node);
  let failed = true;
  let issued = false;
  try {
    await req.waitForBlockers();
    await beforeWrite(node, 'zero', offset, bytes);
    issued = true;
    const dbg = node.instance.debug;
    if (dbg) await dbg.event('pwritev_zero');
    const headEnd = Math.min(alignUp(offset, align), offset + bytes);
    const tailStart = Math.max(alignDown(offset + bytes, align), headEnd);
    if (headEnd > offset) await rmwZero(node, offset, headEnd - offset);
    if (tailStart > headEnd) await driverZero(node, headEnd, tailStart - headEnd, flags);
    if (offset + bytes > tailStart) await rmwZero(node, tailStart, offset + bytes - tailStart);
    if (flags & ReqFlag.FUA && !((node.instance.supportedZeroFlags ?? 0) & ReqFlag.FUA)) await flush(node, true);
    afterWrite(node, offset, bytes);
    failed = false;
  } finally {
    if (issued && node.instance.debug) await node.instance.debug.event('pwritev_done');
    writeFinished(node, offset, bytes, issued);
    req.end();
    endInFlight(node);
    account(node.stats.zeroWrite, bytes, start, failed);
  }
}

/** Aligned zero write: the driver's own, split at its limits, else zero buffers. */
export async function driverZero(node: BlockNode, offset: number, bytes: number, flags: ReqFlags) {
  const inst = node.instance;
  const l = node.limits;
  const zeroAlign = Math.max(l.pwriteZeroesAlignment || l.requestAlignment, l.requestAlignment);
  const maxZero = l.maxPwriteZeroes ? alignDown(l.maxPwriteZeroes, zeroAlign) || zeroAlign : 0;
  const supported = inst.supportedZeroFlags ?? 0;
  // NO_FALLBACK always travels down: the layer that cannot write zeros must say so.
  const passFlags = flags & (supported | ReqFlag.NO_FALLBACK) & ~ReqFlag.FUA;
  let pos = offset;
  const end = offset + bytes;
  while (pos < end) {
    let n = end - pos;
    // Send the unaligned (to zeroAlign) head and tail as separate pieces.
    if (pos % zeroAlign !== 0) n = Math.min(n, zeroAlign - (pos % zeroAlign));
    else if (n > zeroAlign) n = alignDown(n, zeroAlign);
    if (maxZero) n = Math.min(n, maxZero);
    let done = false;
    if (inst.pwriteZeroes || node.filtered) {
      try {
        if (inst.pwriteZeroes) await inst.pwriteZeroes(pos, n, passFlags);
        else await node.filtered!.pwriteZeroes(pos, n, flags);
        done = true;
      } catch (e) {
        if (!(e instanceof BlockError && e.code === 'ENOTSUP')) throw e;
      }
    }
    if (!done) {
      if (flags & ReqFlag.NO_FALLBACK) {
        throw new BlockError('ENOTSUP', `Node '${node.nodeName}' cannot write zeros without a buffer`, {
          node: node.nodeName,
          offset: pos,
        });
      }
      await writeZeroBuffers(node, pos, n);
    }
    pos += n;
  }
}

async function writeZeroBuffers(node: BlockNode, offset: number, bytes: number) {
  const chunk = Math.min(bytes, node.limits.maxTransfer || ZERO_FALLBACK_CHUNK, ZERO_FALLBACK_CHUNK);
  const zeros = new Uint8Array(alignUp(chunk, node.limits.requestAlignment));
  for (let done = 0; done < bytes; ) {
    const n = Math.min(zeros.length, bytes - done);
    await callWrite(node, offset + done, n, zeros.subarray(0, n), 0);
    done += n;
  }
}

/**
 * Discards a range. Ignored unless the node was opened with discard=unmap.
 * As in QEMU, the range is cut into fragments at the discard alignment and
 * every fragment is passed down (a format may accept an unaligned one, such as
 * the partial last cluster of an image); a driver answering ENOTSUP for a
 * fragment is ignored, since discard is advisory. Parts smaller than the
 * request alignment are dropped.
 */
export async function pdiscard(child: BdrvChild, offset: number, bytes: number): Promise<void> {
  const node = child.node;
  checkRequest(node, offset, bytes);
  if (bytes === 0) return;
  checkNotClosed(node);
  checkWritable(child, 0, offset);
  if (!node.discardUnmap) return;
  const l = node.limits;
  const start = alignUp(offset, l.requestAlignment);
  const end = alignDown(offset + bytes, l.requestAlignment);
  if (end <= start) return;
  const align = Math.max(l.pdiscardAlignment || l.requestAlignment, l.requestAlignment);
  const max = l.maxPdiscard ? alignDown(l.maxPdiscard, align) || align : 0;
  const t0 = now();
  const req = track(node, start, end - start, 'discard', false);
  beginInFlight(node);
  let failed = true;
  let issued = false;
  try {
    await req.waitForBlockers();
    await beforeWrite(node, 'discard', start, end - start);
    issued = true;
    for (let pos = start; pos < end; ) {
      let n = end - pos;
      if (pos % align !== 0) n = Math.min(n, align - (pos % align));
      else if (n > align) n = alignDown(n, align);
      if (max) n = Math.min(n, max);
      // A driver that gave up during an earlier part (a qcow2 image found corrupt) takes no more.
      if (pos > start) checkMedium(node);
      try {
        if (node.instance.pdiscard) await node.instance.pdiscard(pos, n);
        else if (node.filtered) await node.filtered.pdiscard(pos, n);
      } catch (e) {
        if (!(e instanceof BlockError && e.code === 'ENOTSUP')) throw e;
      }
      pos += n;
    }
    node.writeGeneration++;
    failed = false;
  } finally {
    writeFinished(node, offset, bytes, issued);
    req.end();
    endInFlight(node);
    account(node.stats.discard, end - start, t0, failed);
  }
}

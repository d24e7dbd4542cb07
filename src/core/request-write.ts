/**
 * The write path: checks, detect-zeroes, tracking, hooks, the driver write
 * (aligned, or read-modify-write), and FUA emulated by a flush.
 */
import type { BdrvChild } from './child.js';
import type { BlockNode } from './node.js';
import { ReqFlag, type ReqFlags } from './driver.js';
import { track } from './tracked-requests.js';
import { isZeroBuffer } from './zero-detect.js';
import { checkBuffer, checkNotClosed, checkRequest, checkWritable, checkWriteEnd } from './request-checks.js';
import { account, beginInFlight, endInFlight, now } from './request-accounting.js';
import { rmwWrite } from './request-alignment.js';
import { alignedWrite } from './request-driver-calls.js';
import { afterWrite, beforeWrite, checkProbedRawWrite, writeFinished } from './request-write-hooks.js';
import { pwriteZeroes } from './request-zero-discard.js';
import { flush } from './request-flush.js';

/** Writes through a link. */
export async function pwritev(
  child: BdrvChild,
  offset: number,
  bytes: number,
  buf: Uint8Array,
  flags: ReqFlags = 0,
): Promise<void> {
  const node = child.node;
  checkWriteEnd(node, offset, bytes);
  checkRequest(node, offset, bytes);
  checkBuffer(node, buf, bytes, offset);
  if (bytes === 0) {
    // An empty compressed write tells the format that compressed writing is
    // done (QEMU's end of a convert -c): it may tidy its file's end.
    if (flags & ReqFlag.COMPRESSED && node.instance.pwritev) {
      checkNotClosed(node);
      checkWritable(child, flags, offset);
      await node.instance.pwritev(offset, 0, buf, ReqFlag.COMPRESSED);
    }
    return;
  }
  checkNotClosed(node);
  checkWritable(child, flags, offset);
  if (node.detectZeroes !== 'off' && !(flags & ReqFlag.COMPRESSED) && isZeroBuffer(buf.subarray(0, bytes))) {
    let zflags = flags & ReqFlag.FUA;
    if (node.detectZeroes === 'unmap' && node.discardUnmap) zflags |= ReqFlag.MAY_UNMAP;
    return pwriteZeroes(child, offset, bytes, zflags);
  }
  if (node.probed && offset < 512) checkProbedRawWrite(node, offset, bytes, buf);
  const align = node.limits.requestAlignment;
  const aligned = offset % align === 0 && bytes % align === 0;
  const start = now();
  const req = track(node, offset, bytes, 'write', !aligned);
  beginInFlight(node);
  let failed = true;
  let issued = false;
  try {
    await req.waitForBlockers();
    await beforeWrite(node, 'write', offset, bytes);
    issued = true;
    if (aligned) {
      await alignedWrite(node, offset, bytes, buf.length === bytes ? buf : buf.subarray(0, bytes), flags);
    } else {
      await rmwWrite(node, offset, bytes, buf, flags);
    }
    // As QEMU's bdrv_driver_pwritev: the flush completing a FUA write runs before
    // the write counts, so it skips the driver's flush to disk unless earlier writes wait.
    if (needsFuaFlush(node, flags)) await flush(node, true);
    afterWrite(node, offset, bytes);
    failed = false;
  } finally {
    writeFinished(node, offset, bytes, issued);
    req.end();
    endInFlight(node);
    account(node.stats.write, bytes, start, failed);
  }
}

/** FUA the driver does not do itself is a flush once the write has landed. */
function needsFuaFlush(node: BlockNode, flags: ReqFlags): boolean {
  return (flags & ReqFlag.FUA) !== 0 && ((node.instance.supportedWriteFlags ?? 0) & ReqFlag.FUA) === 0;
}

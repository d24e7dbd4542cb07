/**
 * Resizing a node on the request path: permission checks, a serialising
 * request over everything past the old or new end, then the driver.
 */
import type { BdrvChild } from './child.js';
import { ReqFlag, type PreallocMode, type ReqFlags } from './driver.js';
import { BlockError, toBlockError } from './errors.js';
import { Perm } from './permissions.js';
import { track, type TrackedType } from './tracked-requests.js';
import { truncateBitmaps } from './dirty-bitmap.js';
import { MAX_REQUEST_END, checkNotClosed, checkRequest } from './request-checks.js';
import { beginInFlight, endInFlight } from './request-accounting.js';
import { beforeWrite } from './request-write-hooks.js';

/** Resizes a node. Needs the RESIZE permission on the link. */
export async function truncate(
  child: BdrvChild,
  offset: number,
  exact: boolean,
  prealloc: PreallocMode,
  flags: ReqFlags,
): Promise<void> {
  const node = child.node;
  checkRequest(node, offset, 0);
  checkNotClosed(node);
  if (node.readOnly) {
    throw new BlockError('EACCES', `Node '${node.nodeName}' is read-only`, { node: node.nodeName });
  }
  if (!(child.perm & Perm.RESIZE)) {
    throw new BlockError(
      'EPERM',
      `Resize of node '${node.nodeName}' through its '${child.name}' link, which does not hold the 'resize' permission`,
      { node: node.nodeName },
    );
  }
  const inst = node.instance;
  if (!inst.truncate && !node.filtered) {
    // QEMU's wording; the node is in the context.
    throw new BlockError('ENOTSUP', 'Image format driver does not support resize', {
      node: node.nodeName,
    });
  }
  const old = node.totalBytes;
  // Growing over a longer backing file: the new area must not show its data.
  const backing = node.backing?.node;
  if (offset > old && backing && backing.totalBytes > old) flags |= ReqFlag.ZERO_WRITE;
  const lo = Math.min(old, offset);
  const req = track(node, lo, MAX_REQUEST_END - lo, 'truncate' as TrackedType, true);
  beginInFlight(node);
  try {
    await req.waitForBlockers();
    await beforeWrite(node, 'truncate', lo, Math.abs(offset - old));
    if (inst.truncate) await inst.truncate(offset, exact, prealloc, flags);
    else await node.filtered!.truncate(offset, exact, prealloc, flags);
    await node.refreshLength();
    truncateBitmaps(node, node.totalBytes);
    node.writeGeneration++;
  } catch (e) {
    throw toBlockError(e, { node: node.nodeName });
  } finally {
    req.end();
    endInFlight(node);
  }
}

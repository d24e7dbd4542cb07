/**
 * Checks every request passes before it reaches a driver: offset and length
 * are safe integers, the buffer is long enough, the node is open, and the link
 * holds the permission a write needs. Each failure names the bad value.
 */
import type { BdrvChild } from './child.js';
import type { BlockNode } from './node.js';
import { ReqFlag, type ReqFlags } from './driver.js';
import { BlockError } from './errors.js';
import { Perm } from './permissions.js';

/** Largest offset + length accepted (QEMU's BDRV_MAX_LENGTH is close; we need safe integers). */
export const MAX_REQUEST_END = Number.MAX_SAFE_INTEGER;

function describe(value: number): string {
  return Number.isNaN(value) ? 'NaN' : String(value);
}

/**
 * Validates offset and length of a request: safe non-negative integers whose
 * sum stays below 2^53. Throws EINVAL naming the bad value.
 */
export function checkRequest(node: BlockNode, offset: number, bytes: number): void {
  // One cheap test for the common case; the detailed checks below name the bad value.
  if (Number.isInteger(offset) && Number.isInteger(bytes) && offset >= 0 && bytes >= 0 && offset + bytes <= MAX_REQUEST_END) {
    return;
  }
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
    throw new BlockError('EINVAL', `Invalid request offset ${describe(offset)} on node '${node.nodeName}'`, {
      node: node.nodeName,
    });
  }
  if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes < 0) {
    throw new BlockError('EINVAL', `Invalid request length ${describe(bytes)} on node '${node.nodeName}'`, {
      node: node.nodeName,
      offset,
    });
  }
  if (offset + bytes > MAX_REQUEST_END) {
    throw new BlockError(
      'EINVAL',
      `Request at offset ${offset} of ${bytes} bytes ends beyond 2^53 on node '${node.nodeName}'`,
      { node: node.nodeName, offset },
    );
  }
}

/** QEMU's BDRV_MAX_LENGTH: INT64_MAX rounded down to its largest alignment. */
const QEMU_MAX_LENGTH = 2 ** 63 - 2 ** 30;

/** Whether a request ends past 2^53, where we cannot address, but within QEMU's limit. */
export function beyondAddressable(offset: number, bytes: number): boolean {
  if (!Number.isInteger(offset) || !Number.isInteger(bytes) || offset < 0 || bytes < 0) return false;
  return offset + bytes > MAX_REQUEST_END && offset <= QEMU_MAX_LENGTH - bytes;
}

/**
 * A write QEMU would pass down but we cannot address: it ends past 2^53
 * (from an offset in corrupt metadata, say) yet within QEMU's limit. QEMU's
 * file driver hands it to the file system, which refuses a file that large
 * (EFBIG on ext4, whose files end at 16 TiB); Node cannot even try, so we give
 * the same error. Other bad values are left to {@link checkRequest}.
 */
export function checkWriteEnd(node: BlockNode, offset: number, bytes: number): void {
  if (beyondAddressable(offset, bytes)) {
    throw new BlockError('EFBIG', `Write at offset ${offset} of ${bytes} bytes ends beyond 2^53 bytes on node '${node.nodeName}'`, {
      node: node.nodeName,
    });
  }
}

export function checkBuffer(node: BlockNode, buf: Uint8Array, bytes: number, offset: number): void {
  if (!(buf instanceof Uint8Array)) {
    throw new BlockError('EINVAL', `Request buffer on node '${node.nodeName}' is not a Uint8Array`, { offset });
  }
  if (buf.length < bytes) {
    throw new BlockError(
      'EINVAL',
      `Request buffer of ${buf.length} bytes is shorter than the request of ${bytes} bytes on node '${node.nodeName}'`,
      { node: node.nodeName, offset },
    );
  }
}

/**
 * Refuses a request to a node whose driver says its medium is gone (QEMU's
 * `!bs->drv` / bdrv_is_inserted: a qcow2 image dropped after a corruption).
 */
export function checkMedium(node: BlockNode): void {
  if (node.instance.isInserted?.() === false) {
    throw new BlockError('ENOMEDIUM', 'No medium found', { node: node.nodeName });
  }
}

export function checkNotClosed(node: BlockNode): void {
  if (!node.isOpen) {
    throw new BlockError('ENOMEDIUM', `Node '${node.nodeName}' is closed`, { node: node.nodeName });
  }
}

export function checkWritable(child: BdrvChild, flags: ReqFlags, offset: number): void {
  const node = child.node;
  if (node.readOnly) {
    throw new BlockError('EACCES', `Node '${node.nodeName}' is read-only`, { node: node.nodeName, offset });
  }
  const needed = flags & ReqFlag.WRITE_UNCHANGED ? Perm.WRITE | Perm.WRITE_UNCHANGED : Perm.WRITE;
  if ((child.perm & needed) === 0) {
    throw new BlockError(
      'EPERM',
      `Write to node '${node.nodeName}' through its '${child.name}' link, which does not hold the 'write' permission`,
      { node: node.nodeName, offset },
    );
  }
}

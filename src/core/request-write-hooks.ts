/**
 * What every request that changes a node does around the driver call:
 * before-write hooks and the write threshold before it, dirty bitmaps, write
 * generation and length after it, and the probed-raw safety check.
 */
import type { BlockNode } from './node.js';
import { BlockError } from './errors.js';
import { markDirty } from './dirty-bitmap.js';
import { probeFormatName } from './probe.js';

export async function beforeWrite(node: BlockNode, kind: 'write' | 'zero' | 'discard' | 'truncate', offset: number, bytes: number) {
  for (const hook of node.beforeWriteHooks) await hook(node, kind, offset, bytes);
  const end = offset + bytes;
  if (node.writeThreshold > 0 && end > node.writeThreshold && node.onWriteThreshold) {
    const threshold = node.writeThreshold;
    const handler = node.onWriteThreshold;
    // The event fires once; the user sets a new threshold if they want another.
    node.writeThreshold = 0;
    node.onWriteThreshold = null;
    handler(node, threshold, offset, bytes);
  }
}

/**
 * The one place where a write, zero write or discard that reached the driver
 * marks the node's dirty bitmaps (QEMU's bdrv_co_write_req_finish): also when
 * it failed, since part of the range may have changed; it also starts a new
 * flush generation. Copy-on-read does not
 * come here: it leaves the guest data as it was.
 */
export function writeFinished(node: BlockNode, offset: number, bytes: number, issued: boolean): void {
  if (!issued) return;
  // A failed write may have changed the node too: the next flush must not be skipped.
  node.writeGeneration++;
  markDirty(node, offset, bytes);
}

export function afterWrite(node: BlockNode, offset: number, bytes: number): void {
  const end = offset + bytes;
  if (end > node.highestWriteEnd) node.highestWriteEnd = end;
  if (end > node.totalBytes) node.totalBytes = end;
}

/**
 * QEMU's safety rule for probed raw images: a write must not make sector 0 look
 * like another format, or the next probe would open the guest's data as an image.
 */
export function checkProbedRawWrite(node: BlockNode, offset: number, bytes: number, buf: Uint8Array): void {
  // Reconstructing the full sector needs the old bytes; the common case (a write
  // covering byte 0) is checked directly, which is what the attack needs.
  if (offset !== 0) return;
  const head = buf.subarray(0, Math.min(bytes, 512));
  const fmt = probeFormatName(node.graph, head, node.filename);
  if (fmt && fmt !== 'raw') {
    throw new BlockError(
      'EPERM',
      `Refusing a write to sector 0 of node '${node.nodeName}' that would make its raw image look like '${fmt}' ` +
        '(the format was probed; open it with an explicit format to allow this)',
      { node: node.nodeName, offset },
    );
  }
}

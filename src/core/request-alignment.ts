/**
 * Request alignment: reads rounded out to the node's requestAlignment (zeros
 * past its end), and read-modify-write of the unaligned head and tail of
 * writes and zero writes through bounce buffers.
 */
import type { BlockNode } from './node.js';
import type { ReqFlags } from './driver.js';
import { copyOnReadRange } from './request-copy-on-read.js';
import { alignedWrite, driverRead, driverWriteSplit } from './request-driver-calls.js';

export const alignDown = (n: number, a: number) => n - (n % a);
export const alignUp = (n: number, a: number) => {
  const r = n % a;
  return r === 0 ? n : n + (a - r);
};

/** An aligned read, zero-filling past the end of the node. */
export async function alignedRead(
  node: BlockNode,
  offset: number,
  bytes: number,
  buf: Uint8Array,
  flags: ReqFlags,
  cor: boolean,
): Promise<void> {
  const align = node.limits.requestAlignment;
  const total = node.totalBytes;
  const readable = total > offset ? alignUp(total - offset, align) : 0;
  if (bytes <= readable) {
    if (cor) await copyOnReadRange(node, offset, bytes, buf, flags);
    else await driverRead(node, offset, bytes, buf, flags);
    return;
  }
  if (readable > 0) {
    if (cor) await copyOnReadRange(node, offset, readable, buf, flags);
    else await driverRead(node, offset, readable, buf, flags);
  }
  buf.fill(0, readable, bytes);
}

/** Read-modify-write of the unaligned head and tail of a write. */
export async function rmwWrite(node: BlockNode, offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags) {
  const align = node.limits.requestAlignment;
  const head = alignDown(offset, align);
  const end = alignUp(offset + bytes, align);
  const bounce = new Uint8Array(end - head);
  const dbg = node.instance.debug;
  const padHead = offset !== head;
  const padTail = offset + bytes !== end;
  const merged = end - align === head;
  // Only the first and last aligned blocks need their old contents; a debugging
  // node hears of each read as QEMU's bdrv_padding_rmw_read announces it.
  if (padHead && dbg) await dbg.event('pwritev_rmw_head');
  if (merged && padTail && dbg) await dbg.event('pwritev_rmw_tail');
  await alignedRead(node, head, align, bounce.subarray(0, align), 0, false);
  if (padHead && dbg) await dbg.event('pwritev_rmw_after_head');
  if (merged && padTail && dbg) await dbg.event('pwritev_rmw_after_tail');
  if (!merged) {
    if (padTail && dbg) await dbg.event('pwritev_rmw_tail');
    await alignedRead(node, end - align, align, bounce.subarray(bounce.length - align), 0, false);
    if (padTail && dbg) await dbg.event('pwritev_rmw_after_tail');
  }
  bounce.set(buf.subarray(0, bytes), offset - head);
  await alignedWrite(node, head, end - head, bounce, flags);
}

export async function rmwZero(node: BlockNode, offset: number, bytes: number) {
  const align = node.limits.requestAlignment;
  const head = alignDown(offset, align);
  const block = new Uint8Array(align);
  await alignedRead(node, head, align, block, 0, false);
  block.fill(0, offset - head, offset - head + bytes);
  await driverWriteSplit(node, head, align, block, 0);
}

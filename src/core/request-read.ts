/**
 * The read path: a fast path for the common aligned, in-range read with
 * nothing serialising, and the tracked path for everything else (unaligned
 * reads through a bounce buffer, reads past the end, copy-on-read).
 */
import type { BdrvChild } from './child.js';
import type { BlockNode } from './node.js';
import { ReqFlag, type IoResult, type ReqFlags } from './driver.js';
import { track } from './tracked-requests.js';
import { beyondAddressable, checkBuffer, checkNotClosed, checkRequest } from './request-checks.js';
import { account, beginInFlight, endInFlight, now } from './request-accounting.js';
import { alignDown, alignUp, alignedRead } from './request-alignment.js';
import { callRead } from './request-driver-calls.js';

/**
 * Reads from a node through a link. See the module comment for the rules.
 * Returns undefined when the read completed synchronously (see {@link IoResult}).
 */
export function preadv(child: BdrvChild, offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags = 0): IoResult {
  const node = child.node;
  const l = node.limits;
  const align = l.requestAlignment;
  // One test for the common case (valid, aligned, inside the node, nothing serialising);
  // everything else takes the checked path below, which names what is wrong.
  if (
    Number.isInteger(offset) &&
    Number.isInteger(bytes) &&
    offset >= 0 &&
    bytes > 0 &&
    buf instanceof Uint8Array &&
    buf.length >= bytes &&
    node.isOpen &&
    node.serialisingInFlight === 0 &&
    node.copyOnRead === 0 &&
    (flags & ReqFlag.WANT_COPY_ON_READ) === 0 &&
    // align 1 (most nodes) skips the modulo, which on offsets past 2^31 is a float fmod.
    (align === 1 || (offset % align === 0 && bytes % align === 0)) &&
    offset + bytes <= node.totalBytes &&
    (l.maxTransfer === 0 || bytes <= l.maxTransfer)
  ) {
    return fastRead(node, offset, bytes, buf, flags);
  }
  if (beyondAddressable(offset, bytes) && offset >= node.totalBytes) {
    // QEMU passes it down and reads zeros past the node's end; no node here
    // reaches 2^53, so all of it is past the end.
    checkBuffer(node, buf, bytes, offset);
    checkNotClosed(node);
    buf.fill(0, 0, bytes);
    return;
  }
  checkRequest(node, offset, bytes);
  checkBuffer(node, buf, bytes, offset);
  if (bytes === 0) return;
  checkNotClosed(node);
  return slowRead(node, offset, bytes, buf, flags);
}

/**
 * The common read: aligned, inside the node, nothing serialising in flight.
 * Not registered as a tracked request; a serialising request that starts later
 * waits for every fast read in flight instead (see tracked-requests.ts).
 */
function fastRead(node: BlockNode, offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): IoResult {
  node.inFlight++;
  node.fastReads++;
  let r: IoResult;
  try {
    r = callRead(node, offset, bytes, buf.length === bytes ? buf : buf.subarray(0, bytes), flags);
  } catch (e) {
    endFastRead(node);
    node.stats.read.failed++;
    throw e;
  }
  if (r === undefined) {
    endFastRead(node);
    const st = node.stats.read;
    st.ops++;
    st.bytes += bytes;
    return;
  }
  return r.then(
    () => {
      endFastRead(node);
      const st = node.stats.read;
      st.ops++;
      st.bytes += bytes;
    },
    (e: unknown) => {
      endFastRead(node);
      node.stats.read.failed++;
      throw e;
    },
  );
}

function endFastRead(node: BlockNode): void {
  if (--node.fastReads === 0 && node.fastReadWaiters.length > 0) {
    const w = node.fastReadWaiters;
    node.fastReadWaiters = [];
    for (const f of w) f();
  }
  endInFlight(node);
}

async function slowRead(node: BlockNode, offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): Promise<void> {
  const align = node.limits.requestAlignment;
  const cor = (node.copyOnRead > 0 || (flags & ReqFlag.WANT_COPY_ON_READ) !== 0) && !(flags & ReqFlag.COPY_ON_READ) && !node.readOnly;
  const start = now();
  const req = track(node, offset, bytes, 'read', cor);
  beginInFlight(node);
  let failed = true;
  try {
    await req.waitForBlockers();
    if (offset % align === 0 && bytes % align === 0) {
      await alignedRead(node, offset, bytes, buf, flags, cor);
    } else {
      const head = alignDown(offset, align);
      const end = alignUp(offset + bytes, align);
      const bounce = new Uint8Array(end - head);
      await alignedRead(node, head, end - head, bounce, flags, cor);
      buf.set(bounce.subarray(offset - head, offset - head + bytes));
    }
    failed = false;
  } finally {
    req.end();
    endInFlight(node);
    account(node.stats.read, bytes, start, failed);
  }
}

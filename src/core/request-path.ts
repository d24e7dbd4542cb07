/**
 * The generic request path (QEMU's block/io.c), implemented once for every
 * driver: bounds and overflow checks, request alignment with read-modify-write
 * of head and tail, splitting at maxTransfer, tracked requests and
 * serialising, in-flight counting for drain, flush generations, write-zeroes
 * fallback, discard alignment, detect-zeroes, copy-on-read, write threshold,
 * before-write hooks and I/O accounting.
 *
 * Requests are made on links (BdrvChild) so the permissions of the link can be
 * checked. Node-level requests may reach past the end of the node: reads return
 * zeros there and writes grow the node (formats append clusters that way);
 * BlockBackend refuses out-of-range requests before they get here.
 */
import type { BdrvChild } from './child.js';
import type { BlockNode, OpStats } from './node.js';
import { ReqFlag, Status, type BlockStatusResult, type IoResult, type PreallocMode, type ReqFlags } from './driver.js';
import { BlockError, toBlockError } from './errors.js';
import { Perm } from './permissions.js';
import { track, type TrackedType } from './tracked-requests.js';
import { markDirty, truncateBitmaps } from './dirty-bitmap.js';
import { isZeroBuffer } from './zero-detect.js';
import { probeFormatName } from './probe.js';

/** Largest offset + length accepted (QEMU's BDRV_MAX_LENGTH is close; we need safe integers). */
export const MAX_REQUEST_END = Number.MAX_SAFE_INTEGER;
/** Size of bounce buffers used when a driver cannot write zeros itself. */
const ZERO_FALLBACK_CHUNK = 1 << 20;

const now = typeof performance !== 'undefined' ? () => performance.now() : () => Date.now();

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

function checkBuffer(node: BlockNode, buf: Uint8Array, bytes: number, offset: number): void {
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

function checkNotClosed(node: BlockNode): void {
  if (!node.isOpen) {
    throw new BlockError('ENOMEDIUM', `Node '${node.nodeName}' is closed`, { node: node.nodeName });
  }
}

function checkWritable(child: BdrvChild, flags: ReqFlags, offset: number): void {
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

function account(stats: OpStats, bytes: number, start: number, failed: boolean): void {
  if (failed) {
    stats.failed++;
    return;
  }
  stats.ops++;
  stats.bytes += bytes;
  stats.timeMs += now() - start;
}

/** Counts a request in flight on a node. */
function beginInFlight(node: BlockNode): void {
  node.inFlight++;
}

/** Ends a request in flight and wakes drain waiters when the node is idle. */
function endInFlight(node: BlockNode): void {
  node.inFlight--;
  if (node.inFlight === 0 && node.idleWaiters.length > 0) {
    const waiters = node.idleWaiters;
    node.idleWaiters = [];
    for (const w of waiters) w();
  }
}

const alignDown = (n: number, a: number) => n - (n % a);
const alignUp = (n: number, a: number) => {
  const r = n % a;
  return r === 0 ? n : n + (a - r);
};

// ---------------------------------------------------------------------------
// Reads

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
    // align 1 (most nodes) skips the modulo, which on offsets past 2^31 is a float fmod.
    (align === 1 || (offset % align === 0 && bytes % align === 0)) &&
    offset + bytes <= node.totalBytes &&
    (l.maxTransfer === 0 || bytes <= l.maxTransfer)
  ) {
    return fastRead(node, offset, bytes, buf, flags);
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
  const cor = node.copyOnRead > 0 && !(flags & ReqFlag.COPY_ON_READ) && !node.readOnly;
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

/** An aligned read, zero-filling past the end of the node. */
async function alignedRead(
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

/** Calls the driver, split at maxTransfer. */
async function driverRead(node: BlockNode, offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): Promise<void> {
  const max = node.limits.maxTransfer;
  if (max === 0 || bytes <= max) {
    return callRead(node, offset, bytes, buf.length === bytes ? buf : buf.subarray(0, bytes), flags);
  }
  for (let done = 0; done < bytes; done += max) {
    const n = Math.min(max, bytes - done);
    await callRead(node, offset + done, n, buf.subarray(done, done + n), flags);
  }
}

function callRead(node: BlockNode, offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): IoResult {
  const inst = node.instance;
  if (inst.preadv) return inst.preadv(offset, bytes, buf, flags & ~(ReqFlag.COPY_ON_READ | ReqFlag.NO_SERIALISING));
  const filtered = node.filtered;
  if (filtered) return filtered.preadv(offset, bytes, buf, flags);
  return Promise.reject(
    new BlockError('ENOTSUP', `Driver '${node.driver.name}' cannot read`, { node: node.nodeName, offset }),
  );
}

/**
 * Copy-on-read: data not allocated in this node is read (from the backing
 * chain) and written into it with WRITE_UNCHANGED, so later reads find it here.
 */
async function copyOnReadRange(node: BlockNode, offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags) {
  let done = 0;
  while (done < bytes) {
    const st = await blockStatus(node, false, offset + done, bytes - done);
    const n = Math.max(1, Math.min(st.pnum, bytes - done));
    const part = buf.subarray(done, done + n);
    await driverRead(node, offset + done, n, part, flags);
    if (!(st.status & Status.ALLOCATED) && !(st.status & Status.EOF && st.pnum === 0)) {
      await driverWriteSplit(node, offset + done, n, part, ReqFlag.WRITE_UNCHANGED);
      node.writeGeneration++;
    }
    done += n;
  }
}

// ---------------------------------------------------------------------------
// Writes

/** Writes through a link. */
export async function pwritev(
  child: BdrvChild,
  offset: number,
  bytes: number,
  buf: Uint8Array,
  flags: ReqFlags = 0,
): Promise<void> {
  const node = child.node;
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
      await driverWriteSplit(node, offset, bytes, buf.length === bytes ? buf : buf.subarray(0, bytes), flags);
    } else {
      await rmwWrite(node, offset, bytes, buf, flags);
    }
    afterWrite(node, offset, bytes);
    if (needsFuaFlush(node, flags)) await flush(node);
    failed = false;
  } finally {
    writeFinished(node, offset, bytes, issued);
    req.end();
    endInFlight(node);
    account(node.stats.write, bytes, start, failed);
  }
}

/** Read-modify-write of the unaligned head and tail of a write. */
async function rmwWrite(node: BlockNode, offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags) {
  const align = node.limits.requestAlignment;
  const head = alignDown(offset, align);
  const end = alignUp(offset + bytes, align);
  const bounce = new Uint8Array(end - head);
  // Only the first and last aligned blocks need their old contents.
  await alignedRead(node, head, align, bounce.subarray(0, align), 0, false);
  if (end - align > head) {
    await alignedRead(node, end - align, align, bounce.subarray(bounce.length - align), 0, false);
  }
  bounce.set(buf.subarray(0, bytes), offset - head);
  await driverWriteSplit(node, head, end - head, bounce, flags);
}

async function driverWriteSplit(node: BlockNode, offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags) {
  const max = node.limits.maxTransfer;
  const inst = node.instance;
  const supported = inst.supportedWriteFlags ?? 0;
  const passFlags = flags & (supported | ReqFlag.WRITE_UNCHANGED | ReqFlag.COMPRESSED);
  if (max === 0 || bytes <= max) {
    await callWrite(node, offset, bytes, buf, passFlags);
  } else {
    for (let done = 0; done < bytes; done += max) {
      const n = Math.min(max, bytes - done);
      await callWrite(node, offset + done, n, buf.subarray(done, done + n), passFlags);
    }
  }
}

/** FUA the driver does not do itself is a flush once the write has landed. */
function needsFuaFlush(node: BlockNode, flags: ReqFlags): boolean {
  return (flags & ReqFlag.FUA) !== 0 && ((node.instance.supportedWriteFlags ?? 0) & ReqFlag.FUA) === 0;
}

function callWrite(node: BlockNode, offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): IoResult {
  const inst = node.instance;
  if (flags & ReqFlag.COMPRESSED && !((inst.supportedWriteFlags ?? 0) & ReqFlag.COMPRESSED)) {
    return Promise.reject(
      new BlockError('ENOTSUP', `Driver '${node.driver.name}' does not support compressed writes`, {
        node: node.nodeName,
      }),
    );
  }
  if (inst.pwritev) return inst.pwritev(offset, bytes, buf, flags);
  const filtered = node.filtered;
  if (filtered) return filtered.pwritev(offset, bytes, buf, flags);
  return Promise.reject(
    new BlockError('ENOTSUP', `Driver '${node.driver.name}' does not support writing`, { node: node.nodeName, offset }),
  );
}

async function beforeWrite(node: BlockNode, kind: 'write' | 'zero' | 'discard' | 'truncate', offset: number, bytes: number) {
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
 * it failed, since part of the range may have changed. Copy-on-read does not
 * come here: it leaves the guest data as it was.
 */
function writeFinished(node: BlockNode, offset: number, bytes: number, issued: boolean): void {
  if (issued) markDirty(node, offset, bytes);
}

function afterWrite(node: BlockNode, offset: number, bytes: number): void {
  const end = offset + bytes;
  node.writeGeneration++;
  if (end > node.highestWriteEnd) node.highestWriteEnd = end;
  if (end > node.totalBytes) node.totalBytes = end;
}

/**
 * QEMU's safety rule for probed raw images: a write must not make sector 0 look
 * like another format, or the next probe would open the guest's data as an image.
 */
function checkProbedRawWrite(node: BlockNode, offset: number, bytes: number, buf: Uint8Array): void {
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

// ---------------------------------------------------------------------------
// Write zeroes

/** Makes a range read as zeros; falls back to writing zero buffers. */
export async function pwriteZeroes(child: BdrvChild, offset: number, bytes: number, flags: ReqFlags = 0): Promise<void> {
  const node = child.node;
  checkRequest(node, offset, bytes);
  if (bytes === 0) return;
  checkNotClosed(node);
  checkWritable(child, flags, offset);
  if (!node.discardUnmap) flags &= ~ReqFlag.MAY_UNMAP;
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
    const headEnd = Math.min(alignUp(offset, align), offset + bytes);
    const tailStart = Math.max(alignDown(offset + bytes, align), headEnd);
    if (headEnd > offset) await rmwZero(node, offset, headEnd - offset);
    if (tailStart > headEnd) await driverZero(node, headEnd, tailStart - headEnd, flags);
    if (offset + bytes > tailStart) await rmwZero(node, tailStart, offset + bytes - tailStart);
    if (flags & ReqFlag.FUA && !((node.instance.supportedZeroFlags ?? 0) & ReqFlag.FUA)) await flush(node);
    afterWrite(node, offset, bytes);
    failed = false;
  } finally {
    writeFinished(node, offset, bytes, issued);
    req.end();
    endInFlight(node);
    account(node.stats.zeroWrite, bytes, start, failed);
  }
}

async function rmwZero(node: BlockNode, offset: number, bytes: number) {
  const align = node.limits.requestAlignment;
  const head = alignDown(offset, align);
  const block = new Uint8Array(align);
  await alignedRead(node, head, align, block, 0, false);
  block.fill(0, offset - head, offset - head + bytes);
  await driverWriteSplit(node, head, align, block, 0);
}

/** Aligned zero write: the driver's own, split at its limits, else zero buffers. */
async function driverZero(node: BlockNode, offset: number, bytes: number, flags: ReqFlags) {
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

// ---------------------------------------------------------------------------
// Discard

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

// ---------------------------------------------------------------------------
// Flush

/**
 * Flushes a node and its children. A flush when nothing was written since the
 * last one skips the driver (flush generations); concurrent flushes join.
 */
export async function flush(node: BlockNode): Promise<void> {
  if (!node.isOpen) return;
  while (node.activeFlush) await node.activeFlush.catch(() => undefined);
  const gen = node.writeGeneration;
  const start = now();
  const work = (async () => {
    if (gen !== node.flushedGeneration) {
      await node.instance.flushToOs?.();
      if (!node.noFlush) await node.instance.flushToDisk?.();
    }
    for (const c of node.children) {
      if (c.perm & (Perm.WRITE | Perm.WRITE_UNCHANGED)) await flush(c.node);
    }
    node.flushedGeneration = gen;
  })();
  node.activeFlush = work;
  let failed = true;
  beginInFlight(node);
  try {
    await work;
    failed = false;
  } catch (e) {
    throw toBlockError(e, { node: node.nodeName });
  } finally {
    node.activeFlush = null;
    endInFlight(node);
    account(node.stats.flush, 0, start, failed);
  }
}

// ---------------------------------------------------------------------------
// Truncate

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

// ---------------------------------------------------------------------------
// Block status

/**
 * What the range from `offset` holds in `node` (one layer), following QEMU's
 * bdrv_co_block_status: the driver's answer, clamped to the request and the
 * node's length; DATA or ZERO imply ALLOCATED; unallocated ranges of a format
 * without backing (or past the backing's end) read as zeros; with `wantZero`
 * and RECURSE the layer below is asked whether the data is zeros.
 */
export async function blockStatus(
  node: BlockNode,
  wantZero: boolean,
  offset: number,
  bytes: number,
): Promise<BlockStatusResult> {
  checkRequest(node, offset, bytes);
  checkNotClosed(node);
  const total = node.totalBytes;
  if (offset >= total) return { status: Status.EOF, pnum: 0 };
  if (bytes === 0) return { status: 0, pnum: 0 };
  const n = Math.min(bytes, total - offset);
  let res: BlockStatusResult;
  const inst = node.instance;
  if (inst.blockStatus) {
    res = await inst.blockStatus(wantZero, offset, n);
  } else if (node.driver.kind === 'protocol') {
    res = { status: Status.DATA | Status.OFFSET_VALID, pnum: n, map: offset, file: node };
  } else if (node.filtered) {
    const below = await blockStatus(node.filtered.node, wantZero, offset, n);
    res = { ...below };
    res.status &= ~Status.EOF;
  } else {
    res = { status: Status.DATA | Status.ALLOCATED, pnum: n };
  }
  if (!Number.isSafeInteger(res.pnum) || res.pnum <= 0) {
    throw new BlockError('EIO', `Driver '${node.driver.name}' answered block status with ${res.pnum} bytes`, {
      node: node.nodeName,
      offset,
    });
  }
  if (res.pnum > n) res.pnum = n;
  let status = res.status;
  if (status & (Status.DATA | Status.ZERO)) {
    status |= Status.ALLOCATED;
  } else if (node.driver.supportsBacking) {
    const cow = node.backing;
    if (!cow) status |= Status.ZERO;
    else if (wantZero && offset >= cow.node.totalBytes) status |= Status.ZERO;
  }
  if (
    wantZero &&
    status & Status.RECURSE &&
    res.file &&
    res.file !== node &&
    status & Status.DATA &&
    !(status & Status.ZERO) &&
    status & Status.OFFSET_VALID &&
    res.map !== undefined
  ) {
    const below = await blockStatus(res.file, true, res.map, res.pnum);
    if (below.status & Status.EOF && (below.pnum === 0 || below.status & Status.ZERO)) {
      status |= Status.ZERO;
    } else {
      res.pnum = Math.min(res.pnum, below.pnum);
      status |= below.status & Status.ZERO;
    }
  }
  status &= ~Status.RECURSE;
  if (offset + res.pnum === total) status |= Status.EOF;
  res.status = status;
  return res;
}

/**
 * The transmission phase, server side (QEMU's nbd_trip and
 * nbd_handle_request): read a request, check it, run it on the export's
 * BlockBackend, answer with a simple or a structured reply. Up to
 * NBD_MAX_REQUESTS requests run at once; replies go out whole, in the order
 * they complete.
 */
import { ReqFlag } from '../../core/driver.js';
import { STRERROR, toBlockError } from '../../core/errors.js';
import { NbdClient, metaFor } from './client.js';
import {
  CMD_NAMES,
  Cmd,
  CmdFlag,
  ExportFlag,
  MetaId,
  NBD_MAX_BLOCK_STATUS_EXTENTS,
  NBD_MAX_BUFFER_SIZE,
  NBD_MAX_REQUESTS,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  NbdErr,
  Reply,
} from './constants.js';
import { nbdErrno, nbdErrnoOfCode } from './errno.js';
import type { NbdExport } from './export.js';
import { type ExtentList, allocationExtents, bitmapExtents, chainStatus, depthExtents } from './extents.js';
import { Status } from '../../core/driver.js';
import { PeerClosed, WireWriter, be16, be32, be64 } from './transport.js';

/** One request as it came off the wire. */
interface Request {
  flags: number;
  type: number;
  handle: bigint;
  offset: number;
  length: number;
  /** The magic as received (requests with a wrong one are refused). */
  magic: number;
}

/** A request the server answers with an error (always EINVAL, as qemu-nbd 7.2) before running it. */
class Refusal {
  constructor(readonly message: string) {}
}

const enc = new TextEncoder();

/** Replies of one connection. */
class Replies {
  constructor(private readonly client: NbdClient) {}

  simple(handle: bigint, nbdErr: number, data?: Uint8Array): Promise<void> {
    const head = new WireWriter(16).u32(NBD_SIMPLE_REPLY_MAGIC).u32(nbdErr).u64(handle);
    return data ? this.client.send(head.bytes, data) : this.client.send(head.bytes);
  }

  private chunkHead(flags: number, type: number, handle: bigint, length: number, extra = 0): WireWriter {
    return new WireWriter(20 + extra).u32(NBD_STRUCTURED_REPLY_MAGIC).u16(flags).u16(type).u64(handle).u32(length);
  }

  done(handle: bigint): Promise<void> {
    return this.client.send(this.chunkHead(Reply.FLAG_DONE, Reply.TYPE_NONE, handle, 0).bytes);
  }

  data(handle: bigint, offset: number, data: Uint8Array, final: boolean): Promise<void> {
    const head = this.chunkHead(final ? Reply.FLAG_DONE : 0, Reply.TYPE_OFFSET_DATA, handle, 8 + data.length, 8).u64(offset);
    return this.client.send(head.bytes, data);
  }

  hole(handle: bigint, offset: number, length: number, final: boolean): Promise<void> {
    const w = this.chunkHead(final ? Reply.FLAG_DONE : 0, Reply.TYPE_OFFSET_HOLE, handle, 12, 12).u64(offset).u32(length);
    return this.client.send(w.bytes);
  }

  error(handle: bigint, nbdErr: number, message: string): Promise<void> {
    const msg = enc.encode(message);
    const w = this.chunkHead(Reply.FLAG_DONE, Reply.TYPE_ERROR, handle, 6 + msg.length, 6 + msg.length).u32(nbdErr).u16(msg.length).raw(msg);
    return this.client.send(w.bytes);
  }

  extents(handle: bigint, contextId: number, list: ExtentList, last: boolean): Promise<void> {
    const w = this.chunkHead(last ? Reply.FLAG_DONE : 0, Reply.TYPE_BLOCK_STATUS, handle, 4 + list.items.length * 8, 4 + list.items.length * 8).u32(contextId);
    for (const e of list.items) w.u32(e.length).u32(e.flags);
    return this.client.send(w.bytes);
  }

  /** Success without data, or an error (structured when negotiated), as QEMU's nbd_send_generic_reply. */
  generic(handle: bigint, failure: { nbdErr: number; message: string } | null): Promise<void> {
    if (failure && this.client.structuredReply) return this.error(handle, failure.nbdErr, failure.message);
    return this.simple(handle, failure ? failure.nbdErr : 0);
  }
}

/** Why the server drops a connection, worded as qemu-nbd reports it. */
export class Disconnect extends Error {}

/** Reads one request header; null when the client hung up between requests. */
async function readRequest(client: NbdClient): Promise<Request | null> {
  let b: Uint8Array;
  try {
    b = await client.input.read(28);
  } catch (e) {
    if (e instanceof PeerClosed) {
      if (e.partial) throw new Disconnect('Unexpected end-of-file before all bytes were read');
      return null;
    }
    throw e;
  }
  const magic = be32(b, 0);
  return { flags: be16(b, 4), type: be16(b, 6), handle: be64(b, 8), offset: Number(be64(b, 16)), length: be32(b, 24), magic };
}

/** QEMU's checks of a received request, in its order. */
function check(exp: NbdExport, client: NbdClient, r: Request): Refusal | null {
  const ro = (exp.flags & ExportFlag.READ_ONLY) !== 0;
  if (ro && (r.type === Cmd.WRITE || r.type === Cmd.WRITE_ZEROES || r.type === Cmd.TRIM)) {
    return new Refusal('Export is read-only');
  }
  if (r.offset > exp.size || r.length > exp.size - r.offset) {
    return new Refusal(`operation past EOF; From: ${r.offset}, Len: ${r.length}, Size: ${exp.size}`);
  }
  let valid: number = CmdFlag.FUA;
  if (r.type === Cmd.READ && client.structuredReply) valid |= CmdFlag.DF;
  else if (r.type === Cmd.WRITE_ZEROES) valid |= CmdFlag.NO_HOLE | CmdFlag.FAST_ZERO;
  else if (r.type === Cmd.BLOCK_STATUS) valid |= CmdFlag.REQ_ONE;
  if (r.flags & ~valid) {
    return new Refusal(`unsupported flags for command ${CMD_NAMES[r.type] ?? '<unknown>'} (got 0x${r.flags.toString(16)})`);
  }
  return null;
}

/**
 * Serves requests until the client disconnects (NBD_CMD_DISC or hang-up) or
 * the connection fails; in-flight requests finish before it resolves, which
 * it does with the reason the server dropped the client, if it did.
 */
export async function serveTransmission(client: NbdClient, exp: NbdExport): Promise<string | undefined> {
  const replies = new Replies(client);
  const inFlight = new Set<Promise<void>>();
  let slotFreed: (() => void) | null = null;
  let fatal = false;
  let reason: string | undefined;
  const drop = (why: string): void => {
    reason ??= why;
    fatal = true;
    client.close();
  };
  const start = (work: Promise<void>): void => {
    const p = work
      .catch((e: unknown) => {
        // The request must end the connection, or its reply could not be sent.
        if (e instanceof Disconnect) drop(e.message);
        else drop(`Failed to send reply: ${e instanceof Error ? e.message : String(e)}`);
      })
      .finally(() => {
        inFlight.delete(p);
        const w = slotFreed;
        slotFreed = null;
        w?.();
      });
    inFlight.add(p);
  };
  try {
    while (!client.closed && !fatal) {
      while (inFlight.size >= NBD_MAX_REQUESTS) await new Promise<void>((r) => (slotFreed = r));
      let r: Request | null;
      try {
        r = await readRequest(client);
      } catch (e) {
        if (!(e instanceof Disconnect)) throw e;
        drop(e.message);
        break;
      }
      if (!r || (r.type === Cmd.DISC && r.magic === NBD_REQUEST_MAGIC)) break;
      let payload: Uint8Array | undefined;
      let refusal: Refusal | null = null;
      let complete = true;
      if (r.magic !== NBD_REQUEST_MAGIC) {
        // Answered with whatever handle came along; then the stream is lost.
        refusal = new Refusal(`invalid magic (got 0x${r.magic.toString(16)})`);
        complete = false;
      } else if ((r.type === Cmd.READ || r.type === Cmd.WRITE || r.type === Cmd.CACHE) && r.length > NBD_MAX_BUFFER_SIZE) {
        refusal = new Refusal(`len (${r.length} ) is larger than max len (${NBD_MAX_BUFFER_SIZE})`);
        complete = r.type !== Cmd.WRITE;
      } else if (r.type === Cmd.WRITE) {
        try {
          payload = await client.input.read(r.length);
        } catch (e) {
          // The client went away in the middle of its write: nothing to answer.
          if (!(e instanceof PeerClosed)) throw e;
          drop('Failed to read CMD_WRITE data: Unexpected end-of-file before all data were read');
          break;
        }
      }
      refusal ??= check(exp, client, r);
      if (refusal) {
        start(replies.generic(r.handle, { nbdErr: NbdErr.EINVAL, message: refusal.message }));
        if (!complete) {
          // The payload was never read: the stream cannot be followed any more.
          await Promise.all(inFlight);
          drop('Request handling failed in intermediate state');
          break;
        }
        continue;
      }
      start(handle(client, exp, replies, r, payload));
    }
  } finally {
    await Promise.all(inFlight);
  }
  return reason;
}

/** Runs one checked request and sends its reply; rejects when the connection must end. */
async function handle(client: NbdClient, exp: NbdExport, replies: Replies, r: Request, payload: Uint8Array | undefined): Promise<void> {
  const bb = exp.backend;
  const fail = (e: unknown, message: string) => ({ nbdErr: nbdErrno(e), message });
  const attempt = async (fn: () => Promise<void>, message: string): Promise<{ nbdErr: number; message: string } | null> => {
    try {
      await fn();
      return null;
    } catch (e) {
      return fail(e, message);
    }
  };
  switch (r.type) {
    case Cmd.READ:
      return read(client, exp, replies, r);
    case Cmd.WRITE:
      return replies.generic(r.handle, await attempt(() => bb.write(r.offset, payload!, r.flags & CmdFlag.FUA ? ReqFlag.FUA : 0), 'writing to file failed'));
    case Cmd.WRITE_ZEROES: {
      let flags = 0;
      if (r.flags & CmdFlag.FUA) flags |= ReqFlag.FUA;
      if (!(r.flags & CmdFlag.NO_HOLE)) flags |= ReqFlag.MAY_UNMAP;
      if (r.flags & CmdFlag.FAST_ZERO) flags |= ReqFlag.NO_FALLBACK;
      return replies.generic(r.handle, await attempt(() => bb.writeZeroes(r.offset, r.length, flags), 'writing to file failed'));
    }
    case Cmd.FLUSH:
      return replies.generic(r.handle, await attempt(() => bb.flush(), 'flush failed'));
    case Cmd.TRIM:
      return replies.generic(
        r.handle,
        await attempt(async () => {
          await bb.discard(r.offset, r.length);
          if (r.flags & CmdFlag.FUA) await bb.flush();
        }, 'discard failed'),
      );
    case Cmd.CACHE:
      return replies.generic(
        r.handle,
        await attempt(() => bb.pread(r.offset, new Uint8Array(r.length), ReqFlag.PREFETCH | ReqFlag.WANT_COPY_ON_READ), 'caching data failed'),
      );
    case Cmd.BLOCK_STATUS:
      return blockStatus(client, exp, replies, r);
    default:
      return replies.generic(r.handle, { nbdErr: nbdErrnoOfCode('EINVAL'), message: `invalid request type (${r.type}) received` });
  }
}

/** NBD_CMD_READ: with structured replies and no DF, zero ranges go as holes and the rest as data chunks. */
async function read(client: NbdClient, exp: NbdExport, replies: Replies, r: Request): Promise<void> {
  const bb = exp.backend;
  if (r.flags & CmdFlag.FUA) {
    try {
      await bb.flush();
    } catch (e) {
      return replies.generic(r.handle, { nbdErr: nbdErrno(e), message: 'flush failed' });
    }
  }
  if (client.structuredReply && !(r.flags & CmdFlag.DF) && r.length > 0) {
    let progress = 0;
    while (progress < r.length) {
      const at = r.offset + progress;
      let st: { status: number; pnum: number };
      try {
        st = await chainStatus(bb.node, at, r.length - progress);
      } catch (e) {
        const code = toBlockError(e).code;
        return replies.error(r.handle, nbdErrno(e), `unable to check for holes: ${STRERROR[code]}`);
      }
      const final = progress + st.pnum === r.length;
      if (st.status & Status.ZERO) {
        await replies.hole(r.handle, at, st.pnum, final);
      } else {
        // A failed read after chunks went out cannot be answered: the connection ends (as qemu-nbd).
        // pread fills every byte (holes and the end of a file as zeros), so no zero fill first.
        const buf = client.transport.allocate?.(st.pnum) ?? new Uint8Array(st.pnum);
        try {
          await bb.pread(at, buf);
        } catch (e) {
          throw new Disconnect(`Failed to send reply: reading from file failed: ${STRERROR[toBlockError(e).code]}`);
        }
        await replies.data(r.handle, at, buf, final);
      }
      progress += st.pnum;
    }
    return;
  }
  const buf = new Uint8Array(r.length);
  try {
    await bb.pread(r.offset, buf);
  } catch (e) {
    return replies.generic(r.handle, { nbdErr: nbdErrno(e), message: 'reading from file failed' });
  }
  if (!client.structuredReply) return replies.simple(r.handle, 0, buf);
  return r.length ? replies.data(r.handle, r.offset, buf, true) : replies.done(r.handle);
}

/** NBD_CMD_BLOCK_STATUS: one chunk per selected context, the last one marked done. */
async function blockStatus(client: NbdClient, exp: NbdExport, replies: Replies, r: Request): Promise<void> {
  if (!r.length) return replies.generic(r.handle, { nbdErr: nbdErrnoOfCode('EINVAL'), message: 'need non-zero length' });
  const meta = metaFor(client, exp);
  if (!meta || meta.count === 0) {
    return replies.generic(r.handle, { nbdErr: nbdErrnoOfCode('EINVAL'), message: 'CMD_BLOCK_STATUS not negotiated' });
  }
  const max = r.flags & CmdFlag.REQ_ONE ? 1 : NBD_MAX_BLOCK_STATUS_EXTENTS;
  let remaining = meta.count;
  const node = exp.backend.node;
  const statusChunk = async (id: number, gather: () => Promise<ExtentList>): Promise<boolean> => {
    let list: ExtentList;
    try {
      list = await gather();
    } catch (e) {
      await replies.error(r.handle, nbdErrno(e), "can't get block status");
      return false;
    }
    await replies.extents(r.handle, id, list, --remaining === 0);
    return true;
  };
  if (meta.baseAllocation && !(await statusChunk(MetaId.BASE_ALLOCATION, () => allocationExtents(node, r.offset, r.length, max)))) return;
  if (meta.allocationDepth && !(await statusChunk(MetaId.ALLOCATION_DEPTH, () => depthExtents(node, r.offset, r.length, max)))) return;
  for (let i = 0; i < exp.bitmaps.length; i++) {
    if (!meta.bitmaps[i]) continue;
    const bm = exp.bitmaps[i]!;
    await replies.extents(r.handle, MetaId.DIRTY_BITMAP + i, bitmapExtents(bm, r.offset, r.length, max), --remaining === 0);
  }
}

/**
 * The client side of one NBD connection (the NBD project's doc/proto.md, as
 * QEMU's nbd/client.c and block/nbd.c speak it): the fixed-newstyle handshake
 * with structured replies, one meta context (base:allocation, or the
 * x-dirty-bitmap one) and NBD_OPT_GO, then requests in flight at once,
 * matched to their replies by handle.
 *
 * Transport-agnostic: bytes arrive through {@link NbdConnection.input} and
 * leave through an {@link NbdTransport}, so tests can run it against the
 * project's own server in memory. Any protocol error ends the connection:
 * every request in flight and every later one fails with EIO (QEMU's client
 * without reconnect-delay does the same).
 */
import { BlockError, type ErrorCode } from '../core/errors.js';
import {
  ClientFlag,
  Cmd,
  CMD_NAMES,
  HandshakeFlag,
  Info,
  NBD_INIT_MAGIC,
  NBD_MAX_BUFFER_SIZE,
  NBD_MAX_REQUESTS,
  NBD_OPTS_MAGIC,
  NBD_REP_MAGIC,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  NbdErr,
  Opt,
  OPT_NAMES,
  Rep,
  Reply,
} from '../export/nbd/constants.js';
import { be16, be32, be64, ByteQueue, MessageSender, PeerClosed, WireWriter, type NbdTransport } from '../export/nbd/transport.js';

/** What the handshake learnt about the export. */
export interface NbdExportInfo {
  size: number;
  flags: number;
  /** 0 when the server sent no NBD_INFO_BLOCK_SIZE. */
  minBlock: number;
  optBlock: number;
  maxBlock: number;
  structuredReply: boolean;
  /** Whether the meta context asked for was granted (BLOCK_STATUS then works). */
  metaContext: boolean;
}

/** One extent of a BLOCK_STATUS answer. */
export interface NbdExtent {
  length: number;
  flags: number;
}

/** NBD error numbers as block-layer codes (QEMU's nbd_errno_to_system_errno). */
const CODE_OF_NBD_ERRNO: Record<number, ErrorCode> = {
  [NbdErr.EPERM]: 'EPERM',
  [NbdErr.EIO]: 'EIO',
  [NbdErr.ENOMEM]: 'EIO',
  [NbdErr.EINVAL]: 'EINVAL',
  [NbdErr.ENOSPC]: 'ENOSPC',
  [NbdErr.EOVERFLOW]: 'EINVAL',
  [NbdErr.ENOTSUP]: 'ENOTSUP',
  [NbdErr.ESHUTDOWN]: 'EIO',
};

function protocolError(text: string): BlockError {
  return new BlockError('EIO', text);
}

const REP_NAMES: Readonly<Record<number, string>> = {
  [Rep.ACK]: 'ack',
  [Rep.SERVER]: 'server',
  [Rep.INFO]: 'info',
  [Rep.META_CONTEXT]: 'meta context',
  [Rep.ERR_UNSUP]: 'unsupported',
  [Rep.ERR_POLICY]: 'denied by policy',
  [Rep.ERR_INVALID]: 'invalid',
  [Rep.ERR_PLATFORM]: 'platform lacks support',
  [Rep.ERR_TLS_REQD]: 'TLS required',
  [Rep.ERR_UNKNOWN]: 'export unknown',
  [Rep.ERR_SHUTDOWN]: 'server shutting down',
  [Rep.ERR_BLOCK_SIZE_REQD]: 'block size required',
  [Rep.ERR_TOO_BIG]: 'option payload too big',
};
const optName = (o: number): string => OPT_NAMES[o] ?? '<unknown>';
const repName = (r: number): string => REP_NAMES[r] ?? '<unknown>';
const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

/** An export size as a number; past 2^53 the block layer cannot address it. */
function exportSize(size: bigint): number {
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw new BlockError('EFBIG', `export size ${size} is too large`);
  return Number(size);
}

/** A request waiting for its reply. */
interface Pending {
  type: number;
  offset: number;
  length: number;
  /** READ: where the data goes. */
  buf?: Uint8Array;
  /** BLOCK_STATUS: the extent received. */
  extent?: NbdExtent;
  /** The first error a structured reply reported (later chunks are still read). */
  error?: BlockError;
  resolve(): void;
  reject(e: unknown): void;
}

export class NbdConnection {
  /** Bytes from the server; the transport's owner pushes them here. */
  readonly input = new ByteQueue();
  info: NbdExportInfo = { size: 0, flags: 0, minBlock: 0, optBlock: 0, maxBlock: 0, structuredReply: false, metaContext: false };
  private contextId = 0;
  private readonly pending = new Map<bigint, Pending>();
  private nextHandle = 1n;
  private dead: BlockError | null = null;
  private inFlight = 0;
  private readonly slotWaiters: Array<() => void> = [];
  private readonly sender: MessageSender;

  constructor(private readonly transport: NbdTransport) {
    this.sender = new MessageSender(transport);
  }

  /** Sends the parts as one message: a request's header and its data never have another request between them. */
  private send(...parts: Uint8Array[]): Promise<void> {
    return this.sender.send(parts);
  }

  private async readExact(n: number, what: string): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    await this.readExactInto(out, what);
    return out;
  }

  private async readExactInto(out: Uint8Array, what: string): Promise<void> {
    try {
      await this.input.readInto(out);
    } catch (e) {
      if (e instanceof PeerClosed) throw protocolError(`Failed to read ${what}: Unexpected end-of-file before all data were read`);
      throw e;
    }
  }

  private sendOption(opt: number, data: Uint8Array = new Uint8Array(0)): Promise<void> {
    const w = new WireWriter(16 + data.length).u64(NBD_OPTS_MAGIC).u32(opt).u32(data.length).raw(data);
    return this.send(w.bytes);
  }

  /** Reads one option reply header; checks magic and option (nbd_receive_option_reply). */
  private async optionReply(opt: number): Promise<{ type: number; length: number }> {
    const h = await this.readExact(20, 'option reply');
    if (be64(h, 0) !== NBD_REP_MAGIC) throw protocolError('Unexpected option reply magic');
    const option = be32(h, 8);
    if (option !== opt) throw protocolError(`Unexpected option type ${option} (${optName(option)}), expected ${opt} (${optName(opt)})`);
    return { type: be32(h, 12), length: be32(h, 16) };
  }

  /**
   * An error reply's payload read and turned into QEMU's message (nbd_handle_reply_err);
   * returns null for "unsupported" (and for every error when not strict): the caller falls back.
   */
  private async replyError(opt: number, reply: { type: number; length: number }, strict: boolean): Promise<BlockError | null> {
    let msg = '';
    if (reply.length) {
      if (reply.length > NBD_MAX_BUFFER_SIZE) return protocolError(`server error ${reply.type} (${repName(reply.type)}) message is too long`);
      msg = new TextDecoder().decode(await this.readExact(reply.length, `option error ${reply.type} (${repName(reply.type)}) message`));
    }
    if (reply.type === Rep.ERR_UNSUP || !strict) return null;
    const o = `option ${opt} (${optName(opt)})`;
    const text: Record<number, string> = {
      [Rep.ERR_POLICY]: `Denied by server for ${o}`,
      [Rep.ERR_INVALID]: `Invalid parameters for ${o}`,
      [Rep.ERR_PLATFORM]: `Server lacks support for ${o}`,
      [Rep.ERR_TLS_REQD]: `TLS negotiation required before ${o}`,
      [Rep.ERR_UNKNOWN]: 'Requested export not available',
      [Rep.ERR_SHUTDOWN]: `Server shutting down before ${o}`,
      [Rep.ERR_BLOCK_SIZE_REQD]: `Server requires INFO_BLOCK_SIZE for ${o}`,
    };
    const hint = msg ? `server reported: ${msg}\n` : undefined;
    return new BlockError('EINVAL', text[reply.type] ?? `Unknown error code when asking for ${o}`, {}, { hint });
  }

  private async abortOption(): Promise<void> {
    await this.sendOption(Opt.ABORT).catch(() => undefined);
  }

  /**
   * The handshake: fixed newstyle, structured replies, the meta context
   * `context` (none: no block status), then NBD_OPT_GO for `exportName`.
   * Rejects with QEMU's messages; the caller closes the transport then.
   */
  async negotiate(exportName: string, context: string | null): Promise<NbdExportInfo> {
    const start = await this.readExact(18, 'initial magic');
    const magic = be64(start, 0);
    if (magic !== NBD_INIT_MAGIC) throw protocolError(`Bad initial magic received: 0x${magic.toString(16)}`);
    const second = be64(start, 8);
    if (second !== NBD_OPTS_MAGIC) {
      throw protocolError(`Bad server magic received: 0x${second.toString(16)}`);
    }
    const globalFlags = be16(start, 16);
    const fixed = (globalFlags & HandshakeFlag.FIXED_NEWSTYLE) !== 0;
    const noZeroes = (globalFlags & HandshakeFlag.NO_ZEROES) !== 0;
    const clientFlags = (fixed ? ClientFlag.FIXED_NEWSTYLE : 0) | (noZeroes ? ClientFlag.NO_ZEROES : 0);
    await this.send(new WireWriter(4).u32(clientFlags).bytes);
    const name = new TextEncoder().encode(exportName);
    if (fixed) {
      // Structured replies (not strict: any error means "not supported").
      await this.sendOption(Opt.STRUCTURED_REPLY);
      const r = await this.optionReply(Opt.STRUCTURED_REPLY);
      if (r.type & 0x80000000) await this.replyError(Opt.STRUCTURED_REPLY, r, false);
      else {
        if (r.type !== Rep.ACK || r.length !== 0) {
          await this.abortOption();
          throw protocolError(`Server answered option ${Opt.STRUCTURED_REPLY} (${optName(Opt.STRUCTURED_REPLY)}) with unexpected reply ${r.type} (${repName(r.type)})`);
        }
        this.info.structuredReply = true;
      }
      if (this.info.structuredReply && context !== null) this.info.metaContext = await this.setMetaContext(name, context);
      if (await this.go(name)) return this.info;
    }
    // Older servers: NBD_OPT_EXPORT_NAME, which cannot fail politely.
    await this.sendOption(Opt.EXPORT_NAME, name);
    const tail = await this.readExact(10, 'export length');
    this.info.size = exportSize(be64(tail, 0));
    this.info.flags = be16(tail, 8);
    if (!noZeroes) await this.readExact(124, 'reserved block');
    return this.info;
  }

  /** NBD_OPT_SET_META_CONTEXT for one context (nbd_negotiate_simple_meta_context). */
  private async setMetaContext(name: Uint8Array, context: string): Promise<boolean> {
    const query = new TextEncoder().encode(context);
    const w = new WireWriter(4 + name.length + 4 + 4 + query.length).u32(name.length).raw(name).u32(1).u32(query.length).raw(query);
    await this.sendOption(Opt.SET_META_CONTEXT, w.bytes);
    let received = false;
    for (;;) {
      const r = await this.optionReply(Opt.SET_META_CONTEXT);
      if (r.type & 0x80000000) {
        await this.replyError(Opt.SET_META_CONTEXT, r, false);
        if (received) {
          await this.abortOption();
          throw protocolError('Server answered with more than one context');
        }
        return false;
      }
      if (r.type === Rep.ACK) {
        if (r.length !== 0) {
          await this.abortOption();
          throw protocolError('Unexpected length to ACK response');
        }
        return received;
      }
      if (r.type !== Rep.META_CONTEXT) {
        await this.abortOption();
        throw protocolError(`Unexpected reply type ${r.type} (${repName(r.type)}), expected ${Rep.META_CONTEXT} (${repName(Rep.META_CONTEXT)})`);
      }
      if (r.length <= 4 || r.length > NBD_MAX_BUFFER_SIZE) {
        await this.abortOption();
        throw protocolError(`Failed to negotiate meta context, server answered with unexpected length ${r.length}`);
      }
      const body = await this.readExact(r.length, 'context name');
      if (received) {
        await this.abortOption();
        throw protocolError('Server answered with more than one context');
      }
      const got = new TextDecoder().decode(body.subarray(4));
      if (got !== context) {
        await this.abortOption();
        throw protocolError(`Failed to negotiate meta context '${context}', server answered with different context '${got}'`);
      }
      this.contextId = be32(body, 0);
      received = true;
    }
  }

  /** NBD_OPT_GO asking for block sizes (nbd_opt_info_or_go); false when the server does not know it. */
  private async go(name: Uint8Array): Promise<boolean> {
    const w = new WireWriter(4 + name.length + 2 + 2).u32(name.length).raw(name).u16(1).u16(Info.BLOCK_SIZE);
    await this.sendOption(Opt.GO, w.bytes);
    this.info.flags = 0;
    for (;;) {
      const r = await this.optionReply(Opt.GO);
      if (r.type & 0x80000000) {
        const err = await this.replyError(Opt.GO, r, true);
        if (err) {
          await this.abortOption();
          throw err;
        }
        return false;
      }
      if (r.type === Rep.ACK) {
        if (r.length) throw protocolError('server sent invalid NBD_REP_ACK');
        if (!this.info.flags) throw protocolError('broken server omitted NBD_INFO_EXPORT');
        return true;
      }
      if (r.type !== Rep.INFO) {
        await this.abortOption();
        throw protocolError(`unexpected reply type ${r.type} (${repName(r.type)}), expected ${Rep.INFO} (${repName(Rep.INFO)})`);
      }
      if (r.length < 2) {
        await this.abortOption();
        throw protocolError(`NBD_REP_INFO length ${r.length} is too short`);
      }
      if (r.length > NBD_MAX_BUFFER_SIZE) throw protocolError(`NBD_REP_INFO length ${r.length} is too long`);
      const body = await this.readExact(r.length, 'info payload');
      const type = be16(body, 0);
      const len = r.length - 2;
      if (type === Info.EXPORT) {
        if (len !== 10) throw protocolError(`remaining export info len ${len} is unexpected size`);
        this.info.size = exportSize(be64(body, 2));
        this.info.flags = be16(body, 10);
        if (this.info.minBlock && this.info.size % this.info.minBlock !== 0) {
          await this.abortOption();
          throw protocolError(`export size ${this.info.size} is not multiple of minimum block size ${this.info.minBlock}`);
        }
      } else if (type === Info.BLOCK_SIZE) {
        if (len !== 12) throw protocolError(`remaining export info len ${len} is unexpected size`);
        const [min, opt, max] = [be32(body, 2), be32(body, 6), be32(body, 10)];
        let bad = '';
        if (!isPowerOfTwo(min)) bad = `server minimum block size ${min} is not a power of two`;
        else if (!isPowerOfTwo(opt) || opt < min) bad = `server preferred block size ${opt} is not valid`;
        else if (max < min) bad = `server maximum block size ${max} is not valid`;
        if (bad) {
          await this.abortOption();
          throw protocolError(bad);
        }
        Object.assign(this.info, { minBlock: min, optBlock: opt, maxBlock: max });
      }
    }
  }

  /** Starts reading replies; call once after {@link negotiate}. */
  startReceiving(): void {
    void this.receiveLoop();
  }

  private async receiveLoop(): Promise<void> {
    try {
      while (!this.dead) {
        const head = await this.input.read(4).catch((e: unknown) => {
          if (e instanceof PeerClosed) throw protocolError('Connection closed');
          throw e;
        });
        const magic = be32(head);
        if (magic === NBD_SIMPLE_REPLY_MAGIC) await this.simpleReply();
        else if (magic === NBD_STRUCTURED_REPLY_MAGIC) await this.structuredChunk();
        else throw protocolError(`invalid magic (got 0x${magic.toString(16)})`);
      }
    } catch (e) {
      this.fail(e instanceof BlockError ? e : protocolError(String(e)));
    }
  }

  /** The connection is unusable: every request in flight fails, and so will every later one. */
  private fail(e: BlockError): void {
    if (this.dead) return;
    this.dead = e;
    for (const p of this.pending.values()) p.reject(new BlockError('EIO', e.text));
    this.pending.clear();
    for (const w of this.slotWaiters.splice(0)) w();
    this.transport.close();
  }

  private take(handle: bigint): Pending {
    const p = this.pending.get(handle);
    if (!p) throw protocolError(`Protocol error: reply for unknown handle ${handle}`);
    return p;
  }

  private finish(handle: bigint, p: Pending): void {
    this.pending.delete(handle);
    if (p.error) p.reject(p.error);
    else p.resolve();
  }

  private async simpleReply(): Promise<void> {
    const h = await this.readExact(12, 'reply');
    const error = be32(h, 0);
    const handle = be64(h, 4);
    const p = this.take(handle);
    if (this.info.structuredReply && p.type === Cmd.READ && error === 0) {
      throw protocolError('Protocol error: simple reply when structured reply chunk was expected');
    }
    if (error) p.error = this.requestError(error, p, '');
    else if (p.type === Cmd.READ) await this.readExactInto(p.buf!.subarray(0, p.length), 'read data');
    else if (p.type === Cmd.BLOCK_STATUS) throw protocolError('Protocol error: simple reply to block status');
    this.finish(handle, p);
  }

  private requestError(nbdErrno: number, p: Pending, message: string): BlockError {
    const code = CODE_OF_NBD_ERRNO[nbdErrno] ?? 'EINVAL';
    const cmd = CMD_NAMES[p.type] ?? String(p.type);
    return new BlockError(code, message || `NBD ${cmd} at offset ${p.offset} failed`, { offset: p.offset });
  }

  private async structuredChunk(): Promise<void> {
    const h = await this.readExact(16, 'structured reply chunk');
    const flags = be16(h, 0);
    const type = be16(h, 2);
    const handle = be64(h, 4);
    const length = be32(h, 12);
    const p = this.take(handle);
    const done = (flags & Reply.FLAG_DONE) !== 0;
    if (type === Reply.TYPE_NONE) {
      if (!done) throw protocolError('Protocol error: NBD_REPLY_TYPE_NONE chunk without NBD_REPLY_FLAG_DONE flag');
      if (length) throw protocolError('Protocol error: NBD_REPLY_TYPE_NONE chunk with nonzero length');
      if (p.type === Cmd.BLOCK_STATUS && !p.extent && !p.error) throw protocolError('Server did not reply with any status extents');
      this.finish(handle, p);
      return;
    }
    if (length > NBD_MAX_BUFFER_SIZE + 8) throw protocolError('Payload too large');
    if (type === Reply.TYPE_OFFSET_DATA) {
      if (p.type !== Cmd.READ) throw protocolError('Unexpected NBD_REPLY_TYPE_OFFSET_DATA chunk');
      if (length <= 8) throw protocolError('Protocol error: invalid payload for NBD_REPLY_TYPE_OFFSET_DATA');
      const off = Number(be64(await this.readExact(8, 'chunk offset')));
      const n = length - 8;
      if (off < p.offset || off + n > p.offset + p.length) throw protocolError('Protocol error: server sent chunk exceeding requested region');
      await this.readExactInto(p.buf!.subarray(off - p.offset, off - p.offset + n), 'read data');
    } else if (type === Reply.TYPE_OFFSET_HOLE) {
      if (p.type !== Cmd.READ || length !== 12) throw protocolError('Protocol error: invalid payload for NBD_REPLY_TYPE_OFFSET_HOLE');
      const b = await this.readExact(12, 'hole');
      const off = Number(be64(b, 0));
      const n = be32(b, 8);
      if (off < p.offset || off + n > p.offset + p.length) throw protocolError('Protocol error: server sent chunk exceeding requested region');
      p.buf!.fill(0, off - p.offset, off - p.offset + n);
    } else if (type === Reply.TYPE_BLOCK_STATUS) {
      if (p.type !== Cmd.BLOCK_STATUS) throw protocolError('Protocol error: unexpected block status chunk');
      if (length < 12) throw protocolError('Protocol error: invalid payload for NBD_REPLY_TYPE_BLOCK_STATUS');
      const b = await this.readExact(length, 'block status');
      if (p.extent) throw protocolError('Several BLOCK_STATUS chunks in reply');
      const id = be32(b, 0);
      if (id !== this.contextId) throw protocolError(`Protocol error: unexpected context id ${id} for NBD_REPLY_TYPE_BLOCK_STATUS, when negotiated context id is ${this.contextId}`);
      let len = be32(b, 4);
      if (len === 0) throw protocolError('Protocol error: server sent status chunk with zero length');
      // A longer first extent than asked for is cut (QEMU does the same; later extents are ignored).
      if (len > p.length) len = p.length;
      p.extent = { length: len, flags: be32(b, 8) };
    } else if (type & 0x8000) {
      if (length < 6) throw protocolError('Protocol error: invalid payload for structured error');
      const b = await this.readExact(length, 'structured error');
      const errno = be32(b, 0);
      const msgLen = be16(b, 4);
      if (errno === 0) throw protocolError('Protocol error: server sent structured error chunk with error = 0');
      if (6 + msgLen > length) throw protocolError('Protocol error: server sent structured error chunk with incorrect message size');
      const msg = new TextDecoder().decode(b.subarray(6, 6 + msgLen));
      p.error ??= this.requestError(errno, p, msg);
    } else {
      // Unknown informational chunk types are skipped, as the protocol asks.
      await this.input.skip(length);
    }
    if (done) {
      if (p.type === Cmd.BLOCK_STATUS && !p.extent && !p.error) throw protocolError('Server did not reply with any status extents');
      this.finish(handle, p);
    }
  }

  private async acquireSlot(): Promise<void> {
    while (this.inFlight >= NBD_MAX_REQUESTS && !this.dead) await new Promise<void>((r) => this.slotWaiters.push(r));
    this.inFlight++;
  }

  private releaseSlot(): void {
    this.inFlight--;
    this.slotWaiters.shift()?.();
  }

  /** Sends one request and waits for its whole reply. */
  private async request(type: number, flags: number, offset: number, length: number, extra: Partial<Pending> = {}, payload?: Uint8Array): Promise<Pending> {
    await this.acquireSlot();
    try {
      if (this.dead) throw new BlockError('EIO', this.dead.text);
      const handle = this.nextHandle++;
      const done = new Promise<Pending>((resolve, reject) => {
        const p: Pending = { type, offset, length, ...extra, resolve: () => resolve(p), reject };
        this.pending.set(handle, p);
      });
      const w = new WireWriter(28).u32(NBD_REQUEST_MAGIC).u16(flags).u16(type).u64(handle).u64(offset).u32(length);
      const sent = payload ? this.send(w.bytes, payload) : this.send(w.bytes);
      sent.catch((e: unknown) => this.fail(new BlockError('EIO', `Failed to send request: ${(e as Error).message}`)));
      return await done;
    } finally {
      this.releaseSlot();
    }
  }

  async read(offset: number, buf: Uint8Array): Promise<void> {
    await this.request(Cmd.READ, 0, offset, buf.length, { buf });
  }

  async write(offset: number, data: Uint8Array, flags: number): Promise<void> {
    await this.request(Cmd.WRITE, flags, offset, data.length, {}, data);
  }

  async writeZeroes(offset: number, bytes: number, flags: number): Promise<void> {
    await this.request(Cmd.WRITE_ZEROES, flags, offset, bytes);
  }

  async trim(offset: number, bytes: number): Promise<void> {
    await this.request(Cmd.TRIM, 0, offset, bytes);
  }

  async flush(): Promise<void> {
    await this.request(Cmd.FLUSH, 0, 0, 0);
  }

  /** The first extent from `offset` (NBD_CMD_FLAG_REQ_ONE), at most `bytes` long. */
  async blockStatus(offset: number, bytes: number, flags: number): Promise<NbdExtent> {
    const p = await this.request(Cmd.BLOCK_STATUS, flags, offset, bytes);
    return p.extent!;
  }

  /** Closes without a word to the server (a handshake that failed: no NBD_CMD_DISC there). */
  abandon(): void {
    this.dead ??= new BlockError('EIO', 'NBD connection closed');
    this.transport.close();
  }

  /** Sends NBD_CMD_DISC and closes (the block layer has drained the node: nothing is in flight). */
  async close(): Promise<void> {
    if (!this.dead) {
      // Dead first: no request may follow the DISC.
      this.dead = new BlockError('EIO', 'NBD connection closed');
      const w = new WireWriter(28).u32(NBD_REQUEST_MAGIC).u16(0).u16(Cmd.DISC).u64(0n).u64(0).u32(0);
      await this.send(w.bytes).catch(() => undefined);
    }
    this.transport.close();
  }
}

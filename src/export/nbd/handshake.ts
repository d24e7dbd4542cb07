/**
 * The fixed newstyle handshake, server side, one function per option as
 * qemu-nbd answers them (QEMU's nbd_negotiate_options): EXPORT_NAME, ABORT,
 * LIST, STARTTLS (refused: no TLS), INFO, GO, STRUCTURED_REPLY,
 * LIST_META_CONTEXT and SET_META_CONTEXT. Every length the client sends is
 * bounded before anything is read or allocated.
 */
import { NbdClient, NbdConnectionError, type MetaSelection } from './client.js';
import {
  ClientFlag,
  EXPORT_NAME_PAD,
  ExportFlag,
  HandshakeFlag,
  Info,
  MetaId,
  NBD_INIT_MAGIC,
  NBD_MAX_BUFFER_SIZE,
  NBD_MAX_STRING_SIZE,
  NBD_OPTS_MAGIC,
  NBD_REP_MAGIC,
  OPT_NAMES,
  Opt,
  Rep,
} from './constants.js';
import type { NbdExport } from './export.js';
import { PeerClosed, WireWriter, be16, be32, be64 } from './transport.js';

const EOF_TEXT = 'Unexpected end-of-file before all data were read';

/** Reads `n` bytes of the handshake; a hang-up is reported as qemu-nbd words it ("Failed to read <what>: ..."). */
async function readField(client: NbdClient, n: number, what?: string): Promise<Uint8Array> {
  try {
    return await client.input.read(n);
  } catch (e) {
    if (e instanceof PeerClosed) throw new NbdConnectionError(what ? `Failed to read ${what}: ${EOF_TEXT}` : EOF_TEXT);
    throw e;
  }
}

/** Where the handshake finds exports. */
export interface ExportDirectory {
  find(name: string): NbdExport | undefined;
  list(): readonly NbdExport[];
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Names longer than 80 bytes are cut in error replies, as QEMU's nbd_sanitize_name. */
function sanitize(name: string): string {
  return name.length < 80 ? name : `${name.slice(0, 80)}...`;
}

function optName(opt: number): string {
  return OPT_NAMES[opt] ?? '<unknown>';
}

/** The payload of one option, read with a cursor; a short payload is the client's error. */
class OptPayload {
  private pos = 0;
  constructor(readonly data: Uint8Array) {}
  get left(): number {
    return this.data.length - this.pos;
  }
  take(n: number): Uint8Array | null {
    if (n > this.left) return null;
    const out = this.data.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}

/** The reply of an option in progress: the option number is echoed in every reply. */
class OptionReplies {
  constructor(
    private readonly client: NbdClient,
    readonly opt: number,
  ) {}

  send(type: number, payload: Uint8Array = new Uint8Array(0)): Promise<void> {
    const head = new WireWriter(20).u64(NBD_REP_MAGIC).u32(this.opt).u32(type).u32(payload.length);
    return this.client.send(head.bytes, payload);
  }

  error(type: number, message: string): Promise<void> {
    return this.send(type, enc.encode(message));
  }

  info(type: number, body: Uint8Array): Promise<void> {
    return this.send(Rep.INFO, new WireWriter(2 + body.length).u16(type).raw(body).bytes);
  }
}

/**
 * Runs the handshake on a new connection. Resolves to the export the client
 * chose (transmission follows), or null when the client ended the handshake
 * (NBD_OPT_ABORT); throws NbdConnectionError when the connection must drop.
 */
export async function negotiate(client: NbdClient, dir: ExportDirectory): Promise<NbdExport | null> {
  const hello = new WireWriter(18)
    .u64(NBD_INIT_MAGIC)
    .u64(NBD_OPTS_MAGIC)
    .u16(HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES);
  await client.send(hello.bytes);

  let flags = be32(await readField(client, 4, 'flags'));
  const fixed = (flags & ClientFlag.FIXED_NEWSTYLE) !== 0;
  const noZeroes = (flags & ClientFlag.NO_ZEROES) !== 0;
  flags &= ~(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES);
  if (flags !== 0) throw new NbdConnectionError(`Unknown client flags 0x${flags.toString(16)} received`);

  for (;;) {
    if (be64(await readField(client, 8, 'opts magic'), 0) !== NBD_OPTS_MAGIC) throw new NbdConnectionError('Bad magic received');
    const opt = be32(await readField(client, 4, 'option'));
    const length = be32(await readField(client, 4, 'option length'));
    if (length > NBD_MAX_BUFFER_SIZE) {
      throw new NbdConnectionError(`len (${length} ) is larger than max len (${NBD_MAX_BUFFER_SIZE})`);
    }
    const rep = new OptionReplies(client, opt);
    if (!fixed) {
      // Old clients: only EXPORT_NAME is understood, anything else drops the connection.
      if (opt === Opt.EXPORT_NAME) return exportName(client, dir, length, noZeroes);
      throw new NbdConnectionError(`Unsupported option ${opt} (${optName(opt)})`);
    }
    if (opt === Opt.EXPORT_NAME) return exportName(client, dir, length, noZeroes);
    if (opt === Opt.ABORT) {
      await rep.send(Rep.ACK).catch(() => undefined);
      return null;
    }
    const payload = new OptPayload(await readField(client, length));
    const unexpectedLength = (): Promise<void> => rep.error(Rep.ERR_INVALID, `option '${optName(opt)}' has unexpected length`);
    switch (opt) {
      case Opt.LIST:
        if (length) await unexpectedLength();
        else {
          for (const exp of dir.list()) {
            const name = enc.encode(exp.name);
            const desc = enc.encode(exp.description ?? '');
            await rep.send(Rep.SERVER, new WireWriter(4 + name.length + desc.length).u32(name.length).raw(name).raw(desc).bytes);
          }
          await rep.send(Rep.ACK);
        }
        break;
      case Opt.STARTTLS:
        if (length) await unexpectedLength();
        else await rep.error(Rep.ERR_POLICY, 'TLS not configured');
        break;
      case Opt.STRUCTURED_REPLY:
        if (length) await unexpectedLength();
        else if (client.structuredReply) await rep.error(Rep.ERR_INVALID, 'structured reply already negotiated');
        else {
          await rep.send(Rep.ACK);
          client.structuredReply = true;
        }
        break;
      case Opt.INFO:
      case Opt.GO: {
        const exp = await infoOrGo(client, dir, rep, payload);
        if (exp && opt === Opt.GO) return exp;
        break;
      }
      case Opt.LIST_META_CONTEXT:
      case Opt.SET_META_CONTEXT:
        await metaContexts(client, dir, rep, payload);
        break;
      default:
        await rep.error(Rep.ERR_UNSUP, `Unsupported option ${opt} (${optName(opt)})`);
    }
  }
}

/** NBD_OPT_EXPORT_NAME: no way to report an error, so an unknown name drops the connection. */
async function exportName(client: NbdClient, dir: ExportDirectory, length: number, noZeroes: boolean): Promise<NbdExport> {
  if (length > NBD_MAX_STRING_SIZE) throw new NbdConnectionError('Bad length received');
  const name = dec.decode(await readField(client, length, 'export name'));
  const exp = dir.find(name);
  if (!exp) throw new NbdConnectionError('export not found');
  const reply = new WireWriter(noZeroes ? 10 : 10 + EXPORT_NAME_PAD).u64(exp.size).u16(transmissionFlags(client, exp));
  await client.send(reply.bytes);
  return exp;
}

/** The export's flags for this client: SEND_DF once structured replies are on. */
function transmissionFlags(client: NbdClient, exp: NbdExport): number {
  return exp.flags | (client.structuredReply ? ExportFlag.SEND_DF : 0);
}

/** Reads a length-prefixed string; sends ERR_INVALID and returns null when it is malformed. */
async function readName(rep: OptionReplies, p: OptPayload): Promise<{ name: string; bytes: Uint8Array } | null> {
  const len = p.take(4);
  if (!len) {
    await rep.error(Rep.ERR_INVALID, `Inconsistent lengths in option ${optName(rep.opt)}`);
    return null;
  }
  const n = be32(len);
  if (n > NBD_MAX_STRING_SIZE) {
    await rep.error(Rep.ERR_INVALID, `Invalid name length: ${n}`);
    return null;
  }
  return readString(rep, p, n);
}

async function readString(rep: OptionReplies, p: OptPayload, n: number): Promise<{ name: string; bytes: Uint8Array } | null> {
  const bytes = p.take(n);
  if (!bytes) {
    await rep.error(Rep.ERR_INVALID, `Inconsistent lengths in option ${optName(rep.opt)}`);
    return null;
  }
  if (bytes.includes(0)) {
    await rep.error(Rep.ERR_INVALID, `Unexpected embedded NUL in option ${optName(rep.opt)}`);
    return null;
  }
  return { name: dec.decode(bytes), bytes };
}

/** NBD_OPT_INFO / NBD_OPT_GO: resolves to the export after the final ACK, null after an error reply. */
async function infoOrGo(client: NbdClient, dir: ExportDirectory, rep: OptionReplies, p: OptPayload): Promise<NbdExport | null> {
  const name = await readName(rep, p);
  if (!name) return null;
  const countBytes = p.take(2);
  if (!countBytes) {
    await rep.error(Rep.ERR_INVALID, `Inconsistent lengths in option ${optName(rep.opt)}`);
    return null;
  }
  let sendName = false;
  let wantsBlockSize = false;
  for (let i = be16(countBytes); i > 0; i--) {
    const req = p.take(2);
    if (!req) {
      await rep.error(Rep.ERR_INVALID, `Inconsistent lengths in option ${optName(rep.opt)}`);
      return null;
    }
    const what = be16(req);
    if (what === Info.NAME) sendName = true;
    if (what === Info.BLOCK_SIZE) wantsBlockSize = true;
  }
  if (p.left) {
    await rep.error(Rep.ERR_INVALID, `option '${optName(rep.opt)}' has unexpected length`);
    return null;
  }
  const exp = dir.find(name.name);
  if (!exp) {
    await rep.error(Rep.ERR_UNKNOWN, `export '${sanitize(name.name)}' not present`);
    return null;
  }
  if (sendName) await rep.info(Info.NAME, name.bytes);
  if (exp.description !== undefined) await rep.info(Info.DESCRIPTION, enc.encode(exp.description));
  // The minimum is 1 for clients that would not honour it (GO without the request).
  const align = exp.backend.node.limits.requestAlignment || 1;
  const min = rep.opt === Opt.INFO || wantsBlockSize ? align : 1;
  const maxTransfer = exp.backend.node.limits.maxTransfer;
  const max = Math.min(maxTransfer > 0 ? Math.floor(maxTransfer / align) * align : 0x7fffffff, NBD_MAX_BUFFER_SIZE);
  await rep.info(Info.BLOCK_SIZE, new WireWriter(12).u32(min).u32(Math.max(4096, min)).u32(max).bytes);
  await rep.info(Info.EXPORT, new WireWriter(10).u64(exp.size).u16(transmissionFlags(client, exp)).bytes);
  if (rep.opt === Opt.INFO && !wantsBlockSize && align > 1) {
    await rep.error(Rep.ERR_BLOCK_SIZE_REQD, 'request NBD_INFO_BLOCK_SIZE to use this export');
    return null;
  }
  await rep.send(Rep.ACK);
  return exp;
}

/** Applies one context query to `sel` (unknown namespaces and names select nothing). */
function applyQuery(sel: MetaSelection, query: string, listing: boolean): void {
  const exp = sel.exp;
  if (query.startsWith('base:')) {
    const rest = query.slice(5);
    if (rest === 'allocation' || (rest === '' && listing)) sel.baseAllocation = true;
    return;
  }
  if (!query.startsWith('qemu:')) return;
  const rest = query.slice(5);
  if (rest === '') {
    if (listing) {
      sel.allocationDepth = exp.allocationDepth;
      sel.bitmaps.fill(true);
    }
  } else if (rest === 'allocation-depth') {
    sel.allocationDepth = exp.allocationDepth;
  } else if (rest.startsWith('dirty-bitmap:')) {
    const bm = rest.slice('dirty-bitmap:'.length);
    if (bm === '') {
      if (listing) sel.bitmaps.fill(true);
    } else {
      const i = exp.bitmaps.findIndex((b) => b.name === bm);
      if (i >= 0) sel.bitmaps[i] = true;
    }
  }
}

/** NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT. */
async function metaContexts(client: NbdClient, dir: ExportDirectory, rep: OptionReplies, p: OptPayload): Promise<void> {
  const listing = rep.opt === Opt.LIST_META_CONTEXT;
  if (!listing && !client.structuredReply) {
    await rep.error(Rep.ERR_INVALID, `request option '${optName(rep.opt)}' when structured reply is not negotiated`);
    return;
  }
  if (!listing) client.meta = null;
  const name = await readName(rep, p);
  if (!name) return;
  const exp = dir.find(name.name);
  if (!exp) {
    await rep.error(Rep.ERR_UNKNOWN, `export '${sanitize(name.name)}' not present`);
    return;
  }
  const sel: MetaSelection = { exp, baseAllocation: false, allocationDepth: false, bitmaps: exp.bitmaps.map(() => false), count: 0 };
  const countBytes = p.take(4);
  if (!countBytes) {
    await rep.error(Rep.ERR_INVALID, `Inconsistent lengths in option ${optName(rep.opt)}`);
    return;
  }
  const queries = be32(countBytes);
  if (listing && queries === 0) {
    sel.baseAllocation = true;
    sel.allocationDepth = exp.allocationDepth;
    sel.bitmaps.fill(true);
  }
  for (let i = 0; i < queries; i++) {
    const lenBytes = p.take(4);
    if (!lenBytes) {
      await rep.error(Rep.ERR_INVALID, `Inconsistent lengths in option ${optName(rep.opt)}`);
      return;
    }
    const len = be32(lenBytes);
    if (len > NBD_MAX_STRING_SIZE) {
      // Too long to be a context this server knows: skipped.
      if (!p.take(len)) {
        await rep.error(Rep.ERR_INVALID, `Inconsistent lengths in option ${optName(rep.opt)}`);
        return;
      }
      continue;
    }
    const q = await readString(rep, p, len);
    if (!q) return;
    applyQuery(sel, q.name, listing);
  }
  const send = (context: string, id: number): Promise<void> => {
    const b = enc.encode(context);
    return rep.send(Rep.META_CONTEXT, new WireWriter(4 + b.length).u32(listing ? 0 : id).raw(b).bytes);
  };
  let count = 0;
  if (sel.baseAllocation) {
    await send('base:allocation', MetaId.BASE_ALLOCATION);
    count++;
  }
  if (sel.allocationDepth) {
    await send('qemu:allocation-depth', MetaId.ALLOCATION_DEPTH);
    count++;
  }
  for (let i = 0; i < exp.bitmaps.length; i++) {
    if (!sel.bitmaps[i]) continue;
    await send(`qemu:dirty-bitmap:${exp.bitmaps[i]!.name}`, MetaId.DIRTY_BITMAP + i);
    count++;
  }
  await rep.send(Rep.ACK);
  if (!listing) {
    sel.count = count;
    client.meta = sel;
  }
}

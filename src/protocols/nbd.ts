/**
 * The NBD client protocol driver (QEMU's `nbd`, `nbd+tcp`, `nbd+unix`), for
 * Node: reads and writes an export of qemu-nbd, qemu-storage-daemon or
 * `diskworker nbd` over a Unix socket or TCP.
 *
 * As QEMU 7.2's driver: one connection, structured replies, block status from
 * base:allocation (or the `x-dirty-bitmap` context), requests up to 32 MiB,
 * FUA / trim / write-zeroes / flush as the export advertises them, the size
 * fixed (truncate only to the same size, or smaller when not exact). Not
 * supported: TLS (`tls-creds` is refused) and reconnecting (`reconnect-delay`
 * and `open-timeout` other than 0 are refused): a lost connection fails every
 * later request with EIO, as QEMU's does without them.
 */
import type { Socket } from 'node:net';
import { ReqFlag, Status, type BlockDriver, type BlockStatusResult, type DriverInstance, type ReopenState } from '../core/driver.js';
import { BlockError, einval, systemErrorText } from '../core/errors.js';
import type { BlockLimits } from '../core/limits.js';
import type { BlockNode } from '../core/node.js';
import type { OptionReader } from '../core/options.js';
import { CmdFlag, ExportFlag, NBD_MAX_BUFFER_SIZE, NBD_MAX_STRING_SIZE, State } from '../export/nbd/constants.js';
import { socketTransport } from '../export/nbd/node-listen.js';
import { describeNbdServer, nbdFilename, parseNbdFilename, readNbdServer, type NbdServerAddress } from './nbd-address.js';
import { NbdConnection } from './nbd-connection.js';

const INT_MAX = 0x7fffffff;
const SECTOR = 512;

/** Connects a socket to the server; QEMU's messages on failure. */
async function connectSocket(addr: NbdServerAddress): Promise<Socket> {
  const net = await import('node:net');
  return new Promise<Socket>((resolve, reject) => {
    let sock: Socket;
    if (addr.type === 'unix') {
      sock = net.connect({ path: addr.path });
    } else {
      const port = Number(addr.port);
      if (!/^\d+$/.test(addr.port) || port > 65535) {
        reject(einval(`address resolution failed for ${addr.host}:${addr.port}: Servname not supported for ai_socktype`));
        return;
      }
      sock = net.connect({ host: addr.host, port });
    }
    const onError = (e: NodeJS.ErrnoException): void => {
      sock.destroy();
      if (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN') {
        reject(new BlockError('EIO', `address resolution failed for ${describeNbdServer(addr)}: Name or service not known`));
        return;
      }
      reject(new BlockError('EIO', `Failed to connect to '${describeNbdServer(addr)}': ${systemErrorText(e)}`));
    };
    sock.once('error', onError);
    sock.once('connect', () => {
      sock.off('error', onError);
      sock.setNoDelay(true);
      resolve(sock);
    });
  });
}

class NbdInstance implements DriverInstance {
  readonly supportedWriteFlags: number;
  readonly supportedZeroFlags: number;

  constructor(
    private readonly conn: NbdConnection,
    private readonly node: BlockNode,
    private readonly allocDepth: boolean,
    /** The node's name, as QEMU's nbd_refresh_filename builds it. */
    readonly filename: string,
  ) {
    const f = conn.info.flags;
    let zero = 0;
    if (f & ExportFlag.SEND_FUA) zero |= ReqFlag.FUA;
    if (f & ExportFlag.SEND_WRITE_ZEROES) {
      zero |= ReqFlag.MAY_UNMAP;
      if (f & ExportFlag.SEND_FAST_ZERO) zero |= ReqFlag.NO_FALLBACK;
    }
    this.supportedWriteFlags = f & ExportFlag.SEND_FUA ? ReqFlag.FUA : 0;
    this.supportedZeroFlags = zero;
  }

  private get size(): number {
    return this.conn.info.size;
  }

  getLength(): number {
    return this.size;
  }

  refreshLimits(limits: BlockLimits): void {
    const info = this.conn.info;
    let min = info.minBlock;
    // No advertised alignment: byte access where the size or block status needs it, sectors otherwise (old servers).
    if (!min) min = this.size % SECTOR !== 0 || info.metaContext ? 1 : SECTOR;
    const max = info.maxBlock ? Math.min(NBD_MAX_BUFFER_SIZE, info.maxBlock) : NBD_MAX_BUFFER_SIZE;
    limits.requestAlignment = min;
    limits.maxPdiscard = Math.floor(INT_MAX / min) * min;
    limits.maxPwriteZeroes = max;
    limits.maxTransfer = max;
    if (info.optBlock > limits.optTransfer) limits.optTransfer = info.optBlock;
  }

  async preadv(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    // The block layer may round a read up past an unaligned end: the tail reads as zeros.
    if (offset >= this.size) {
      buf.fill(0, 0, bytes);
      return;
    }
    const len = Math.min(bytes, this.size - offset);
    if (len < bytes) buf.fill(0, len, bytes);
    await this.conn.read(offset, buf.subarray(0, len));
  }

  async pwritev(offset: number, bytes: number, buf: Uint8Array, flags: number): Promise<void> {
    await this.conn.write(offset, buf.subarray(0, bytes), flags & ReqFlag.FUA ? CmdFlag.FUA : 0);
  }

  async pwriteZeroes(offset: number, bytes: number, flags: number): Promise<void> {
    if (!(this.conn.info.flags & ExportFlag.SEND_WRITE_ZEROES)) throw new BlockError('ENOTSUP', 'The NBD export does not take zero writes');
    let f = 0;
    if (flags & ReqFlag.FUA) f |= CmdFlag.FUA;
    if (!(flags & ReqFlag.MAY_UNMAP)) f |= CmdFlag.NO_HOLE;
    if (flags & ReqFlag.NO_FALLBACK) f |= CmdFlag.FAST_ZERO;
    await this.conn.writeZeroes(offset, bytes, f);
  }

  async pdiscard(offset: number, bytes: number): Promise<void> {
    if (!(this.conn.info.flags & ExportFlag.SEND_TRIM)) return;
    await this.conn.trim(offset, bytes);
  }

  async flushToOs(): Promise<void> {
    if (!(this.conn.info.flags & ExportFlag.SEND_FLUSH)) return;
    await this.conn.flush();
  }

  async blockStatus(_wantZero: boolean, offset: number, bytes: number): Promise<BlockStatusResult> {
    const info = this.conn.info;
    if (!info.metaContext) return { status: Status.DATA | Status.OFFSET_VALID, pnum: bytes, map: offset, file: this.node };
    // Past an unaligned end (the block layer rounded up): zeros, with no offset.
    if (offset >= this.size) return { status: Status.ZERO, pnum: bytes };
    const align = this.node.limits.requestAlignment;
    const len = Math.min(Math.floor(INT_MAX / align) * align, bytes, this.size - offset);
    const extent = await this.conn.blockStatus(offset, len, CmdFlag.REQ_ONE);
    let { length, flags } = extent;
    if (length > bytes) length = bytes;
    // A server that answers unaligned extents (qemu-nbd 3.1 did at an unaligned EOF).
    if (info.minBlock && length % info.minBlock !== 0) {
      if (length > info.minBlock) length -= length % info.minBlock;
      else {
        length = info.minBlock;
        flags = 0;
      }
    }
    // qemu:allocation-depth through x-dirty-bitmap: depths past 2 count as 2.
    if (this.allocDepth && flags > 2) flags = 2;
    return {
      status: (flags & State.HOLE ? 0 : Status.DATA) | (flags & State.ZERO ? Status.ZERO : 0) | Status.OFFSET_VALID,
      pnum: length,
      map: offset,
      file: this.node,
    };
  }

  /** QEMU's nbd driver has no bdrv_get_info (so info shows no dirty flag). */
  getInfo(): never {
    throw new BlockError('ENOTSUP', `Driver '${this.node.driver.name}' has no image information`);
  }

  async truncate(offset: number, exact: boolean): Promise<void> {
    if (offset !== this.size && exact) throw new BlockError('ENOTSUP', 'Cannot resize NBD nodes');
    if (offset > this.size) throw einval('Cannot grow NBD nodes');
  }

  async reopenPrepare(state: ReopenState): Promise<void> {
    if (!state.readOnly && this.conn.info.flags & ExportFlag.READ_ONLY) {
      throw new BlockError('EACCES', "Can't reopen read-only NBD mount as read/write");
    }
  }

  async close(): Promise<void> {
    await this.conn.close();
  }
}

function nbdVariant(name: 'nbd' | 'nbd+tcp' | 'nbd+unix'): BlockDriver {
  return {
    name,
    kind: 'protocol',
    protocolPrefixes: [`${name}:`],
    strongOptions: ['path', 'host', 'port', 'export', 'tls-creds', 'tls-hostname', 'server.'],
    refreshFilename(node) {
      return node.instance instanceof NbdInstance ? node.instance.filename : '';
    },
    parseFilename: (filename: string, given?: readonly string[]) => parseNbdFilename(filename, given),
    async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
      const addr = readNbdServer(options);
      const exportName = options.string('export');
      if (exportName !== undefined && new TextEncoder().encode(exportName).length > NBD_MAX_STRING_SIZE) {
        throw einval('export name too long to send to server');
      }
      const tls = options.string('tls-creds');
      if (tls !== undefined) throw new BlockError('ENOTSUP', `TLS is not supported: tls-creds '${tls}' cannot be used`);
      options.consume('tls-hostname');
      const bitmap = options.string('x-dirty-bitmap');
      if (bitmap !== undefined && new TextEncoder().encode(bitmap).length > NBD_MAX_STRING_SIZE) {
        throw einval('x-dirty-bitmap query too long to send to server');
      }
      for (const k of ['reconnect-delay', 'open-timeout'] as const) {
        const v = options.uint(k, 0);
        if (v !== 0) throw new BlockError('ENOTSUP', `${k}=${v}: reconnecting is not supported`);
      }
      const autoReadOnly = options.bool('auto-read-only', false);

      const sock = await connectSocket(addr);
      const conn = new NbdConnection(socketTransport(sock));
      sock.on('data', (chunk: Buffer) => conn.input.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
      sock.on('end', () => conn.input.end());
      sock.on('close', () => conn.input.end());
      sock.on('error', () => conn.input.end());
      try {
        await conn.negotiate(exportName ?? '', bitmap ?? 'base:allocation');
      } catch (e) {
        // Mid-handshake there is no transmission phase to leave politely.
        conn.abandon();
        sock.destroy();
        throw e;
      }
      try {
        // QEMU's message (requested x-dirty-bitmap ... not found) does not reach its open's caller: the generic one does.
        if (bitmap !== undefined && !conn.info.metaContext) throw einval('Could not open image: Invalid argument', {}, `x-dirty-bitmap ${bitmap} not granted`);
        if (conn.info.flags & ExportFlag.READ_ONLY && !node.readOnly) {
          // QEMU's bdrv_apply_auto_read_only, whose message its open does not pass on.
          if (!autoReadOnly) throw new BlockError('EACCES', 'Could not open image: Permission denied');
          node.readOnly = true;
        }
      } catch (e) {
        // Connected, but the node cannot use the export: NBD_CMD_DISC as a courtesy, as QEMU sends.
        await conn.close();
        sock.destroy();
        throw e;
      }
      conn.startReceiving();
      return new NbdInstance(conn, node, bitmap === 'qemu:allocation-depth', nbdFilename(addr, exportName));
    },
  } satisfies BlockDriver;
}

/** QEMU's `nbd` (`nbd://host[:port]/export`, `nbd:unix:path`, or `server.*` options). */
export const nbdDriver = nbdVariant('nbd');
/** QEMU's `nbd+tcp` (`nbd+tcp://host[:port]/export`). */
export const nbdTcpDriver = nbdVariant('nbd+tcp');
/** QEMU's `nbd+unix` (`nbd+unix:///export?socket=path`). */
export const nbdUnixDriver = nbdVariant('nbd+unix');

/**
 * Block exports over NBD (QEMU 7.2's blockdev-nbd.c and block/export/):
 * nbd-server-start / -stop, block-export-add / -del, query-block-exports
 * and the BLOCK_EXPORT_DELETED event. The server itself is the page-safe
 * one of src/export/nbd; listening on sockets is the host's part
 * ({@link NbdListenHost}: the daemon gives Node sockets).
 */
import { drainPulse } from '../core/drain.js';
import { BlockBackend } from '../core/backend.js';
import { lookupDirtyBitmap, type BdrvDirtyBitmap } from '../core/dirty-bitmap.js';
import { Perm, PERM_ALL } from '../core/permissions.js';
import { NBD_MAX_STRING_SIZE } from '../export/nbd/constants.js';
import { createExport, type NbdExport } from '../export/nbd/export.js';
import { NbdServer } from '../export/nbd/server.js';
import type { BlockQmp } from './block-qmp.js';
import type { QmpCommand } from './dispatcher.js';
import { genericError } from './errors.js';
import { checkMembers, checkValue, isObject, join, m, struct, type QapiCustom, type QapiStruct, type QapiType } from './schema.js';
import { tcpServicePort } from '../export/nbd/tcp-service.js';

/** Where the NBD server listens. */
/** Where the NBD server listens; `service` is the port as the client wrote it (for messages). */
export type NbdListenAddress = { path: string } | { host: string; port: number; service?: string };

/** A listening socket of the NBD server. */
export interface NbdListening {
  close(): Promise<void>;
}

/**
 * The host's sockets: listens on `addr` and hands the connections to
 * `server`, at most `maxConnections` at a time (0: no limit). Fails with
 * QEMU's message ("Failed to bind socket to PATH: ...").
 */
export interface NbdListenHost {
  listen(server: NbdServer, addr: NbdListenAddress, maxConnections: number): Promise<NbdListening>;
}

/** One export of the monitor (QEMU's BlockExport). */
interface MonitorExport {
  id: string;
  exp: NbdExport;
  backend: BlockBackend;
}

/** The NBD server and exports of one BlockQmp. */
export class ExportState {
  host: NbdListenHost | null = null;
  server: NbdServer | null = null;
  maxConnections = 0;
  private listening: NbdListening | null = null;
  /** Newest first, as QEMU lists them. */
  readonly exports: MonitorExport[] = [];

  async start(addr: NbdListenAddress, maxConnections: number): Promise<void> {
    if (this.server) throw genericError('NBD server already running');
    if (!this.host) throw genericError('Failed to bind socket: sockets are not available here');
    const server = new NbdServer();
    this.listening = await this.host.listen(server, addr, maxConnections);
    this.server = server;
    this.maxConnections = maxConnections;
  }

  /** Drops an export and its backend; BLOCK_EXPORT_DELETED follows. */
  async remove(q: BlockQmp, e: MonitorExport): Promise<void> {
    const i = this.exports.indexOf(e);
    if (i < 0) return;
    this.exports.splice(i, 1);
    this.server?.removeExport(e.exp);
    // As qemu-storage-daemon's, letting go of the node drains it twice (jobs on it pause and resume each time).
    const node = e.backend.root.node;
    for (let k = 0; k < 2; k++) await drainPulse([node]);
    await e.backend.close();
    q.events.emit('BLOCK_EXPORT_DELETED', { id: e.id });
  }

  async stop(q: BlockQmp): Promise<void> {
    if (!this.server) throw genericError('NBD server not running');
    for (const e of [...this.exports]) await this.remove(q, e);
    this.server.close();
    this.server = null;
    const l = this.listening;
    this.listening = null;
    await l?.close();
  }
}

const socketMembers: Record<string, QapiStruct> = {
  unix: struct('UnixSocketAddress', [m('path', 'str'), m('*abstract', 'bool'), m('*tight', 'bool')]),
  inet: struct('InetSocketAddress', [
    m('host', 'str'),
    m('port', 'str'),
    m('*numeric', 'bool'),
    m('*to', 'uint16'),
    m('*ipv4', 'bool'),
    m('*ipv6', 'bool'),
    m('*keep-alive', 'bool'),
    m('*mptcp', 'bool'),
  ]),
  vsock: struct('VsockSocketAddress', [m('cid', 'str'), m('port', 'str')]),
  fd: struct('String', [m('str', 'str')]),
};


function checkSocketType(value: Record<string, unknown>, path: string, keyval: boolean): string {
  if (value.type === undefined) throw genericError(`Parameter '${join(path, 'type')}' is missing`);
  checkValue(value.type, { enum: Object.keys(socketMembers) }, join(path, 'type'), keyval);
  return value.type as string;
}

/** SocketAddress: a flat union on `type` (the command line's --nbd-server addr). */
const socketAddress: QapiCustom = {
  custom: 'SocketAddress',
  check(value, path, keyval) {
    if (!isObject(value)) throw genericError(`Invalid parameter type for '${path}', expected: object`);
    const type = checkSocketType(value, path, keyval);
    const { type: _t, ...rest } = value;
    checkMembers(rest, socketMembers[type]!, path, keyval);
  },
};

/** SocketAddressLegacy: `type` and the members in `data` (QMP's nbd-server-start). */
const socketAddressLegacy: QapiCustom = {
  custom: 'SocketAddressLegacy',
  check(value, path, keyval) {
    if (!isObject(value)) throw genericError(`Invalid parameter type for '${path}', expected: object`);
    const type = checkSocketType(value, path, keyval);
    checkMembers(value, struct('SocketAddressLegacy', [m('type', 'str'), m('data', socketMembers[type]!)]), path, keyval);
  },
};

/** The address as the host listens on it; types we cannot serve answer as QEMU's socket code would fail. */
function listenAddress(type: string, a: Record<string, unknown>, fromMonitor = false): NbdListenAddress {
  if (type === 'unix') return { path: a.path as string };
  if (type === 'inet') {
    // getaddrinfo's service: digits (kept modulo 2^16, as glibc stores them), '' for any port,
    // or a TCP service name of /etc/services.
    if (a.mptcp === true) throw genericError("DiskWorker's NBD server does not listen with MPTCP (mptcp=on)");
    const text = String(a.port);
    const named = text !== '' && !/^\d+$/.test(text) ? tcpServicePort(text) : undefined;
    if (text !== '' && !/^\d+$/.test(text) && named === undefined) {
      throw genericError(`address resolution failed for ${String(a.host)}:${text}: Servname not supported for ai_socktype`);
    }
    return { host: a.host as string, port: named ?? (text === '' ? 0 : Number(BigInt(text) % 65536n)), service: text };
  }
  // qemu-storage-daemon's monitor takes no file descriptors (no getfd): any name or number is refused.
  if (type === 'fd') throw genericError(fromMonitor ? 'only QEMU supports file descriptor passing' : `No file descriptor named ${String(a.str)} found`);
  if (type === 'vsock') {
    // The address is parsed first (decimal, at most 2^32 - 1), then the socket made: no vsock here.
    for (const key of ['cid', 'port']) {
      const text = String(a[key]);
      if (!/^\d+$/.test(text) || BigInt(text) > 0xffffffffn) throw genericError(`Failed to parse ${key} '${text}'`);
    }
  }
  throw genericError('Failed to create socket: Address family not supported by protocol');
}

const nbdServerOptions = (addr: QapiType) => [m('addr', addr), m('*tls-creds', 'str'), m('*tls-authz', 'str'), m('*max-connections', 'uint32')];

/** NbdServerOptions of the daemon's --nbd-server. */
export const NBD_SERVER_OPTIONS = struct('NbdServerOptions', nbdServerOptions(socketAddress));

const bitmapOrStr: QapiType = {
  alternate: 'BlockDirtyBitmapOrStr',
  str: 'str',
  object: struct('BlockDirtyBitmap', [m('node', 'str'), m('name', 'str')]),
};

const exportBase = [
  m('type', { enum: ['nbd', 'vhost-user-blk', 'fuse'] }),
  m('id', 'str'),
  m('*fixed-iothread', 'bool'),
  m('*iothread', 'str'),
  m('node-name', 'str'),
  m('*writable', 'bool'),
  m('*writethrough', 'bool'),
];

const exportBranches: Record<string, QapiStruct> = {
  nbd: struct('BlockExportOptionsNbd', [...exportBase, m('*name', 'str'), m('*description', 'str'), m('*bitmaps', { list: bitmapOrStr }), m('*allocation-depth', 'bool')]),
  'vhost-user-blk': struct('BlockExportOptionsVhostUserBlk', [...exportBase, m('addr', socketAddress), m('*logical-block-size', 'size'), m('*num-queues', 'uint32')]),
  fuse: struct('BlockExportOptionsFuse', [
    ...exportBase,
    m('mountpoint', 'str'),
    m('*growable', 'bool'),
    m('*allow-other', { enum: ['off', 'on', 'auto'] }),
  ]),
};

/** BlockExportOptions: the base members, then the branch of `type` (QEMU's flat union). */
export const BLOCK_EXPORT_OPTIONS: QapiCustom = {
  custom: 'BlockExportOptions',
  check(value, path, keyval) {
    if (!isObject(value)) throw genericError(`Invalid parameter type for '${path || 'null'}', expected: object`);
    checkMembers(value, struct('BlockExportOptions', exportBase, true), path, keyval);
    checkMembers(value, exportBranches[value.type as string]!, path, keyval);
  },
};

const ID_RE = /^[A-Za-z][A-Za-z0-9._-]*$/;

const onOff = (v: unknown): boolean => v === true || v === 'on' || v === 'true' || v === 'yes';

/**
 * block-export-add (QEMU's blk_exp_add, then nbd_export_create), for QMP and
 * the daemon's --export. `args` were checked against BLOCK_EXPORT_OPTIONS.
 */
export async function addBlockExport(q: BlockQmp, args: Record<string, unknown>): Promise<void> {
  const st = q.exportState;
  const id = args.id as string;
  if (!ID_RE.test(id)) throw genericError('Invalid block export id');
  if (st.exports.some((e) => e.id === id)) throw genericError(`Block export id '${id}' is already in use`);
  // Other export types need kernel interfaces (FUSE, vhost-user): no driver here.
  if (args.type !== 'nbd') throw genericError('No driver found for the requested export type');
  const nodeName = args['node-name'] as string;
  const node = q.lookupNode(undefined, nodeName);
  const writable = onOff(args.writable);
  if (node.readOnly && writable) throw genericError('Cannot export read-only node as writable');
  if (args.iothread !== undefined) throw genericError(`iothread "${String(args.iothread)}" not found`);
  const perm = Perm.CONSISTENT_READ | (writable ? Perm.WRITE : 0);
  // As QEMU's export: attached sharing everything, then the NBD export takes resize away
  // (it keeps the size it announced), each step with its own conflict.
  const backend = await BlockBackend.attach(q.graph, node, { name: '', perm, shared: PERM_ALL, writeThrough: onOff(args.writethrough) });
  try {
    const server = st.server;
    if (!server) throw genericError('NBD server not running');
    const name = (args.name as string | undefined) ?? nodeName;
    if (new TextEncoder().encode(name).length > NBD_MAX_STRING_SIZE) throw genericError(`export name '${name}' too long`);
    const description = args.description as string | undefined;
    if (description !== undefined && new TextEncoder().encode(description).length > NBD_MAX_STRING_SIZE) throw genericError(`description '${description}' too long`);
    if (server.find(name)) throw genericError(`NBD server already has export named '${name}'`);
    q.graph.setLinkPerms(backend.root, perm, PERM_ALL & ~Perm.RESIZE);
    const bitmaps: (string | BdrvDirtyBitmap)[] = [];
    for (const b of (args.bitmaps as unknown[] | undefined) ?? []) {
      if (typeof b === 'string') bitmaps.push(b);
      else {
        const { node: bn, name: bname } = b as { node: string; name: string };
        let owner;
        try {
          owner = q.lookupNode(bn, bn);
        } catch {
          throw genericError(`Node '${bn}' not found`);
        }
        bitmaps.push(lookupDirtyBitmap(owner, bname));
      }
    }
    const exp = createExport(backend, {
      name,
      ...(description !== undefined ? { description } : {}),
      readOnly: !writable,
      bitmaps,
      allocationDepth: onOff(args['allocation-depth']),
      multiConn: st.maxConnections !== 1,
    });
    server.addExport(exp);
    st.exports.unshift({ id, exp, backend });
  } catch (e) {
    await backend.close();
    throw e;
  }
}

/** The export commands of `q`. */
export function exportCommands(q: BlockQmp): QmpCommand[] {
  const st = q.exportState;
  return [
    {
      name: 'nbd-server-start',
      args: struct('nbd-server-start', nbdServerOptions(socketAddressLegacy)),
      run: async (args) => {
        const a = args.addr as { type: string; data: Record<string, unknown> };
        // QEMU's order: a running server, then the listening socket, then the TLS credentials.
        if (st.server) throw genericError('NBD server already running');
        await st.start(listenAddress(a.type, a.data, true), (args['max-connections'] as number | undefined) ?? 0);
        if (args['tls-creds'] !== undefined) {
          await st.stop(q);
          throw genericError(`No TLS credentials with id '${String(args['tls-creds'])}'`);
        }
      },
    },
    {
      name: 'nbd-server-stop',
      args: null,
      run: () => st.stop(q),
    },
    {
      name: 'block-export-add',
      // The arguments are the options themselves (QAPI 'boxed').
      args: BLOCK_EXPORT_OPTIONS,
      run: (args) => addBlockExport(q, args),
    },
    {
      name: 'block-export-del',
      args: struct('block-export-del', [m('id', 'str'), m('*mode', { enum: ['safe', 'hard'] })]),
      run: async (args) => {
        const id = args.id as string;
        const e = st.exports.find((x) => x.id === id);
        if (!e) throw genericError(`Export '${id}' is not found`);
        if ((args.mode ?? 'safe') === 'safe' && st.server && st.server.clientsOf(e.exp) > 0) {
          throw genericError(`export '${id}' still in use`);
        }
        await st.remove(q, e);
      },
    },
    {
      name: 'query-block-exports',
      args: null,
      run: () => st.exports.map((e) => ({ 'node-name': e.backend.node.nodeName, 'shutting-down': false, type: 'nbd', id: e.id })),
    },
  ];
}

/** Parses the daemon's --nbd-server into what {@link ExportState.start} takes. */
export function nbdServerFromOptions(o: Record<string, unknown>): { addr: NbdListenAddress; maxConnections: number; tlsCreds?: string } {
  const a = o.addr as Record<string, unknown>;
  const max = o['max-connections'];
  return {
    addr: listenAddress(a.type as string, a),
    maxConnections: max === undefined ? 0 : Number(max),
    ...(o['tls-creds'] !== undefined ? { tlsCreds: String(o['tls-creds']) } : {}),
  };
}

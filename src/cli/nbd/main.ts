/**
 * `diskworker nbd`: qemu-nbd 7.2's server mode on the DiskWorker block layer.
 * Listens on a Unix socket (-k) or TCP (-b/-p), opens the image, exports it
 * under -x, and exits after the last client unless -t; SIGTERM / SIGINT /
 * SIGHUP end it cleanly (in-process callers pass an AbortSignal instead).
 */
import { existsSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Server, Socket } from 'node:net';
import { BlockBackend } from '../../core/backend.js';
import { systemErrorText } from '../../core/errors.js';
import { parseKeyValueList } from '../../core/options.js';
import { loadSnapshotTmp, loadSnapshotTmpByIdOrName } from '../../core/snapshot.js';
import { createExport } from '../../export/nbd/export.js';
import { listenNbd, serveSocket } from '../../export/nbd/node-listen.js';
import { NbdServer } from '../../export/nbd/server.js';
import { createCliGraph } from '../node-graph.js';
import { type CliIo, closeWithMessages, fatalExit, errText, parseCacheMode, strerror } from '../common.js';
import { openWithTemporaryOverlay } from '../temp-overlay.js';
import { forkServer, isForkedChild, signalForkParent } from './fork.js';
import { type NbdCliOptions, PROG, parseNbdArgs } from './options.js';
import { NBD_USAGE, NBD_VERSION } from './usage.js';
import { tcpServicePort } from '../../export/nbd/tcp-service.js';

/** In-process control of a running server (tests). */
export interface NbdMainControl {
  /** Aborting it stops the server as SIGTERM does. */
  signal?: AbortSignal;
  /** Called once the server listens, with the address (TCP port resolved). */
  onListening?: (address: string | { host: string; port: number }) => void;
}

/** `diskworker nbd ...`: resolves to the exit code when the server has stopped. */
export async function nbdMain(args: string[], io: CliIo, control: NbdMainControl = {}): Promise<number> {
  const parsed = parseNbdArgs(args, NBD_USAGE, NBD_VERSION);
  if (!('file' in parsed)) {
    if (parsed.stdout) io.stdout(parsed.stdout);
    if (parsed.stderr) io.stderr(parsed.stderr);
    return parsed.code;
  }
  if (parsed.fork && !isForkedChild()) return forkServer(args, io);
  return runServer(parsed, io, control);
}

/** The listening socket, as qemu-nbd opens it before the image. */
async function listen(o: NbdCliOptions, server: NbdServer, accept: (sock: Socket) => void): Promise<Server> {
  if (o.socket !== undefined) {
    // A stale socket file (or any file) at the path is replaced, as QEMU's listener does.
    try {
      unlinkSync(o.socket);
    } catch {
      // nothing there
    }
    try {
      return await listenNbd(server, { path: o.socket }, accept);
    } catch (e) {
      // libuv reports a missing directory as EACCES; bind(2) says ENOENT.
      const missingDir = (e as { code?: unknown }).code === 'EACCES' && !existsSync(dirname(o.socket));
      throw new Error(`Failed to bind socket to ${o.socket}: ${missingDir ? 'No such file or directory' : systemErrorText(e)}`);
    }
  }
  const host = o.bind ?? '0.0.0.0';
  const portText = o.port ?? '10809';
  // A number, or a TCP service name of /etc/services (getaddrinfo's service).
  const port = /^\d+$/.test(portText) ? Number(portText) : tcpServicePort(portText);
  if (port === undefined || port > 65535) {
    throw new Error(`address resolution failed for ${host}:${portText}: Servname not supported for ai_socktype`);
  }
  try {
    return await listenNbd(server, { host, port }, accept);
  } catch (e) {
    throw new Error(`Failed to bind socket: ${systemErrorText(e)}`);
  }
}

async function runServer(o: NbdCliOptions, io: CliIo, control: NbdMainControl): Promise<number> {
  const graph = createCliGraph();
  graph.onNotice = (text) => io.stderr(`${text}\n`);
  graph.onReport = (text) => io.stderr(`${PROG}: ${text}\n`);
  // blkverify's mismatch ends the server, as it ends qemu-nbd.
  graph.onFatal = fatalExit(io);
  const server = new NbdServer();
  let backend: BlockBackend | null = null;
  let net: Server | null = null;
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));

  // qemu-nbd's accounting: at most -e clients at once (0: any number); the rest wait.
  let active = 0;
  const waiting: Socket[] = [];
  // Connections wait in the queue until the export exists, as qemu-nbd starts accepting only then.
  let ready = false;
  const canAccept = (): boolean => ready && (o.shared === 0 || active < o.shared);
  const start = (sock: Socket): void => {
    active++;
    void serveSocket(server, sock);
  };
  server.onConnectionEnd = (end) => {
    active--;
    if (end.error) io.stderr(`${PROG}: ${end.error}\n`);
    if (end.negotiated && active === 0 && waiting.length === 0 && !o.persistent) stop();
    while (waiting.length && canAccept()) start(waiting.shift()!);
  };
  const accept = (sock: Socket): void => {
    if (canAccept()) start(sock);
    else waiting.push(sock);
  };
  const onSignal = (): void => stop();
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
  try {
    try {
      net = await listen(o, server, accept);
    } catch (e) {
      io.stderr(`${PROG}: ${e instanceof Error ? e.message : String(e)}\n`);
      return 1;
    }
    backend = await openImage(o, graph, io);
    if (!backend) return 1;
    const snapshotFailure = await loadSnapshot(o, backend);
    if (snapshotFailure) {
      io.stderr(`${PROG}: ${snapshotFailure}\n`);
      return 1;
    }
    try {
      server.addExport(
        createExport(backend, {
          name: o.exportName,
          ...(o.description !== undefined ? { description: o.description } : {}),
          readOnly: o.readOnly,
          bitmaps: o.bitmaps,
          allocationDepth: o.allocationDepth,
          multiConn: o.shared !== 1,
        }),
      );
    } catch (e) {
      io.stderr(`${PROG}: ${errText(e)}\n`);
      return 1;
    }
    ready = true;
    while (waiting.length && canAccept()) start(waiting.shift()!);
    if (o.pidFile !== undefined) {
      try {
        writeFileSync(o.pidFile, `${process.pid}\n`);
      } catch (e) {
        io.stderr(`${PROG}: Cannot open pid file: ${strerror(e)}\n`);
        return 1;
      }
    }
    if (control.signal) {
      if (control.signal.aborted) stop();
      control.signal.addEventListener('abort', stop, { once: true });
    } else {
      for (const s of signals) process.on(s, onSignal);
    }
    const addr = net.address();
    control.onListening?.(typeof addr === 'string' || addr === null ? (o.socket ?? '') : { host: addr.address, port: addr.port });
    if (isForkedChild()) signalForkParent();
    await stopped;
    return 0;
  } finally {
    if (!control.signal) for (const s of signals) process.off(s, onSignal);
    for (const sock of waiting) sock.destroy();
    server.close();
    if (net) await new Promise<void>((r) => net!.close(() => r()));
    if (backend) for (const line of await closeWithMessages(backend)) io.stderr(`${PROG}: ${line}\n`);
    await graph.closeAll().catch(() => undefined);
    if (o.socket !== undefined && net) {
      try {
        unlinkSync(o.socket);
      } catch {
        // already gone
      }
    }
  }
}

/** Opens the image as qemu-nbd does (writeback cache, discard=ignore unless --discard); null after printing why not. */
async function openImage(o: NbdCliOptions, graph: ReturnType<typeof createCliGraph>, io: CliIo): Promise<BlockBackend | null> {
  let spec: Record<string, unknown>;
  const cache = parseCacheMode(o.cache)!;
  try {
    spec = o.imageOpts ? parseKeyValueList(o.file, 'file') : { filename: o.file };
    if (!o.imageOpts) graph.checkProtocolName(o.file);
    if (o.format !== undefined) spec['driver'] = o.format;
    spec['cache.direct'] ??= cache.direct;
    spec['cache.no-flush'] ??= cache.noFlush;
    spec['discard'] ??= o.discard;
    spec['detect-zeroes'] ??= o.detectZeroes;
    if (o.offset) spec = { driver: 'raw', offset: o.offset, file: spec, discard: o.discard, 'detect-zeroes': o.detectZeroes };
    const flags = { readOnly: o.readOnly };
    return o.snapshot && !o.readOnly
      ? await openWithTemporaryOverlay(graph, spec, flags, !cache.writeback, 'qemu-nbd')
      : await BlockBackend.open(graph, spec, flags, { name: '', writeThrough: !cache.writeback });
  } catch (e) {
    io.stderr(`${PROG}: Failed to blk_new_open '${o.file}': ${errText(e)}\n`);
    return null;
  }
}

/** -l: the snapshot loads into the (read-only) format node; "Failed to load snapshot: ..." otherwise. */
async function loadSnapshot(o: NbdCliOptions, backend: BlockBackend): Promise<string | null> {
  const p = o.loadSnapshot;
  if (!p) return null;
  try {
    if (p.byIdOrName !== undefined) await loadSnapshotTmpByIdOrName(backend.node, p.byIdOrName);
    else await loadSnapshotTmp(backend.node, p.id, p.name);
    return null;
  } catch (e) {
    return `Failed to load snapshot: ${errText(e)}`;
  }
}

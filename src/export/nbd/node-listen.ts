/**
 * Node sockets for the NBD server: a net.Server on a Unix socket or a TCP
 * port, each accepted socket handed to {@link NbdServer.connect}.
 */
import type { Server, Socket } from 'node:net';
import type { NbdServer } from './server.js';
import type { NbdTransport } from './transport.js';
import { systemErrorText } from '../../core/errors.js';

/** QEMU's wording of a failed socket write. */
function writeFailure(e: unknown): Error {
  const code = (e as { code?: unknown }).code;
  const text = code === 'ECONNRESET' ? 'Connection reset by peer' : code === 'EPIPE' || code === undefined ? 'Broken pipe' : String(code);
  return new Error(`Unable to write to socket: ${text}`);
}

/** A net.Socket as an NBD transport (writes wait for the socket to drain; a write to a closed peer fails). */
export function socketTransport(sock: Socket): NbdTransport {
  const write = (data: Uint8Array): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      if (sock.destroyed || !sock.writable) return reject(writeFailure(undefined));
      sock.write(data, (err) => (err ? reject(writeFailure(err)) : resolve()));
    });
  return {
    write,
    writeParts: (parts) => {
      // Corked, the parts leave in one writev.
      sock.cork();
      const sent = Promise.all(parts.map(write));
      sock.uncork();
      return sent.then(() => undefined);
    },
    allocate: (length) => Buffer.allocUnsafeSlow(length),
    close: () => {
      if (!sock.destroyed) sock.end(() => sock.destroy());
      // Give a peer that stopped reading no chance to keep the socket open.
      setTimeout(() => sock.destroy(), 1000).unref();
    },
  };
}

/** Serves one socket until either side closes it. */
export function serveSocket(server: NbdServer, sock: Socket): Promise<void> {
  const session = server.connect(socketTransport(sock));
  sock.on('data', (chunk: Buffer) => session.receive(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
  sock.on('end', () => session.end());
  sock.on('close', () => session.end());
  sock.on('error', () => session.end());
  return session.finished;
}

/** Where to listen: a Unix socket path, or a TCP host and port (0: any free port). */
export type ListenAddress = { path: string } | { host: string; port: number; service?: string };

/**
 * Listens and serves every accepted socket; resolves once listening. With
 * `onSocket`, accepted sockets go there instead (the caller decides when to
 * serve them, e.g. to limit the number of clients).
 */
export async function listenNbd(server: NbdServer, addr: ListenAddress, onSocket?: (sock: Socket) => void): Promise<Server> {
  // Loaded here, not up front: every CLI command would pay for it.
  const { createServer } = await import('node:net');
  const net = createServer((sock) => {
    if (onSocket) onSocket(sock);
    else void serveSocket(server, sock);
  });
  return new Promise((resolve, reject) => {
    net.once('error', reject);
    const done = (): void => {
      net.off('error', reject);
      resolve(net);
    };
    if ('path' in addr) net.listen(addr.path, done);
    else net.listen(addr.port, addr.host, done);
  });
}

/**
 * Listens for a QMP-started NBD server (the daemon's nbd-server-start /
 * --nbd-server): a stale Unix socket file is replaced as QEMU does, at most
 * `maxConnections` clients are served at once (0: any number; the others
 * wait), and a failure carries QEMU's message.
 */
export async function listenNbdServer(server: NbdServer, addr: ListenAddress, maxConnections: number): Promise<{ close(): Promise<void> }> {
  let active = 0;
  const waiting: Socket[] = [];
  const start = (sock: Socket): void => {
    active++;
    void serveSocket(server, sock).finally(() => {
      active--;
      while (waiting.length > 0 && (maxConnections === 0 || active < maxConnections)) start(waiting.shift()!);
    });
  };
  if ('path' in addr) {
    const { rmSync } = await import('node:fs');
    try {
      rmSync(addr.path, { force: true });
    } catch {
      // bind reports what is wrong with the path
    }
  }
  let net: Server;
  try {
    net = await listenNbd(server, addr, (sock) => {
      if (maxConnections === 0 || active < maxConnections) start(sock);
      else waiting.push(sock);
    });
  } catch (e) {
    let text = systemErrorText(e);
    if ('path' in addr && (e as { code?: unknown }).code === 'EACCES') {
      // libuv reports a missing directory as EACCES; bind(2) says ENOENT, as QEMU prints.
      const { existsSync } = await import('node:fs');
      const { dirname } = await import('node:path');
      if (!existsSync(dirname(addr.path))) text = 'No such file or directory';
    }
    const code = (e as { code?: unknown }).code;
    if ('host' in addr && (code === 'ENOTFOUND' || code === 'EAI_AGAIN')) {
      // The name lookup failed (QEMU's getaddrinfo error, in glibc's words).
      const why = code === 'ENOTFOUND' ? 'Name or service not known' : 'Temporary failure in name resolution';
      throw new Error(`address resolution failed for ${addr.host}:${addr.service ?? addr.port}: ${why}`);
    }
    const where = 'path' in addr ? ` to ${addr.path}` : '';
    throw new Error(`Failed to bind socket${where}: ${text}`);
  }
  return {
    close: async () => {
      for (const s of waiting.splice(0)) s.destroy();
      await new Promise<void>((resolve) => net.close(() => resolve()));
      if ('path' in addr) {
        const { rmSync } = await import('node:fs');
        rmSync(addr.path, { force: true });
      }
    },
  };
}

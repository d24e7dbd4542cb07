/**
 * Node sockets for the NBD server: a net.Server on a Unix socket or a TCP
 * port, each accepted socket handed to {@link NbdServer.connect}.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { NbdServer } from './server.js';
import type { NbdTransport } from './transport.js';

/** QEMU's wording of a failed socket write. */
function writeFailure(e: unknown): Error {
  const code = (e as { code?: unknown }).code;
  const text = code === 'ECONNRESET' ? 'Connection reset by peer' : code === 'EPIPE' || code === undefined ? 'Broken pipe' : String(code);
  return new Error(`Unable to write to socket: ${text}`);
}

/** A net.Socket as an NBD transport (writes wait for the socket to drain; a write to a closed peer fails). */
export function socketTransport(sock: Socket): NbdTransport {
  return {
    write: (data) =>
      new Promise<void>((resolve, reject) => {
        if (sock.destroyed || !sock.writable) return reject(writeFailure(undefined));
        sock.write(data, (err) => (err ? reject(writeFailure(err)) : resolve()));
      }),
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
export type ListenAddress = { path: string } | { host: string; port: number };

/**
 * Listens and serves every accepted socket; resolves once listening. With
 * `onSocket`, accepted sockets go there instead (the caller decides when to
 * serve them, e.g. to limit the number of clients).
 */
export function listenNbd(server: NbdServer, addr: ListenAddress, onSocket?: (sock: Socket) => void): Promise<Server> {
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

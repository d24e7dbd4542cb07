/**
 * The QMP monitors of the daemon: one Unix socket server per --chardev with
 * a --monitor on it. Every connection gets the greeting and its own
 * {@link QmpSession}; requests of all clients run one at a time (the graph
 * changes under them), each client's replies in its order; events go to
 * every client in command mode.
 */
import { unlinkSync } from 'node:fs';
import type net from 'node:net';
import type { BlockQmp } from '../../qmp/block-qmp.js';
import { errorReply } from '../../qmp/dispatcher.js';
import { QmpJsonStream } from '../../qmp/json.js';
import { QmpSession } from '../../qmp/session.js';
import { qmpLine } from '../../qmp/wire.js';

/** One listening monitor socket. */
export class QmpSocketServer {
  /** Made by {@link listen}: node:net is loaded only by a daemon that listens (it costs every CLI command 1.6 MB and start-up time when loaded up front). */
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  constructor(
    private readonly q: BlockQmp,
    readonly path: string,
    private readonly pretty: boolean,
    /** Runs a request after the ones before it (all monitors share it). */
    private readonly serial: <T>(fn: () => Promise<T>) => Promise<T>,
    /** Settles when the daemon has started: clients are served from then on, as QEMU's main loop. */
    private readonly ready: Promise<unknown>,
  ) {}

  /** Listens on the path (an old socket file there is replaced, as QEMU does). */
  async listen(): Promise<void> {
    const { createServer } = await import('node:net');
    try {
      unlinkSync(this.path);
    } catch {
      // nothing there
    }
    const server = createServer((socket) => this.serve(socket));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  private serve(socket: net.Socket): void {
    this.sockets.add(socket);
    // A socket monitor offers out-of-band execution, as qemu-storage-daemon's do.
    const session = new QmpSession(this.q, true);
    const send = (value: unknown) => {
      if (!socket.destroyed) socket.write(qmpLine(value, this.pretty));
    };
    const stop = this.q.events.on((e) => {
      if (session.mode === 'command') send(e);
    });
    // The greeting and every request wait until the command line has been processed.
    let chain = this.ready.then(() => send(session.greeting()));
    const stream = new QmpJsonStream((value, error) => {
      if (error) {
        chain = chain.then(() => send(errorReply(error)));
      } else if (QmpSession.isOob(value)) {
        // Out of band: answered as soon as the command line has been processed, ahead of queued requests.
        void this.ready.then(() => session.handleValue(value).then(send));
      } else {
        chain = chain.then(() => this.serial(() => session.handleValue(value)).then(send));
      }
    });
    socket.on('data', (chunk: Buffer) => stream.push(chunk));
    const close = () => {
      stop();
      this.sockets.delete(socket);
    };
    socket.on('close', close);
    socket.on('error', () => socket.destroy());
  }

  /** Stops listening, ends the connections and removes the socket file. */
  async close(): Promise<void> {
    for (const s of this.sockets) s.end();
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

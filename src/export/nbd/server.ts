/**
 * An NBD server: a set of exports and the connections to them. Transport
 * independent (see transport.ts); node-listen.ts feeds it sockets.
 */
import { NbdClient, NbdConnectionError } from './client.js';
import { type NbdExport, releaseExport } from './export.js';
import { negotiate, type ExportDirectory } from './handshake.js';
import { serveTransmission } from './transmission.js';
import { PeerClosed, type NbdTransport } from './transport.js';

/** The server's side of one connection: the transport pushes what it receives. */
export interface NbdSession {
  /** Bytes from the client. */
  receive(chunk: Uint8Array): void;
  /** The client closed its side (or the transport failed). */
  end(): void;
  /** Resolves when the connection is over (never rejects). */
  readonly finished: Promise<void>;
}

/** How a connection ended, for the server's owner (qemu-nbd's exit-after-last-client). */
export interface NbdConnectionEnd {
  /** Whether the client reached the transmission phase. */
  negotiated: boolean;
  /**
   * Why the server dropped the connection, when it did, as qemu-nbd prints it
   * ("option negotiation failed: ...", "Disconnect client, due to: ...").
   */
  error?: string;
}

export class NbdServer implements ExportDirectory {
  private readonly exports = new Map<string, NbdExport>();
  private readonly sessions = new Set<NbdClient>();
  /** Called after each connection ended. */
  onConnectionEnd: ((end: NbdConnectionEnd) => void) | null = null;

  /** Adds an export (its name must be new). */
  addExport(exp: NbdExport): void {
    if (this.exports.has(exp.name)) throw new Error(`NBD server already has export named '${exp.name}'`);
    this.exports.set(exp.name, exp);
  }

  find(name: string): NbdExport | undefined {
    return this.exports.get(name);
  }

  list(): readonly NbdExport[] {
    return [...this.exports.values()];
  }

  /** Open connections. */
  get connections(): number {
    return this.sessions.size;
  }

  /** Connections in transmission with `exp`. */
  clientsOf(exp: NbdExport): number {
    let n = 0;
    for (const c of this.sessions) if (c.exp === exp) n++;
    return n;
  }

  /**
   * Takes an export away: no new client can select it, its bitmaps are
   * released, and the connections using it are dropped (QEMU's hard removal;
   * a caller wanting the safe one checks {@link clientsOf} first).
   */
  removeExport(exp: NbdExport): void {
    if (this.exports.get(exp.name) !== exp) return;
    this.exports.delete(exp.name);
    for (const c of this.sessions) if (c.exp === exp) c.close();
    releaseExport(exp);
  }

  /** Starts serving a new connection over `transport`. */
  connect(transport: NbdTransport): NbdSession {
    const client = new NbdClient(transport);
    this.sessions.add(client);
    const finished = this.run(client);
    return {
      receive: (chunk) => client.input.push(chunk),
      end: () => client.input.end(),
      finished,
    };
  }

  private async run(client: NbdClient): Promise<void> {
    const end: NbdConnectionEnd = { negotiated: false };
    try {
      let exp: NbdExport | null;
      try {
        exp = await negotiate(client, this);
      } catch (e) {
        if (e instanceof PeerClosed) throw e;
        throw new NbdConnectionError(`option negotiation failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (exp) {
        end.negotiated = true;
        client.exp = exp;
        const why = await serveTransmission(client, exp);
        if (why !== undefined) end.error = `Disconnect client, due to: ${why}`;
      }
    } catch (e) {
      if (!(e instanceof PeerClosed)) end.error = e instanceof Error ? e.message : String(e);
    } finally {
      client.close();
      this.sessions.delete(client);
      this.onConnectionEnd?.(end);
    }
  }

  /** Drops every connection and releases the exports' bitmaps. */
  close(): void {
    for (const c of this.sessions) c.close();
    for (const exp of this.exports.values()) releaseExport(exp);
    this.exports.clear();
  }
}

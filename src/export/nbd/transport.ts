/**
 * What the NBD server needs from a connection: a byte stream in each
 * direction. No Node or DOM imports, so a page or worker can carry NBD over
 * a WebSocket or a MessagePort; node-listen.ts adapts net.Socket.
 */
import { BlockError } from '../../core/errors.js';

/** One client connection, as the server sees it. */
export interface NbdTransport {
  /**
   * Sends bytes; resolves when the transport accepted them (honouring
   * backpressure). Rejects or resolves quietly once the peer is gone.
   */
  write(data: Uint8Array): Promise<void>;
  /**
   * Sends several buffers as one message, in one system call where the
   * transport can (a reply's header and its data). Optional: {@link write}
   * per part otherwise.
   */
  writeParts?(parts: readonly Uint8Array[]): Promise<void>;
  /** Closes the connection (idempotent). */
  close(): void;
  /**
   * A buffer of `length` bytes for a reply the server fills completely
   * before sending (READ data), without the zero fill a fresh Uint8Array
   * costs (Node: Buffer.allocUnsafeSlow). Optional: a plain Uint8Array
   * otherwise.
   */
  allocate?(length: number): Uint8Array;
}

/** The peer closed the connection: the end of input, not a failure to report. */
export class PeerClosed extends Error {
  constructor(
    /** Whether part of the awaited bytes had arrived (a message cut short). */
    readonly partial: boolean,
  ) {
    super('Connection closed by the client');
  }
}

/**
 * Incoming bytes as an exact-length reader: the transport pushes chunks as
 * they arrive ({@link push}, {@link end}); the protocol code awaits
 * {@link read} for the number of bytes it expects.
 */
export class ByteQueue {
  private chunks: Uint8Array[] = [];
  private queued = 0;
  private ended = false;
  private waiter: (() => void) | null = null;

  /** Bytes queued and not yet read. */
  get available(): number {
    return this.queued;
  }

  /** Appends bytes from the peer. */
  push(chunk: Uint8Array): void {
    if (this.ended || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.queued += chunk.length;
    this.wake();
  }

  /** The peer closed its side: reads that cannot be satisfied reject with {@link PeerClosed}. */
  end(): void {
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Reads exactly `n` bytes (a fresh buffer). */
  async read(n: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(n) || n < 0) throw new BlockError('EINVAL', `Cannot read ${n} bytes from an NBD connection`);
    const out = new Uint8Array(n);
    await this.readInto(out);
    return out;
  }

  /** Reads exactly `out.length` bytes into `out` (a READ reply's data straight into the caller's buffer). */
  async readInto(out: Uint8Array): Promise<void> {
    const n = out.length;
    while (this.queued < n) {
      if (this.ended) throw new PeerClosed(this.queued > 0);
      await new Promise<void>((r) => (this.waiter = r));
    }
    let filled = 0;
    while (filled < n) {
      const head = this.chunks[0]!;
      const take = Math.min(head.length, n - filled);
      out.set(head.subarray(0, take), filled);
      filled += take;
      if (take === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(take);
    }
    this.queued -= n;
  }

  /** Reads and throws away `n` bytes (an option payload the server does not parse). */
  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      const step = Math.min(left, 1 << 20);
      await this.read(step);
      left -= step;
    }
  }
}

/**
 * Messages over a transport, one after another: the parts of one message
 * (a header and its data) never have another message between them, and
 * leave in one system call where the transport can.
 */
export class MessageSender {
  private tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly transport: NbdTransport,
    /** Once true, messages not yet sent are dropped. */
    private readonly dropped: () => boolean = () => false,
  ) {}

  send(parts: readonly Uint8Array[]): Promise<void> {
    const run = async (): Promise<void> => {
      if (parts.length > 1 && this.transport.writeParts) {
        if (!this.dropped()) await this.transport.writeParts(parts.filter((p) => p.length > 0));
        return;
      }
      for (const p of parts) {
        if (this.dropped()) return;
        if (p.length) await this.transport.write(p);
      }
    };
    const next = this.tail.then(run, run);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

/** Big-endian field writer for replies. */
export class WireWriter {
  private readonly view: DataView;
  readonly bytes: Uint8Array;
  private pos = 0;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }
  u16(v: number): this {
    this.view.setUint16(this.pos, v);
    this.pos += 2;
    return this;
  }
  u32(v: number): this {
    this.view.setUint32(this.pos, v >>> 0);
    this.pos += 4;
    return this;
  }
  u64(v: number | bigint): this {
    this.view.setBigUint64(this.pos, BigInt(v));
    this.pos += 8;
    return this;
  }
  raw(b: Uint8Array): this {
    this.bytes.set(b, this.pos);
    this.pos += b.length;
    return this;
  }
}

/** Big-endian reads from a received buffer. */
export function be32(b: Uint8Array, at = 0): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at);
}
export function be16(b: Uint8Array, at = 0): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(at);
}
export function be64(b: Uint8Array, at = 0): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(at);
}

/**
 * The page side of the read port (read-port-server.ts): reads whose buffer
 * is transferred to the worker and back (or shared). The reads submitted in
 * one tick go as one message and come back in one (see the server for why).
 */
import { BlockError } from '../core/errors.js';
import { deserializeBlockError } from '../client/transfer.js';
import type { ReadPortAnswer, ReadPortRequest } from './read-port-server.js';

/** Whether an empty ArrayBuffer is a detached one (a view of it cannot be made then). */
function isDetached(b: ArrayBufferLike): boolean {
  try {
    new Uint8Array(b);
    return false;
  } catch {
    return true;
  }
}

/** Reads over one read port. */
export class PortReader {
  private readonly waiting = new Map<number, { resolve: (b: Uint8Array) => void; reject: (e: unknown) => void; buf: Uint8Array }>();
  private nextId = 0;
  private readonly port: Promise<MessagePort>;
  /** The port once it is there (reads then skip a tick). */
  private ready: MessagePort | null = null;
  /** Reads submitted this tick, sent together at its end. */
  private batch: ReadPortRequest[] = [];
  private moving: ArrayBuffer[] = [];
  /** The error reads fail with once the port is closed. */
  private closedWith: { error: unknown } | null = null;

  /** `port` is the page's end, as the worker's readPort() returns it. */
  constructor(port: Promise<MessagePort>) {
    this.port = port.then((p) => {
      p.onmessage = (ev: MessageEvent<ReadPortAnswer[]>) => {
        for (const a of ev.data) this.answer(a);
      };
      this.ready = p;
      return p;
    });
  }

  private answer(a: ReadPortAnswer): void {
    const w = this.waiting.get(a.id);
    if (!w) return;
    this.waiting.delete(a.id);
    if (a.error) w.reject(deserializeBlockError(a.error));
    else w.resolve(a.buf ?? w.buf);
  }

  /** Closes the port; reads still waiting fail with `error`. */
  close(error: unknown): void {
    this.closedWith = { error };
    void this.port.then((p) => p.close(), () => undefined);
    for (const w of this.waiting.values()) w.reject(error);
    this.waiting.clear();
    this.batch = [];
    this.moving = [];
  }

  /**
   * Reads `buf.length` bytes at `offset` into `buf`. A shared buffer is filled
   * in place; any other is transferred (detached when this tick's reads are
   * sent) and comes back filled as the returned array.
   */
  read(offset: number, buf: Uint8Array, shared: boolean): Promise<Uint8Array> {
    if (this.closedWith) return Promise.reject(this.closedWith.error);
    if (!shared && buf.buffer.byteLength === 0) {
      // Nothing to read; a detached buffer (already transferred) is the caller's mistake.
      return isDetached(buf.buffer) ? Promise.reject(new BlockError('EINVAL', `The buffer of a read at ${offset} is detached (transferred away)`, { offset })) : Promise.resolve(buf);
    }
    if (!shared && this.moving.includes(buf.buffer as ArrayBuffer)) {
      return Promise.reject(new BlockError('EINVAL', `The buffer of a read at ${offset} is already being read into`, { offset }));
    }
    const id = this.nextId++;
    const answer = new Promise<Uint8Array>((resolve, reject) => this.waiting.set(id, { resolve, reject, buf }));
    if (this.batch.length === 0) {
      // After the reads that callers resolved by the same answer have queued theirs.
      if (this.ready) queueMicrotask(() => this.send());
      else void this.port.then(() => this.send(), (e: unknown) => this.fail(this.batch, e));
    }
    this.batch.push({ id, offset, buf });
    if (!shared) this.moving.push(buf.buffer as ArrayBuffer);
    return answer;
  }

  private send(): void {
    const port = this.ready;
    if (!port || this.batch.length === 0) return;
    const reads = this.batch;
    const moving = this.moving;
    this.batch = [];
    this.moving = [];
    try {
      port.postMessage(reads, moving);
    } catch (e) {
      // A buffer that cannot be transferred (detached): the reads of this message fail.
      this.fail(reads, new BlockError('EINVAL', `Cannot send the read buffers: ${e instanceof Error ? e.message : String(e)}`));
    }
  }

  private fail(reads: ReadPortRequest[], error: unknown): void {
    for (const r of reads) {
      this.waiting.get(r.id)?.reject(error);
      this.waiting.delete(r.id);
    }
    if (reads === this.batch) {
      this.batch = [];
      this.moving = [];
    }
  }
}

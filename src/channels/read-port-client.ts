/**
 * The page side of the read port (read-port-server.ts): reads whose buffer
 * is transferred to the worker and back (or shared), one message each way.
 */
import { deserializeBlockError } from '../client/transfer.js';
import type { ReadPortAnswer, ReadPortRequest } from './read-port-server.js';

/** Reads over one read port. */
export class PortReader {
  private readonly waiting = new Map<number, { resolve: (b: Uint8Array) => void; reject: (e: unknown) => void; buf: Uint8Array }>();
  private nextId = 0;
  private readonly port: Promise<MessagePort>;

  /** `port` is the page's end, as the worker's readPort() returns it. */
  constructor(port: Promise<MessagePort>) {
    this.port = port.then((p) => {
      p.onmessage = (ev: MessageEvent<ReadPortAnswer>) => this.answer(ev.data);
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
    void this.port.then((p) => p.close(), () => undefined);
    for (const w of this.waiting.values()) w.reject(error);
    this.waiting.clear();
  }

  /**
   * Reads `buf.length` bytes at `offset` into `buf`. A shared buffer is filled
   * in place; any other is transferred (detached here) and comes back filled
   * as the returned array.
   */
  async read(offset: number, buf: Uint8Array, shared: boolean): Promise<Uint8Array> {
    const port = await this.port;
    const id = this.nextId++;
    return new Promise<Uint8Array>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, buf });
      const msg: ReadPortRequest = { id, offset, buf };
      if (shared) port.postMessage(msg);
      else port.postMessage(msg, [buf.buffer as ArrayBuffer]);
    });
  }
}

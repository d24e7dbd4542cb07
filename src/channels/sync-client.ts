/**
 * The synchronous channel: for emulators that must read a disk synchronously
 * inside their own worker.
 *
 * The block worker serves a SharedArrayBuffer (DiskHandle.syncChannel()) — a
 * header of Int32 control words ({@link SyncSlot}) and a data area. Any other
 * worker that gets the buffer builds a {@link SyncDiskClient} and calls
 * read / write / flush, which block in Atomics.wait until the block worker has
 * answered. Needs cross-origin isolation (COOP + COEP) for SharedArrayBuffer;
 * Atomics.wait is not allowed on a page's main thread, so use it in a worker.
 * One client per channel; requests larger than the data area are split.
 */
import { BlockError, codeOfErrno } from '../core/errors.js';
import { decodeErrorText } from './error-text.js';
import { SYNC_HEADER_BYTES, SyncOp, SyncSlot, SyncState } from './sync-layout.js';

/** Decodes a failed request into a BlockError. */
function channelError(ctl: Int32Array, data: Uint8Array, result: number, offset: number): BlockError {
  const n = ctl[SyncSlot.MESSAGE_LENGTH]!;
  const text = new TextDecoder().decode(data.slice(0, n));
  const code = codeOfErrno(-result);
  return decodeErrorText(code, text, { offset });
}

type WaitAsync = (a: Int32Array, i: number, v: number, t?: number) => { async: boolean; value: Promise<string> | string };

/**
 * The same channel used asynchronously from a page's main thread (where
 * Atomics.wait is not allowed): requests are signalled with Atomics.notify and
 * answers awaited with Atomics.waitAsync, with no postMessage at all. Reads
 * land in the channel's shared data area and are returned as a view of it,
 * valid until the next request. One request at a time (calls are queued);
 * to stream a disk into a page, Disk.bulkReader (ring.ts) is faster.
 */
export class SharedDiskReader {
  private readonly ctl: Int32Array;
  private readonly data: Uint8Array;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(buffer: SharedArrayBuffer) {
    this.ctl = new Int32Array(buffer, 0, SYNC_HEADER_BYTES / 4);
    this.data = new Uint8Array(buffer, SYNC_HEADER_BYTES);
  }

  /** Largest read one request moves. */
  get maxTransfer(): number {
    return this.data.length;
  }

  private async call(op: number, offset: number, len: number): Promise<void> {
    const c = this.ctl;
    if (Atomics.load(c, SyncSlot.STATE) === SyncState.CLOSED) throw new BlockError('ENOMEDIUM', 'The shared channel is closed');
    c[SyncSlot.OP] = op;
    c[SyncSlot.LENGTH] = len;
    c[SyncSlot.OFFSET_LO] = offset % 0x1_0000_0000;
    c[SyncSlot.OFFSET_HI] = Math.floor(offset / 0x1_0000_0000);
    c[SyncSlot.RESULT] = 0;
    Atomics.store(c, SyncSlot.STATE, SyncState.REQUEST);
    Atomics.notify(c, SyncSlot.STATE);
    const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;
    for (;;) {
      const st = Atomics.load(c, SyncSlot.STATE);
      if (st === SyncState.DONE) break;
      if (st === SyncState.CLOSED) throw new BlockError('ENOMEDIUM', 'The shared channel was closed during a request');
      const w = waitAsync(c, SyncSlot.STATE, st);
      if (w.async) await w.value;
    }
    const result = c[SyncSlot.RESULT]!;
    if (result < 0) {
      const err = channelError(c, this.data, result, offset);
      Atomics.store(c, SyncSlot.STATE, SyncState.IDLE);
      throw err;
    }
  }

  /**
   * Reads `length` (at most maxTransfer) bytes at `offset`; the answer is a
   * view of the shared data area, overwritten by the next request.
   */
  read(offset: number, length: number): Promise<Uint8Array> {
    if (length > this.data.length) {
      return Promise.reject(new BlockError('EINVAL', `Read of ${length} bytes exceeds the shared channel's ${this.data.length}`, { offset }));
    }
    const run = this.queue.then(async () => {
      await this.call(SyncOp.READ, offset, length);
      Atomics.store(this.ctl, SyncSlot.STATE, SyncState.IDLE);
      return this.data.subarray(0, length);
    });
    this.queue = run.catch(() => undefined);
    return run;
  }
}

export class SyncDiskClient {
  private readonly ctl: Int32Array;
  private readonly data: Uint8Array;

  constructor(buffer: SharedArrayBuffer, private readonly timeoutMs = 60_000) {
    this.ctl = new Int32Array(buffer, 0, SYNC_HEADER_BYTES / 4);
    this.data = new Uint8Array(buffer, SYNC_HEADER_BYTES);
  }

  /** Largest piece one round trip moves. */
  get maxTransfer(): number {
    return this.data.length;
  }

  private call(op: number, offset: number, len: number): void {
    const c = this.ctl;
    if (Atomics.load(c, SyncSlot.STATE) === SyncState.CLOSED) throw new BlockError('ENOMEDIUM', 'The synchronous channel is closed');
    c[SyncSlot.OP] = op;
    c[SyncSlot.LENGTH] = len;
    c[SyncSlot.OFFSET_LO] = offset % 0x1_0000_0000;
    c[SyncSlot.OFFSET_HI] = Math.floor(offset / 0x1_0000_0000);
    c[SyncSlot.RESULT] = 0;
    Atomics.store(c, SyncSlot.STATE, SyncState.REQUEST);
    Atomics.notify(c, SyncSlot.STATE);
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const st = Atomics.load(c, SyncSlot.STATE);
      if (st === SyncState.DONE) break;
      if (st === SyncState.CLOSED) throw new BlockError('ENOMEDIUM', 'The synchronous channel was closed during a request');
      const left = deadline - Date.now();
      if (left <= 0) throw new BlockError('EIO', `No answer on the synchronous channel within ${this.timeoutMs} ms`, { offset });
      Atomics.wait(c, SyncSlot.STATE, st, left);
    }
    const result = c[SyncSlot.RESULT]!;
    if (result < 0) {
      const err = channelError(c, this.data, result, offset);
      Atomics.store(c, SyncSlot.STATE, SyncState.IDLE);
      throw err;
    }
  }

  private done(): void {
    Atomics.store(this.ctl, SyncSlot.STATE, SyncState.IDLE);
  }

  /** Reads `buf.length` bytes at `offset`, blocking. */
  read(offset: number, buf: Uint8Array): void {
    for (let done = 0; done < buf.length; ) {
      const n = Math.min(this.data.length, buf.length - done);
      this.call(SyncOp.READ, offset + done, n);
      buf.set(this.data.subarray(0, n), done);
      this.done();
      done += n;
    }
  }

  /** Writes `data` at `offset`, blocking. */
  write(offset: number, data: Uint8Array): void {
    for (let done = 0; done < data.length; ) {
      const n = Math.min(this.data.length, data.length - done);
      this.data.set(data.subarray(done, done + n));
      this.call(SyncOp.WRITE, offset + done, n);
      this.done();
      done += n;
    }
  }

  writeZeroes(offset: number, bytes: number): void {
    for (let done = 0; done < bytes; ) {
      const n = Math.min(1 << 30, bytes - done);
      this.call(SyncOp.WRITE_ZEROES, offset + done, n);
      this.done();
      done += n;
    }
  }

  /** Flushes, blocking. */
  flush(): void {
    this.call(SyncOp.FLUSH, 0, 0);
    this.done();
  }
}

/**
 * The bulk-read ring: the fastest way to stream a disk into a page.
 *
 * A SharedArrayBuffer shared by the page and the block worker holds control
 * words, `slots` request descriptors and `slots` data areas of `slotBytes`.
 * The page writes a request into the next free slot and bumps SUBMIT; the
 * worker ({@link RingServer}) serves requests in order, straight into the
 * slot's data area, and bumps DONE. Nothing is posted, copied or transferred;
 * the page only wakes (Atomics.waitAsync) when it needs an answer that is not
 * there yet, and the worker serves the requests already queued back to back
 * without returning to its event loop in between (up to a bound), so with two
 * or more slots the worker reads while the page consumes.
 *
 * Counters wrap at 2^31; slot of request `seq` = seq % slots (slots is a power
 * of two, so wrapping keeps the slot sequence). Needs cross-origin isolation.
 */
import type { BlockBackend } from '../core/backend.js';
import { BlockError, toBlockError, type ErrorCode } from '../core/errors.js';
import { decodeErrorText, encodeErrorText } from './error-text.js';

/** Control words (Int32 indexes). */
export const RingSlot = {
  /** Requests submitted so far (the page writes it). */
  SUBMIT: 0,
  /** Requests completed so far (the worker writes it). */
  DONE: 1,
  /** 0 open, 3 closed. */
  STATE: 2,
  SLOTS: 3,
  SLOT_BYTES: 4,
  /** The DONE value the page waits for: the worker wakes it only then. */
  WANT: 5,
  /** First descriptor word; each descriptor has {@link DESC_WORDS} words. */
  DESC: 16,
} as const;
/** Descriptor fields (offsets within a descriptor). */
const D_OFFSET_LO = 0;
const D_OFFSET_HI = 1;
const D_LENGTH = 2;
const D_RESULT = 3;
const D_MESSAGE_LENGTH = 4;
const DESC_WORDS = 8;
const CLOSED = 3;
const MASK = 0x7fffffff;
/** Requests served back to back before the worker lets its other tasks run. */
const BURST = 32;

/** Bytes before the first data area. */
function headerBytes(slots: number): number {
  return Math.ceil(((RingSlot.DESC + slots * DESC_WORDS) * 4) / 64) * 64;
}

type WaitAsync = (a: Int32Array, i: number, v: number, t?: number) => { async: boolean; value: Promise<string> | string };
const waitAsync = (): WaitAsync => (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

const ERRNO_CODES: Record<number, ErrorCode> = {
  1: 'EPERM', 2: 'ENOENT', 5: 'EIO', 13: 'EACCES', 16: 'EBUSY', 17: 'EEXIST', 22: 'EINVAL',
  27: 'EFBIG', 28: 'ENOSPC', 30: 'EROFS', 95: 'ENOTSUP', 123: 'ENOMEDIUM', 125: 'ECANCELED',
};

/** Checks the ring geometry (worker side, before allocating). */
export function checkRingGeometry(slots: number, slotBytes: number): void {
  if (!Number.isInteger(slots) || slots < 1 || slots > 64 || (slots & (slots - 1)) !== 0) {
    throw new BlockError('EINVAL', `Bulk reader slots must be a power of two from 1 to 64, got ${slots}`);
  }
  if (!Number.isSafeInteger(slotBytes) || slotBytes < 4096 || slotBytes > 64 << 20 || slots * slotBytes > 256 << 20) {
    throw new BlockError('EINVAL', `Bulk reader slots must be 4 KiB..64 MiB each and 256 MiB in all, got ${slots} of ${slotBytes}`);
  }
}

/** The worker side: serves the requests of one ring from a BlockBackend. */
export class RingServer {
  readonly buffer: SharedArrayBuffer;
  private readonly ctl: Int32Array;
  private readonly views: Uint8Array[];
  private stopped = false;
  private readonly yielder = new MessageChannel();
  private resumeYield: (() => void) | null = null;

  constructor(
    private readonly backend: BlockBackend,
    readonly slots: number,
    readonly slotBytes: number,
  ) {
    if (typeof SharedArrayBuffer === 'undefined' || !(globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated) {
      throw new BlockError('ENOTSUP', 'The bulk reader needs SharedArrayBuffer, which needs cross-origin isolation (COOP same-origin + COEP require-corp)');
    }
    checkRingGeometry(slots, slotBytes);
    const head = headerBytes(slots);
    this.buffer = new SharedArrayBuffer(head + slots * slotBytes);
    this.ctl = new Int32Array(this.buffer, 0, head / 4);
    this.ctl[RingSlot.SLOTS] = slots;
    this.ctl[RingSlot.SLOT_BYTES] = slotBytes;
    this.views = Array.from({ length: slots }, (_, i) => new Uint8Array(this.buffer, head + i * slotBytes, slotBytes));
    // Touch every page now, so the first reads do not pay for the memory's page faults.
    for (const v of this.views) for (let i = 0; i < v.length; i += 4096) v[i] = 0;
    this.yielder.port1.onmessage = () => {
      const r = this.resumeYield;
      this.resumeYield = null;
      r?.();
    };
  }

  start(): void {
    void this.loop();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    Atomics.store(this.ctl, RingSlot.STATE, CLOSED);
    Atomics.notify(this.ctl, RingSlot.SUBMIT);
    Atomics.notify(this.ctl, RingSlot.DONE);
    this.yielder.port1.close();
    this.yielder.port2.close();
    const r = this.resumeYield;
    this.resumeYield = null;
    r?.();
  }

  /** Lets the worker's other tasks (Comlink calls, other rings) run. */
  private yieldNow(): Promise<void> {
    return new Promise((r) => {
      this.resumeYield = r;
      this.yielder.port2.postMessage(0);
    });
  }

  private async loop(): Promise<void> {
    const c = this.ctl;
    const wait = waitAsync();
    let done = 0;
    let burst = 0;
    while (!this.stopped) {
      const submitted = Atomics.load(c, RingSlot.SUBMIT);
      if (submitted === done) {
        burst = 0;
        const w = wait(c, RingSlot.SUBMIT, submitted);
        if (w.async) await w.value;
        continue;
      }
      await this.serve(done % this.slots);
      done = (done + 1) & MASK;
      Atomics.store(c, RingSlot.DONE, done);
      // Wake the page only for the answer it waits for (a wake-up costs more than a read's
      // bookkeeping); it stores WANT before it looks at DONE, so one of us sees the other.
      if (Atomics.load(c, RingSlot.WANT) === done) Atomics.notify(c, RingSlot.DONE);
      if (++burst === BURST) {
        burst = 0;
        await this.yieldNow();
      }
    }
  }

  private async serve(slot: number): Promise<void> {
    const c = this.ctl;
    const d = RingSlot.DESC + slot * DESC_WORDS;
    const len = c[d + D_LENGTH]!;
    const offset = (c[d + D_OFFSET_LO]! >>> 0) + c[d + D_OFFSET_HI]! * 0x1_0000_0000;
    const data = this.views[slot]!;
    let result = 0;
    try {
      if (len < 0 || len > this.slotBytes) throw new BlockError('EINVAL', `Bulk read of ${len} bytes exceeds the slot's ${this.slotBytes}`, { offset });
      await this.backend.pread(offset, len === this.slotBytes ? data : data.subarray(0, len));
    } catch (e) {
      const err = toBlockError(e);
      result = -err.errno;
      const msg = new TextEncoder().encode(encodeErrorText(err)).subarray(0, data.length);
      data.set(msg);
      c[d + D_MESSAGE_LENGTH] = msg.length;
    }
    c[d + D_RESULT] = result;
  }
}

/**
 * The page side of the ring ({@link Disk.bulkReader}): pipelined reads into
 * shared memory, returned as views of a slot's data area. One consumer at a
 * time: a view stays valid until the next call (read) or the next iteration
 * (stream).
 */
export class BulkReader {
  private readonly ctl: Int32Array;
  private readonly views: Uint8Array[];
  readonly slots: number;
  /** Largest read one slot holds. */
  readonly slotBytes: number;
  /** Requests submitted, and requests whose slots are free again (page side). */
  private submitted = 0;
  private released = 0;
  private busy = false;
  /** Answers per wake-up when streaming (when the page has to wait). */
  private readonly batch: number;

  constructor(buffer: SharedArrayBuffer) {
    const c = new Int32Array(buffer, 0, RingSlot.DESC);
    this.slots = c[RingSlot.SLOTS]!;
    this.slotBytes = c[RingSlot.SLOT_BYTES]!;
    const head = headerBytes(this.slots);
    this.ctl = new Int32Array(buffer, 0, head / 4);
    this.views = Array.from({ length: this.slots }, (_, i) => new Uint8Array(buffer, head + i * this.slotBytes, this.slotBytes));
    this.batch = Math.max(1, this.slots >> 1);
  }

  private submit(offset: number, length: number): number {
    const c = this.ctl;
    const seq = this.submitted;
    const d = RingSlot.DESC + (seq % this.slots) * DESC_WORDS;
    c[d + D_OFFSET_LO] = offset % 0x1_0000_0000;
    c[d + D_OFFSET_HI] = Math.floor(offset / 0x1_0000_0000);
    c[d + D_LENGTH] = length;
    c[d + D_RESULT] = 0;
    this.submitted = (seq + 1) & MASK;
    Atomics.store(c, RingSlot.SUBMIT, this.submitted);
    Atomics.notify(c, RingSlot.SUBMIT);
    return seq;
  }

  /**
   * Waits for request `seq` and returns its data (or throws its error). When
   * it must sleep, it sleeps until `wakeAt` requests are done (a later one,
   * to be woken once for several answers).
   */
  private async result(seq: number, offset: number, length: number, wakeAt = (seq + 1) & MASK): Promise<Uint8Array> {
    const c = this.ctl;
    const target = (seq + 1) & MASK;
    for (;;) {
      let d = Atomics.load(c, RingSlot.DONE);
      // Done once DONE reached seq+1 (within half the counter range, for wrapping).
      if (((d - target) & MASK) < 0x4000_0000) break;
      if (Atomics.load(c, RingSlot.STATE) === CLOSED) throw new BlockError('ENOMEDIUM', 'The bulk reader was closed during a request', { offset });
      Atomics.store(c, RingSlot.WANT, wakeAt);
      d = Atomics.load(c, RingSlot.DONE);
      if (((d - target) & MASK) < 0x4000_0000) break;
      // Sleeps unless DONE moved since d (the worker then sees WANT and wakes us at wakeAt).
      const w = waitAsync()(c, RingSlot.DONE, d);
      if (w.async) await w.value;
    }
    const slot = seq % this.slots;
    const desc = RingSlot.DESC + slot * DESC_WORDS;
    const res = c[desc + D_RESULT]!;
    const data = this.views[slot]!;
    if (res < 0) {
      const n = c[desc + D_MESSAGE_LENGTH]!;
      const text = new TextDecoder().decode(data.slice(0, n));
      const code = ERRNO_CODES[-res] ?? 'EIO';
      throw decodeErrorText(code, text, { offset });
    }
    return length === this.slotBytes ? data : data.subarray(0, length);
  }

  private check(offset: number, length: number): void {
    if (Atomics.load(this.ctl, RingSlot.STATE) === CLOSED) throw new BlockError('ENOMEDIUM', 'The bulk reader is closed');
    if (!Number.isSafeInteger(offset) || offset < 0) throw new BlockError('EINVAL', `Invalid read offset ${offset}`);
    if (!Number.isSafeInteger(length) || length < 0 || length > this.slotBytes) {
      throw new BlockError('EINVAL', `Read of ${length} bytes exceeds the bulk reader's ${this.slotBytes}`, { offset });
    }
  }

  private enter(): void {
    if (this.busy) throw new BlockError('EBUSY', 'The bulk reader serves one read or stream at a time');
    this.busy = true;
  }

  /** Reads `length` (at most slotBytes) bytes at `offset`; the view is valid until the next call. */
  async read(offset: number, length: number): Promise<Uint8Array> {
    this.check(offset, length);
    this.enter();
    try {
      this.released = this.submitted;
      const seq = this.submit(offset, length);
      return await this.result(seq, offset, length);
    } finally {
      this.busy = false;
    }
  }

  /**
   * Streams [offset, offset+bytes) in pieces of `chunk` (at most slotBytes),
   * in order, keeping every other slot busy ahead of the consumer. Each view
   * is valid until the next iteration.
   *
   * ```ts
   * for await (const piece of reader.stream(0, disk.length)) sink.write(piece);
   * ```
   */
  async *stream(offset: number, bytes: number, chunk = this.slotBytes): AsyncGenerator<Uint8Array, void, undefined> {
    this.check(offset, Math.min(chunk, bytes));
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new BlockError('EINVAL', `Invalid stream length ${bytes}`, { offset });
    if (!Number.isSafeInteger(chunk) || chunk < 1) throw new BlockError('EINVAL', `Invalid stream chunk ${chunk}`, { offset });
    this.enter();
    const end = offset + bytes;
    let next = offset;
    let pos = offset;
    const queue: Array<[number, number]> = [];
    try {
      this.released = this.submitted;
      while (pos < end) {
        // Fill the free slots (all but the one the consumer holds).
        while (next < end && ((this.submitted - this.released) & MASK) < this.slots) {
          const n = Math.min(chunk, end - next);
          queue.push([this.submit(next, n), n]);
          next += n;
        }
        const [seq, n] = queue.shift()!;
        // If it has to sleep, the page sleeps until half the queue is answered.
        const wakeAt = (seq + Math.min(this.batch, queue.length + 1)) & MASK;
        const view = await this.result(seq, pos, n, wakeAt);
        pos += n;
        yield view;
        // The consumer is done with this slot.
        this.released = (seq + 1) & MASK;
      }
    } finally {
      // An abandoned stream: wait for what is still queued, so the next call finds the ring idle.
      for (const [seq] of queue) await this.result(seq, pos, 0).catch(() => undefined);
      this.released = this.submitted;
      this.busy = false;
    }
  }
}

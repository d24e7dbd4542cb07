/**
 * The page side of the bulk-read ring (see ring-layout.ts).
 */
import { BlockError, codeOfErrno } from '../core/errors.js';
import { decodeErrorText } from './error-text.js';
import { RingSlot, D_OFFSET_LO, D_OFFSET_HI, D_LENGTH, D_RESULT, D_MESSAGE_LENGTH, DESC_WORDS, CLOSED, MASK, POLL_MAX_MS, POLL_FAIRNESS_MS, POLL_WINDOW, POLL_GIVE_UP_SHARE, POLL_PAUSE_WINDOWS, headerBytes, waitAsync } from './ring-layout.js';

/** Whether DONE value `d` covers the request answered when DONE reaches `target` (within half the counter range, for wrapping). */
const reached = (d: number, target: number): boolean => ((d - target) & MASK) < 0x4000_0000;

/**
 * The page's end of one ring: submits requests and waits for their answers.
 * Which slots are free is the user's bookkeeping ({@link BulkReader},
 * {@link RingCopyReader}).
 * @internal
 */
export class RingPort {
  readonly ctl: Int32Array;
  private readonly views: Uint8Array[];
  readonly slots: number;
  /** Largest read one slot holds. */
  readonly slotBytes: number;
  /** Requests submitted so far (the next request's number). */
  submitted = 0;
  /** When this thread last slept on the ring (and so ran its other tasks). */
  private lastSlept = performance.now();
  /**
   * Answers taken by polling, sleeps until an answer, and the times polling
   * was given up for a while and tried again (diagnostics and tests).
   */
  readonly stats = { polled: 0, slept: 0, pauses: 0, resumes: 0 };
  /** Whether waits poll now (see the constructor). */
  private polling: boolean;
  /** The current window of waits: how many, and how many ended asleep. */
  private windowWaits = 0;
  private windowSlept = 0;
  /** Windows left before polling is tried again. */
  private pausedFor = 0;
  /** Whether waits are scored at all (a polling port that may give polling up). */
  private readonly adaptive: boolean;

  /**
   * `poll`: before sleeping on an answer, poll for it for up to eight times
   * the worker's last service time plus 0.2 ms (the worker may be between two
   * bursts), at most {@link POLL_MAX_MS}. Waking a
   * sleeping page costs the worker a cross-thread task and the page a wake-up
   * whose latency (median 80 µs, p90 0.3 ms, tail several ms in Chromium on a
   * 2-core VM) exceeds a 1 MiB read from the page cache (~0.12 ms), so a
   * streaming page that sleeps keeps stalling the worker. Polling spends the
   * page's thread, so it is for consumers that ask for it (a bulk reader's
   * `poll`); the page still sleeps at least every {@link POLL_FAIRNESS_MS} to
   * run its other tasks.
   *
   * Polling only pays while the page and the worker each have a core. When
   * other work wants the cores, the scheduler counts the polling page as a CPU
   * hog and wakes it late; answers are then missed by the poll and the page
   * sleeps anyway, later than it would have (with one busy process beside the
   * bench on 2 cores, a polling stream ran at 0.34–0.37× of a raw OPFS worker,
   * a sleeping one at 0.63–0.68×). So the port keeps score: when more than
   * {@link POLL_GIVE_UP_SHARE} of a window of {@link POLL_WINDOW} waits still
   * ended asleep, it stops polling for {@link POLL_PAUSE_WINDOWS} windows,
   * then tries again. (Slow storage, whose answers outlast the poll, stops it
   * the same way.)
   */
  constructor(
    buffer: SharedArrayBuffer,
    poll = false,
    /** Whether polling keeps score and gives itself up (off only in tests of the other rules). */
    adaptive = true,
  ) {
    this.polling = poll;
    this.adaptive = poll && adaptive;
    const c = new Int32Array(buffer, 0, RingSlot.DESC);
    this.slots = c[RingSlot.SLOTS]!;
    this.slotBytes = c[RingSlot.SLOT_BYTES]!;
    const head = headerBytes(this.slots);
    this.ctl = new Int32Array(buffer, 0, head / 4);
    this.views = Array.from({ length: this.slots }, (_, i) => new Uint8Array(buffer, head + i * this.slotBytes, this.slotBytes));
  }

  /** Whether the worker closed the ring (the disk was closed). */
  get closed(): boolean {
    return Atomics.load(this.ctl, RingSlot.STATE) === CLOSED;
  }

  /** Queues a read of `length` (at most slotBytes) at `offset` in the next slot; returns its number. */
  submit(offset: number, length: number): number {
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
   * Waits for request `seq` and returns its data, a view of its slot valid
   * until the slot is reused (or throws its error). When it must sleep, it
   * sleeps until `wakeAt` requests are done (a later one, to be woken once
   * for several answers).
   */
  async result(seq: number, offset: number, length: number, wakeAt = (seq + 1) & MASK): Promise<Uint8Array> {
    const c = this.ctl;
    const target = (seq + 1) & MASK;
    let waited = false;
    let slept = false;
    for (;;) {
      let d = Atomics.load(c, RingSlot.DONE);
      // Done once DONE reached seq+1.
      if (reached(d, target)) break;
      if (Atomics.load(c, RingSlot.STATE) === CLOSED) throw new BlockError('ENOMEDIUM', 'The bulk reader was closed during a request', { offset });
      waited = true;
      if (this.polling && this.pollFor(target)) break;
      Atomics.store(c, RingSlot.WANT, wakeAt);
      d = Atomics.load(c, RingSlot.DONE);
      if (reached(d, target)) break;
      // Sleeps unless DONE moved since d (the worker then sees WANT and wakes us at wakeAt).
      const w = waitAsync()(c, RingSlot.DONE, d);
      if (w.async) {
        this.stats.slept++;
        slept = true;
        await w.value;
        this.lastSlept = performance.now();
      }
    }
    if (waited) this.score(slept);
    const slot = seq % this.slots;
    const desc = RingSlot.DESC + slot * DESC_WORDS;
    const res = c[desc + D_RESULT]!;
    const data = this.views[slot]!;
    if (res < 0) {
      const n = c[desc + D_MESSAGE_LENGTH]!;
      const text = new TextDecoder().decode(data.slice(0, n));
      const code = codeOfErrno(-res);
      throw decodeErrorText(code, text, { offset });
    }
    return length === this.slotBytes ? data : data.subarray(0, length);
  }

  /** Counts one wait; at the end of a window, decides whether the next one polls (see the constructor). */
  private score(slept: boolean): void {
    if (!this.adaptive) return;
    this.windowWaits++;
    if (slept) this.windowSlept++;
    if (this.windowWaits < POLL_WINDOW) return;
    if (this.polling && this.windowSlept > POLL_GIVE_UP_SHARE * this.windowWaits) {
      this.polling = false;
      this.pausedFor = POLL_PAUSE_WINDOWS;
      this.stats.pauses++;
    } else if (!this.polling && --this.pausedFor === 0) {
      this.polling = true;
      this.stats.resumes++;
    }
    this.windowWaits = 0;
    this.windowSlept = 0;
  }

  /** Polls until DONE reaches `target`, for the budget described at the constructor; whether it did. */
  private pollFor(target: number): boolean {
    const c = this.ctl;
    const now = performance.now();
    if (now - this.lastSlept >= POLL_FAIRNESS_MS) return false;
    const until = now + Math.min(POLL_MAX_MS, (8 * Atomics.load(c, RingSlot.SERVE_US)) / 1000 + 0.2);
    do {
      if (reached(Atomics.load(c, RingSlot.DONE), target)) {
        this.stats.polled++;
        return true;
      }
      if (Atomics.load(c, RingSlot.STATE) === CLOSED) return false;
    } while (performance.now() < until);
    return false;
  }
}

/**
 * The page side of the ring ({@link Disk.bulkReader}): pipelined reads into
 * shared memory, returned as views of a slot's data area. One consumer at a
 * time: a view stays valid until the next call (read) or the next iteration
 * (stream).
 */
export class BulkReader {
  private readonly ring: RingPort;
  readonly slots: number;
  /** Largest read one slot holds. */
  readonly slotBytes: number;
  /** Requests whose slots are free again (page side). */
  private released = 0;
  private busy = false;
  /**
   * Answers per wake-up when streaming and the page has to sleep (it does not
   * poll, or its poll ran out): all the queued ones but one, so that the worker still has a read
   * in hand while the page consumes and submits again. A wake-up costs the
   * worker about as much as a 1 MiB read on a busy machine (the page takes its
   * core); with 4 slots of 1 MiB and no polling, waking for 3 answers instead
   * of 2 measured 0.74–0.78× of a raw OPFS worker instead of 0.68–0.70×, and
   * for every answer 0.62×.
   */
  private readonly batch: number;

  /** `poll`: poll for answers before sleeping (see RingPort; spends the page's thread). */
  constructor(buffer: SharedArrayBuffer, poll = false) {
    this.ring = new RingPort(buffer, poll);
    this.slots = this.ring.slots;
    this.slotBytes = this.ring.slotBytes;
    this.batch = Math.max(1, this.slots - 1);
  }

  private check(offset: number, length: number): void {
    if (this.ring.closed) throw new BlockError('ENOMEDIUM', 'The bulk reader is closed');
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
      this.released = this.ring.submitted;
      const seq = this.ring.submit(offset, length);
      return await this.ring.result(seq, offset, length);
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
      this.released = this.ring.submitted;
      while (pos < end) {
        // Fill the free slots (all but the one the consumer holds).
        while (next < end && ((this.ring.submitted - this.released) & MASK) < this.slots) {
          const n = Math.min(chunk, end - next);
          queue.push([this.ring.submit(next, n), n]);
          next += n;
        }
        const [seq, n] = queue.shift()!;
        // If it has to sleep, the page sleeps until all but one of the queue is answered.
        const wakeAt = (seq + Math.min(this.batch, queue.length + 1)) & MASK;
        const view = await this.ring.result(seq, pos, n, wakeAt);
        pos += n;
        yield view;
        // The consumer is done with this slot.
        this.released = (seq + 1) & MASK;
      }
    } finally {
      // An abandoned stream: wait for what is still queued, so the next call finds the ring idle.
      for (const [seq] of queue) await this.ring.result(seq, pos, 0).catch(() => undefined);
      this.released = this.ring.submitted;
      this.busy = false;
    }
  }
}

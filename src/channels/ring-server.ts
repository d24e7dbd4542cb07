/**
 * The worker side of the bulk-read ring (see ring-layout.ts).
 */
import type { BlockBackend } from '../core/backend.js';
import { BlockError, toBlockError } from '../core/errors.js';
import { encodeErrorText } from './error-text.js';
import { RingSlot, D_OFFSET_LO, D_OFFSET_HI, D_LENGTH, D_RESULT, D_MESSAGE_LENGTH, DESC_WORDS, CLOSED, MASK, BURST, headerBytes, waitAsync, checkRingGeometry } from './ring-layout.js';

/** Serves the requests of one ring from a BlockBackend. */
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
      const t = performance.now();
      await this.backend.pread(offset, len === this.slotBytes ? data : data.subarray(0, len));
      Atomics.store(c, RingSlot.SERVE_US, Math.min(0x7fffffff, Math.round((performance.now() - t) * 1000)));
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


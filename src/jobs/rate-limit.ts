/**
 * A byte-rate limiter in time slices, as block jobs use it: each slice may
 * carry `speed × slice` bytes; work past the quota extends the slice, and the
 * caller sleeps until the extended slice ends. Sleeping per slice (rather than
 * per request) keeps the average exact while requests stay large.
 */

/** Milliseconds since an arbitrary origin; injected so tests never wait on wall time. */
export type Now = () => number;

/** QEMU's block job slice: 100 ms. */
export const JOB_SLICE_MS = 100;

/** Rate limit state of one job (or one copy). Speed 0 means unlimited. */
export class RateLimit {
  private quota = 0;
  private sliceStart = 0;
  private sliceEnd = -Infinity;
  private dispatched = 0;

  constructor(
    private readonly now: Now = () => performance.now(),
    private readonly sliceMs: number = JOB_SLICE_MS,
  ) {}

  /** Sets the limit in bytes per second (0: unlimited). */
  setSpeed(bytesPerSecond: number): void {
    this.quota = (bytesPerSecond * this.sliceMs) / 1000;
  }

  /**
   * Accounts `bytes` just done (or about to be) and returns how many
   * milliseconds the caller should wait before the next piece of work.
   */
  delayFor(bytes: number): number {
    if (this.quota === 0) return 0;
    const now = this.now();
    if (this.sliceEnd < now) {
      this.sliceStart = now;
      this.sliceEnd = now + this.sliceMs;
      this.dispatched = 0;
    }
    this.dispatched += bytes;
    if (this.dispatched < this.quota) return 0;
    this.sliceEnd = this.sliceStart + (this.dispatched / this.quota) * this.sliceMs;
    return this.sliceEnd - now;
  }
}

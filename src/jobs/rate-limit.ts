/**
 * Rate limiting of a copy in bytes per second, on a clock that tests can
 * replace (no test waits for wall time).
 */
import { einval } from '../core/errors.js';

/** Time source and sleep of a rate-limited copy. */
export interface CopyClock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Resolves after `ms` milliseconds, or early once `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The real clock (performance.now and setTimeout). */
export const systemClock: CopyClock = {
  now: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
    }),
};

/**
 * Lets bytes through at `bytesPerSecond` on average: {@link take} waits until
 * the bytes taken before are due. A copy that fell behind (slow storage) may
 * catch up by at most {@link CATCH_UP_MS} worth of bytes, not burst.
 */
export class RateLimiter {
  /** How far behind the schedule a copy may be before the schedule restarts. */
  static readonly CATCH_UP_MS = 100;
  private start: number | undefined;
  private sent = 0;

  constructor(
    readonly bytesPerSecond: number,
    private readonly clock: CopyClock,
  ) {
    if (!Number.isFinite(bytesPerSecond) || bytesPerSecond <= 0) throw einval(`Invalid rate limit: ${bytesPerSecond} bytes/s`);
  }

  /** Waits until `bytes` more may go (the first call never waits). */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const now = this.clock.now();
    if (this.start === undefined) this.start = now;
    let due = this.start + (this.sent / this.bytesPerSecond) * 1000;
    if (now - due > RateLimiter.CATCH_UP_MS) {
      this.start = now - RateLimiter.CATCH_UP_MS - (this.sent / this.bytesPerSecond) * 1000;
      due = now - RateLimiter.CATCH_UP_MS;
    }
    this.sent += bytes;
    if (due > now) await this.clock.sleep(due - now, signal);
  }
}

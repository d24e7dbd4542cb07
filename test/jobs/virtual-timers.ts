/**
 * Virtual time for job tests: timers fire in order of their due time, and
 * `now()` jumps to each one's due time, so a "5 second" rate-limited job runs
 * in milliseconds and never depends on the machine's speed.
 */
import type { JobTimers } from '../../src/jobs/job-types.js';

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
}

export class VirtualTimers implements JobTimers {
  private clock = 0;
  private seq = 0;
  private pending: Pending[] = [];

  now(): number {
    return this.clock;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const entry = { at: this.clock + Math.max(0, ms), seq: this.seq++, fn };
    this.pending.push(entry);
    return entry;
  }

  clearTimeout(handle: unknown): void {
    this.pending = this.pending.filter((p) => p !== handle);
  }

  /** Lets every queued promise continuation run (real event loop turns, no timers). */
  async settle(): Promise<void> {
    for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  }

  /** Fires timers in due order until `done()` holds or nothing is left; returns false if stuck. */
  async runUntil(done: () => boolean, maxTimers = 1_000_000): Promise<boolean> {
    await this.settle();
    for (let fired = 0; !done(); fired++) {
      if (this.pending.length === 0 || fired >= maxTimers) return false;
      this.pending.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.pending.shift()!;
      this.clock = Math.max(this.clock, next.at);
      next.fn();
      await this.settle();
    }
    return true;
  }
}

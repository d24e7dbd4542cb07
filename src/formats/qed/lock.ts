/**
 * A FIFO lock (QEMU's CoMutex), taken without a microtask when free. Shared
 * by the qed and qcow drivers, whose table updates run one at a time.
 */
export class FifoLock {
  private held = false;
  private readonly waiters: Array<() => void> = [];

  get locked(): boolean {
    return this.held;
  }

  /** Takes the lock: immediately (returns undefined) when free, else a promise for the turn. */
  acquire(): Promise<void> | undefined {
    if (!this.held) {
      this.held = true;
      return undefined;
    }
    return new Promise<void>((r) => this.waiters.push(r));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.held = false;
  }

  /** Runs `f` holding the lock. */
  async run<T>(f: () => Promise<T> | T): Promise<T> {
    const wait = this.acquire();
    if (wait) await wait;
    try {
      return await f();
    } finally {
      this.release();
    }
  }
}

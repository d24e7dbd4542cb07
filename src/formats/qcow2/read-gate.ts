import { ArraySet } from '../../core/array-set.js';

/**
 * Reads in flight, for holding back the reuse of host clusters they may
 * still read (QEMU keeps a cluster from being reused while a request uses it
 * through its request tracking and locking).
 *
 * Reads take no lock: a read looks up the mapping, then reads the host
 * cluster. A discard, zero write or copy-on-write that drops the mapping
 * meanwhile queues the cluster's refcount decrement; if the decrement were
 * applied and the cluster handed to another guest offset before the read
 * got to it, the read would return that offset's data. So every read holds
 * a ticket while it runs, every queued decrement records the next ticket
 * number, and a decrement is applied only once no read that started before
 * it is still running (reads that start after it see the new mapping).
 */
export class ReadGate {
  /** Number of the next ticket. */
  private next = 0;
  /** Tickets of the reads running, in increasing order (an ArraySet: no garbage per read). */
  private readonly active = new ArraySet<number>();
  /** Waiters for {@link passed}: the stamp and the resolver. */
  private waiters: Array<{ stamp: number; resolve: () => void }> = [];

  /** A ticket for a read that starts now; hand it to {@link exit} when it ends. */
  enter(): number {
    const t = this.next++;
    this.active.add(t);
    return t;
  }

  /**
   * A ticket number for a read that may complete synchronously: nothing is
   * registered until {@link hold}, which the caller runs only if the read went
   * asynchronous (a read that completed before any other code ran cannot
   * have overlapped a change, so it costs no bookkeeping).
   */
  reserve(): number {
    return this.next++;
  }

  /** Registers a reserved ticket whose read is still running; hand it to {@link exit}. */
  hold(t: number): void {
    this.active.add(t);
  }

  /** Ends the read of ticket `t`. */
  exit(t: number): void {
    this.active.delete(t);
    if (this.waiters.length === 0) return;
    const oldest = this.oldest();
    const ready = this.waiters.filter((w) => w.stamp <= oldest);
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => w.stamp > oldest);
    for (const w of ready) w.resolve();
  }

  /** The stamp of a change made now: reads with a lower ticket may have seen the state before it. */
  stamp(): number {
    return this.next;
  }

  /** Ticket of the oldest read running (Infinity when none). */
  oldest(): number {
    return this.active.first() ?? Infinity;
  }

  /** Whether every read that started before `stamp` has ended. */
  passed(stamp: number): boolean {
    return this.oldest() >= stamp;
  }

  /** Resolves once every read that started before `stamp` has ended. */
  whenPassed(stamp: number): Promise<void> {
    if (this.passed(stamp)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ stamp, resolve }));
  }

  /** Reads running. */
  get size(): number {
    return this.active.size;
  }
}

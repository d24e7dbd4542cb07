/**
 * The decrements waiting to be applied: a cluster that lost a reference keeps
 * its refcount until the metadata that dropped the reference is on disk and
 * no read in flight that started before the drop may still use it (each entry
 * carries the read gate's stamp of its time, read-gate.ts). Entries are in
 * queue order, so their stamps only grow.
 */
export class FreeQueue {
  private clusters: number[] = [];
  private stamps: number[] = [];

  /** Number of queued decrements. */
  get length(): number {
    return this.clusters.length;
  }

  /** Queues one decrement of each cluster in [first, last], with the read gate's `stamp`. */
  add(first: number, last: number, stamp: number): void {
    for (let c = first; c <= last; c++) {
      this.clusters.push(c);
      this.stamps.push(stamp);
    }
  }

  /** The stamp of the newest entry (0 when empty). */
  get newestStamp(): number {
    return this.stamps.length > 0 ? this.stamps[this.stamps.length - 1]! : 0;
  }

  /** Whether a queued cluster satisfies `test`. */
  someCluster(test: (cluster: number) => boolean): boolean {
    return this.clusters.some(test);
  }

  /**
   * Removes and returns the entries no read may still need: those stamped at
   * or before `oldestRead` (the stamp of the oldest read in flight).
   */
  takeReady(oldestRead: number): number[] {
    let n = 0;
    while (n < this.clusters.length && this.stamps[n]! <= oldestRead) n++;
    const ready = this.clusters.slice(0, n);
    this.clusters = this.clusters.slice(n);
    this.stamps = this.stamps.slice(n);
    return ready;
  }
}

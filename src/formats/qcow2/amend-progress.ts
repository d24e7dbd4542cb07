/**
 * The progress qemu-img amend shows for qcow2 (`amend -p`), step for step as
 * QEMU 7.2 reports it: each operation (upgrade, refcount width change,
 * downgrade) reports work done out of a total, and the totals of several
 * operations are folded into one (QEMU's amend helper callback).
 *
 * Our refcount width change rebuilds the structures in one pass; QEMU walks
 * the old refcount table several times, allocating new refblocks until no
 * walk allocates any more, then writes them in a last walk. The number of
 * walks shows in the progress (two of three walks is 66.67 %, two of four
 * 50.00 %), so {@link refcountWalkProgress} replays QEMU's allocations on the
 * old refcounts to learn how many walks it would take.
 */
import type { AmendProgress } from '../../core/driver.js';

/** The operations of one amend, in the order they run. */
export const AmendOp = { UPGRADE: 1, REFCOUNT_ORDER: 2, DOWNGRADE: 3 } as const;
export type AmendOp = (typeof AmendOp)[keyof typeof AmendOp];

/**
 * Folds the progress of `totalOps` operations into one: the work of the
 * operations still to come is projected from the ones seen so far.
 */
export class AmendProgressFolder {
  private current: AmendOp | 0 = 0;
  private last: AmendOp | 0 = 0;
  private completed = 0;
  private offsetCompleted = 0;
  private lastWork = 0;

  constructor(
    private readonly report: AmendProgress | undefined,
    private readonly totalOps: number,
  ) {}

  /** The operation the next reports belong to. */
  begin(op: AmendOp): void {
    this.current = op;
  }

  /** One report of the current operation: `done` of `work` units. */
  readonly status = (done: number, work: number): void => {
    if (!this.report) return;
    if (this.current !== this.last) {
      if (this.last !== 0) {
        this.offsetCompleted += this.lastWork;
        this.completed++;
      }
      this.last = this.current;
    }
    this.lastWork = work;
    const soFar = this.offsetCompleted + work;
    // Integer division, as QEMU's int64 arithmetic.
    const projected = Math.trunc((soFar * (this.totalOps - this.completed - 1)) / (this.completed + 1));
    this.report(this.offsetCompleted + done, soFar + projected);
  };
}

/** The old refcount structures, as the refcount width change finds them. */
export interface RefcountWalkInput {
  clusterSize: number;
  /** Entries of the old refcount table (its clusters times clusterSize / 8). */
  reftableEntries: number;
  oldOrder: number;
  newOrder: number;
  /** Clusters with a nonzero stored refcount, the old refcount structures included. */
  used: Iterable<number>;
}

/**
 * Reports the refcount width change's progress as QEMU's walks would:
 * `(W + 1) * (entries + 1)` reports for W allocating walks and the writing
 * walk. With `failAt` (a cluster whose refcount does not fit the new width),
 * only the first walk's reports up to that cluster's table entry, as QEMU
 * stops there.
 */
export function refcountWalkProgress(input: RefcountWalkInput, status: (done: number, total: number) => void, failAt?: number): void {
  const r = input.reftableEntries;
  const oldPer = (input.clusterSize * 8) >> input.oldOrder;
  if (failAt !== undefined) {
    const last = Math.min(r - 1, Math.floor(failAt / oldPer));
    for (let i = 0; i <= last; i++) status(i, 3 * r);
    return;
  }
  const walks = allocationWalks(input);
  for (let w = 0; w < walks; w++) {
    const total = Math.max(w + 2, 3) * r;
    for (let i = 0; i < r; i++) status(w * r + i, total);
    status((w + 1) * r, total);
  }
  for (let i = 0; i < r; i++) status(walks * r + i, (walks + 1) * r);
  status((walks + 1) * r, (walks + 1) * r);
}

/**
 * How many allocating walks QEMU makes: each walk gives every new refblock
 * that covers a used cluster a cluster of its own (first fit from the lowest
 * free cluster), and a walk that allocated anything allocates a new refcount
 * table too (freeing the one before) and is followed by another walk.
 */
function allocationWalks(input: RefcountWalkInput): number {
  const cs = input.clusterSize;
  const oldPer = (cs * 8) >> input.oldOrder;
  const newPer = (cs * 8) >> input.newOrder;
  const coverage = input.reftableEntries * oldPer;
  const blocks = Math.ceil(coverage / newPer);
  const used = new Set<number>();
  // Used clusters per new refblock: a block is empty when it has none.
  const perBlock = new Map<number, number>();
  const mark = (c: number, delta: 1 | -1) => {
    if (delta > 0) used.add(c);
    else used.delete(c);
    const b = Math.floor(c / newPer);
    perBlock.set(b, (perBlock.get(b) ?? 0) + delta);
  };
  for (const c of input.used) if (!used.has(c)) mark(c, 1);
  let freeIndex = 0;
  const alloc = (n: number): number => {
    let start = freeIndex;
    for (let i = 0; i < n; i++) {
      if (used.has(start + i)) {
        start = start + i + 1;
        i = -1;
      }
    }
    for (let i = 0; i < n; i++) mark(start + i, 1);
    freeIndex = start + n;
    return start;
  };
  const free = (start: number, n: number) => {
    for (let i = 0; i < n; i++) mark(start + i, -1);
    freeIndex = Math.min(freeIndex, start);
  };
  const table: number[] = [];
  let tableSize = 0;
  let tableAt = -1;
  let tableClusters = 0;
  let walks = 0;
  // Each walk allocates at least one cluster or ends the loop; the bound only guards the replay.
  for (;;) {
    let allocated = false;
    for (let b = 0; b < blocks; b++) {
      if (!(perBlock.get(b) ?? 0)) continue;
      if (b >= tableSize) tableSize = Math.ceil((b + 1) / (cs / 8)) * (cs / 8);
      if (!table[b]) {
        table[b] = alloc(1) + 1;
        allocated = true;
      }
    }
    walks++;
    if (!allocated || walks > blocks + 2) break;
    if (tableAt >= 0) free(tableAt, tableClusters);
    tableClusters = Math.ceil((tableSize * 8) / cs);
    tableAt = alloc(tableClusters);
  }
  return walks;
}

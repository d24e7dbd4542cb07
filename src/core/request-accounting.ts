/**
 * Bookkeeping around every request: the in-flight count that drain waits
 * for, and the per-operation I/O statistics of a node.
 */
import type { BlockNode, OpStats } from './node.js';

export const now = typeof performance !== 'undefined' ? () => performance.now() : () => Date.now();

export function account(stats: OpStats, bytes: number, start: number, failed: boolean): void {
  if (failed) {
    stats.failed++;
    return;
  }
  stats.ops++;
  stats.bytes += bytes;
  stats.timeMs += now() - start;
}

/** Counts a request in flight on a node. */
export function beginInFlight(node: BlockNode): void {
  node.inFlight++;
}

/** Ends a request in flight and wakes drain waiters when the node is idle. */
export function endInFlight(node: BlockNode): void {
  node.inFlight--;
  if (node.inFlight === 0 && node.idleWaiters.length > 0) {
    const waiters = node.idleWaiters;
    node.idleWaiters = [];
    for (const w of waiters) w();
  }
}

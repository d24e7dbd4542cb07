/**
 * Tracked requests (QEMU's BdrvTrackedRequest): every request in flight on a
 * node is registered with its byte range so that overlapping requests can wait
 * for each other.
 *
 * Rules, applied against the requests registered *earlier* (so waiting never
 * forms a cycle):
 * - a serialising request (read-modify-write, copy-on-read) waits for every
 *   overlapping one, and every overlapping one waits for it;
 * - overlapping writes (write, zero write, discard, truncate) wait for each
 *   other, so they reach the driver in submission order;
 * - plain reads wait only for serialising requests.
 */
import type { BlockNode } from './node.js';

export type TrackedType = 'read' | 'write' | 'discard' | 'truncate';

export class TrackedRequest {
  /** Range that conflicts with other requests (widened to alignment for RMW). */
  overlapOffset: number;
  overlapEnd: number;
  private promise: Promise<void> | null = null;
  private resolve: (() => void) | null = null;
  private ended = false;
  /** Order of registration on the node. */
  readonly seq: number;
  private static nextSeq = 0;

  constructor(
    readonly node: BlockNode,
    readonly offset: number,
    readonly bytes: number,
    readonly type: TrackedType,
    readonly serialising: boolean,
    align: number,
  ) {
    this.seq = TrackedRequest.nextSeq++;
    if (serialising && align > 1) {
      this.overlapOffset = Math.floor(offset / align) * align;
      this.overlapEnd = Math.ceil((offset + bytes) / align) * align;
    } else {
      this.overlapOffset = offset;
      this.overlapEnd = offset + bytes;
    }
  }

  /** Resolved when the request ends (created only when someone waits: most never do). */
  get finished(): Promise<void> {
    if (this.ended) return Promise.resolve();
    this.promise ??= new Promise<void>((resolve) => (this.resolve = resolve));
    return this.promise;
  }

  private conflictsWith(other: TrackedRequest): boolean {
    if (other.overlapEnd <= this.overlapOffset || other.overlapOffset >= this.overlapEnd) return false;
    if (this.serialising || other.serialising) return true;
    return this.type !== 'read' && other.type !== 'read';
  }

  /**
   * Requests registered before this one that it must wait for, or null when
   * none (the common, fast case).
   */
  blockers(): TrackedRequest[] | null {
    let out: TrackedRequest[] | null = null;
    for (const other of this.node.tracked.members) {
      if (other === this || other.seq > this.seq) continue;
      if (this.conflictsWith(other)) (out ??= []).push(other);
    }
    return out;
  }

  /**
   * Waits until no earlier conflicting request is in flight. A serialising
   * request also waits for the untracked fast-path reads that started before it.
   */
  async waitForBlockers(): Promise<void> {
    if (this.serialising) {
      while (this.node.fastReads > 0) {
        await new Promise<void>((resolve) => this.node.fastReadWaiters.push(resolve));
      }
    }
    if (this.node.tracked.size <= 1) return;
    for (;;) {
      const b = this.blockers();
      if (!b) return;
      await Promise.all(b.map((r) => r.finished));
    }
  }

  /** Removes the request and wakes those waiting for it. */
  end(): void {
    if (this.ended) return;
    this.node.tracked.delete(this);
    if (this.serialising) this.node.serialisingInFlight--;
    this.ended = true;
    this.resolve?.();
  }
}

/** Registers a request on its node. */
export function track(
  node: BlockNode,
  offset: number,
  bytes: number,
  type: TrackedType,
  serialising: boolean,
): TrackedRequest {
  const req = new TrackedRequest(node, offset, bytes, type, serialising, node.limits.requestAlignment);
  node.tracked.add(req);
  if (serialising) node.serialisingInFlight++;
  return req;
}

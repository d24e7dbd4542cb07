/**
 * Disk.readInto in a cross-origin isolated page: reads through a private
 * bulk-read ring (ring-layout.ts), each copied out of its slot into the
 * caller's buffer. Several reads may be in flight from any number of callers;
 * a read longer than a slot takes several slots.
 *
 * Why not the read port's transfers: a 1 MiB read costs the worker a message
 * to receive and one to post, and the page a task per answer; through the
 * ring the worker reads back to back into shared memory and the page wakes
 * once for several answers. Copying 1 MiB costs the page less than a
 * transfer's round trip (bench/browser/page-reads.ts: a stream copied out of
 * the ring 0.76× of a raw OPFS worker, readInto with transfers 0.57×).
 */
import { BlockError } from '../core/errors.js';
import { RingPort } from './ring-client.js';
import { MASK } from './ring-layout.js';

/** One slot-sized part of a read. */
interface Piece {
  read: PendingRead;
  offset: number;
  length: number;
  /** Where its bytes go in the caller's buffer. */
  at: number;
  seq: number;
}

/** A caller's read: done when all its pieces are. */
interface PendingRead {
  buf: Uint8Array;
  left: number;
  failed: boolean;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class RingCopyReader {
  private ring: RingPort | null = null;
  /** Pieces waiting for a free slot. */
  private readonly backlog: Piece[] = [];
  /** Pieces submitted, oldest first (the worker answers in this order). */
  private readonly inflight: Piece[] = [];
  private pumping = false;
  private closedWith: { error: unknown } | null = null;

  /** `buffer`: a ring of the disk's worker (DiskApi.bulkChannel) with slots of `slotBytes`, as it arrives. */
  constructor(
    buffer: Promise<SharedArrayBuffer>,
    private readonly slotBytes: number,
  ) {
    void buffer.then(
      (b) => {
        // No polling: readInto serves v86, whose guest CPU runs on this thread while a read is out.
        this.ring = new RingPort(b);
        this.submitReady();
      },
      (e: unknown) => this.close(e),
    );
  }

  /** Whether a read at `offset` can be carried (the ring's descriptor holds a safe integer offset). */
  static carries(offset: number, length: number): boolean {
    return Number.isSafeInteger(offset) && offset >= 0 && Number.isSafeInteger(offset + length);
  }

  /** Reads `buf.length` bytes at `offset` into `buf`; resolves with `buf`. */
  read<B extends ArrayBufferLike>(offset: number, buf: Uint8Array<B>): Promise<Uint8Array<B>> {
    if (this.closedWith) return Promise.reject(this.closedWith.error);
    return new Promise<Uint8Array<B>>((resolve, reject) => {
      const slotBytes = this.slotBytes;
      const read: PendingRead = { buf, left: 0, failed: false, resolve: () => resolve(buf), reject };
      // A read of nothing still goes to the worker, which checks its offset.
      let at = 0;
      do {
        const length = Math.min(slotBytes, buf.length - at);
        this.backlog.push({ read, offset: offset + at, length, at, seq: -1 });
        read.left++;
        at += length;
      } while (at < buf.length);
      this.submitReady();
    });
  }

  /** Ends every read still queued or in flight with `error`. */
  close(error: unknown): void {
    if (this.closedWith) return;
    this.closedWith = { error };
    for (const p of [...this.inflight, ...this.backlog]) this.fail(p.read, error);
    this.inflight.length = 0;
    this.backlog.length = 0;
  }

  /** Submits backlog pieces into the free slots; starts the pump. */
  private submitReady(): void {
    const ring = this.ring;
    if (!ring || this.closedWith) return;
    while (this.backlog.length > 0 && this.inflight.length < ring.slots) {
      const p = this.backlog.shift()!;
      if (p.read.failed) {
        this.settle(p);
        continue;
      }
      p.seq = ring.submit(p.offset, p.length);
      this.inflight.push(p);
    }
    if (this.inflight.length > 0 && !this.pumping) void this.pump(ring);
  }

  /** Takes the answers in order, copies them out and refills the ring. */
  private async pump(ring: RingPort): Promise<void> {
    this.pumping = true;
    try {
      while (this.inflight.length > 0 && !this.closedWith) {
        const p = this.inflight[0]!;
        // Sleep until all but one of what is in flight is answered: the worker keeps a read in hand.
        const wakeAt = (p.seq + Math.max(1, this.inflight.length - 1)) & MASK;
        let view: Uint8Array | null = null;
        let error: unknown = null;
        try {
          view = await ring.result(p.seq, p.offset, p.length, wakeAt);
        } catch (e) {
          error = e;
        }
        if (this.closedWith) break;
        this.inflight.shift();
        if (error !== null) {
          if (ring.closed) {
            this.close(new BlockError('ENOMEDIUM', 'The disk was closed during a read', { offset: p.offset }));
            break;
          }
          this.fail(p.read, error);
        } else if (!p.read.failed) {
          p.read.buf.set(view!, p.at);
        }
        this.settle(p);
        this.submitReady();
      }
    } finally {
      this.pumping = false;
    }
  }

  /** One piece of a read is over: the read resolves once all are. */
  private settle(p: Piece): void {
    const r = p.read;
    if (--r.left === 0 && !r.failed) r.resolve();
  }

  private fail(r: PendingRead, error: unknown): void {
    if (r.failed) return;
    r.failed = true;
    r.reject(error);
  }
}

/**
 * The bulk-read ring: the fastest way to stream a disk into a page. This file
 * holds its shared-memory layout; ring-server.ts is the worker side,
 * ring-client.ts the page side.
 *
 * A SharedArrayBuffer shared by the page and the block worker holds control
 * words, `slots` request descriptors and `slots` data areas of `slotBytes`.
 * The page writes a request into the next free slot and bumps SUBMIT; the
 * worker ({@link RingServer}) serves requests in order, straight into the
 * slot's data area, and bumps DONE. Nothing is posted, copied or transferred;
 * the page only wakes (Atomics.waitAsync) when it needs an answer that is not
 * there yet, and the worker serves the requests already queued back to back
 * without returning to its event loop in between (up to a bound), so with two
 * or more slots the worker reads while the page consumes.
 *
 * Counters wrap at 2^31; slot of request `seq` = seq % slots (slots is a power
 * of two, so wrapping keeps the slot sequence). Needs cross-origin isolation.
 */
import { BlockError } from '../core/errors.js';

/** Control words (Int32 indexes). */
export const RingSlot = {
  /** Requests submitted so far (the page writes it). */
  SUBMIT: 0,
  /** Requests completed so far (the worker writes it). */
  DONE: 1,
  /** 0 open, 3 closed. */
  STATE: 2,
  SLOTS: 3,
  SLOT_BYTES: 4,
  /** The DONE value the page waits for: the worker wakes it only then. */
  WANT: 5,
  /**
   * How long the worker took over its last request, in microseconds: how long
   * a page that polls for an answer may expect to poll (ring-client.ts).
   */
  SERVE_US: 6,
  /** First descriptor word; each descriptor has {@link DESC_WORDS} words. */
  DESC: 16,
} as const;
/** Descriptor fields (offsets within a descriptor). */
export const D_OFFSET_LO = 0;
export const D_OFFSET_HI = 1;
export const D_LENGTH = 2;
export const D_RESULT = 3;
export const D_MESSAGE_LENGTH = 4;
export const DESC_WORDS = 8;
export const CLOSED = 3;
export const MASK = 0x7fffffff;
/** Requests served back to back before the worker lets its other tasks run. */
export const BURST = 32;
/** The longest a page polls for an answer before it sleeps (ms). */
export const POLL_MAX_MS = 1;
/** A polling page still sleeps (and so runs its other tasks) at least this often (ms). */
export const POLL_FAIRNESS_MS = 8;
/** Waits per verdict on whether polling pays (ring-client.ts). */
export const POLL_WINDOW = 32;
/** Polling stops when more than this share of a window's waits still ended asleep. */
export const POLL_GIVE_UP_SHARE = 0.3;
/** Windows without polling before it is tried again. */
export const POLL_PAUSE_WINDOWS = 8;

/** Bytes before the first data area. */
export function headerBytes(slots: number): number {
  return Math.ceil(((RingSlot.DESC + slots * DESC_WORDS) * 4) / 64) * 64;
}

export type WaitAsync = (a: Int32Array, i: number, v: number, t?: number) => { async: boolean; value: Promise<string> | string };
export const waitAsync = (): WaitAsync => (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;


/** Checks the ring geometry (worker side, before allocating). */
export function checkRingGeometry(slots: number, slotBytes: number): void {
  if (!Number.isInteger(slots) || slots < 1 || slots > 64 || (slots & (slots - 1)) !== 0) {
    throw new BlockError('EINVAL', `Bulk reader slots must be a power of two from 1 to 64, got ${slots}`);
  }
  if (!Number.isSafeInteger(slotBytes) || slotBytes < 4096 || slotBytes > 64 << 20 || slots * slotBytes > 256 << 20) {
    throw new BlockError('EINVAL', `Bulk reader slots must be 4 KiB..64 MiB each and 256 MiB in all, got ${slots} of ${slotBytes}`);
  }
}


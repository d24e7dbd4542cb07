/**
 * How node-file issues a read or write: small requests as system calls on the
 * calling thread, large ones through libuv's thread pool.
 *
 * Why: a request that goes through the thread pool costs a queue, a wake-up
 * of a pool thread and a completion event; measured on a 2-core machine, an
 * async 4 KiB pwrite into the page cache costs ~25 µs of wall time and ~50 µs
 * of CPU where the system call alone costs ~10 µs and ~6 µs (64 KiB: 2× to
 * 3×). From 256 KiB up the copy dominates and the pool lets it overlap with
 * the caller's work, so large requests stay asynchronous.
 *
 * A synchronous call blocks the event loop for as long as the kernel takes,
 * which is short while the data is in the page cache (reads) and the cache
 * takes the write (appends included: measured 3-7x less CPU than through the
 * pool on tmpfs and ext4). So the choice adapts: a synchronous call that took
 * longer than {@link SLOW_CALL_MS} (it went to the device) sends the next
 * {@link ASYNC_AFTER_SLOW} calls of that kind through the pool, where several
 * can wait for the device at once, and the calling thread keeps serving.
 */
import type { FileHandle } from 'node:fs/promises';

type FsSync = typeof import('node:fs');
let fsSync: FsSync | null = null;

/** Loads node:fs for the synchronous calls (once; this module is reachable from browser bundles). */
export async function loadSyncFs(): Promise<void> {
  fsSync ??= await import('node:fs');
}

/** Largest request issued as a system call on the calling thread. */
export const SYNC_IO_MAX = 128 * 1024;
/** A synchronous call taking longer than this went to the device, not the page cache. */
export const SLOW_CALL_MS = 1;
/** Calls sent through the thread pool after a slow synchronous one. */
export const ASYNC_AFTER_SLOW = 256;

/**
 * Synchronous calls allowed between two turns of the event loop (about 5 ms
 * of page-cache I/O). A caller whose requests all complete in place (a guest
 * writing in a loop) would otherwise keep the loop in its microtasks: timers,
 * pool completions and other work (a block job) would not run until it
 * stopped. Fewer calls per turn give a job more turns and the guest fewer
 * (64: a backup's guest writes 0.44× of those without it; 512: 0.57×).
 */
export const SYNC_CALLS_PER_TURN = 512;
let callsThisTurn = 0;
let turnResetQueued = false;
const resetTurn = (): void => {
  callsThisTurn = 0;
  turnResetQueued = false;
};

/** Counts a synchronous call; past {@link SYNC_CALLS_PER_TURN} in one turn, waits for the next turn. */
function afterSyncCall(): Promise<void> | undefined {
  if (!turnResetQueued) {
    turnResetQueued = true;
    setImmediate(resetTurn);
  }
  if (++callsThisTurn < SYNC_CALLS_PER_TURN) return undefined;
  return new Promise<void>((resolve) => setImmediate(resolve));
}

/** The read and write calls of one open file, with the policy above per direction. */
export class FileIo {
  /** Calls of each kind still sent through the pool after a slow one. */
  private readonly asyncLeft = { read: 0, write: 0 };
  /** Counts, for tests and benchmarks: calls made synchronously and through the pool. */
  readonly counts = { syncReads: 0, asyncReads: 0, syncWrites: 0, asyncWrites: 0 };

  constructor(
    private readonly fh: () => FileHandle,
    /** false: always through the pool (DISKWORKER_FILE_IO=async, for comparisons). */
    private readonly allowSync = typeof process === 'undefined' || process.env?.['DISKWORKER_FILE_IO'] !== 'async',
    /** Milliseconds, for timing the synchronous calls (tests pass their own). */
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Reads up to `length` bytes at `position` into buf[offset..]; resolves to the bytes read. */
  read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return this.call('read', buf, offset, length, position);
  }

  /** Writes up to `length` bytes of buf[offset..] at `position`; resolves to the bytes written. */
  write(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return this.call('write', buf, offset, length, position);
  }

  /** One read or write, in place or through the pool by the policy of the file comment. */
  private async call(kind: 'read' | 'write', buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    const read = kind === 'read';
    if (fsSync && this.allowSync && length <= SYNC_IO_MAX) {
      if (this.asyncLeft[kind] > 0) {
        this.asyncLeft[kind]--;
      } else {
        this.counts[read ? 'syncReads' : 'syncWrites']++;
        const fd = this.fh().fd;
        const t0 = this.now();
        const n = read ? fsSync.readSync(fd, buf, offset, length, position) : fsSync.writeSync(fd, buf, offset, length, position);
        if (this.now() - t0 > SLOW_CALL_MS) this.asyncLeft[kind] = ASYNC_AFTER_SLOW;
        await afterSyncCall();
        return n;
      }
    }
    this.counts[read ? 'asyncReads' : 'asyncWrites']++;
    const fh = this.fh();
    return read ? (await fh.read(buf, offset, length, position)).bytesRead : (await fh.write(buf, offset, length, position)).bytesWritten;
  }
}

/**
 * v86 adapter: the disk-buffer object v86 0.5.x calls for `hda` / `hdb` /
 * `cdrom` (byteLength, load / onload / onprogress, get, get_and_cache,
 * get_from_cache, set, get_buffer, get_state / set_state, get_as_file), over
 * an open disk.
 *
 * ```ts
 * const disk = await dw.open({ path: 'opfs:/vm/disk.qcow2' });
 * const emulator = new V86({ hda: toV86Buffer(disk), bios: {...}, ... });
 * ```
 *
 * v86 asks for multiples of 256 bytes; reads run asynchronously (or answer
 * at once from what was read ahead, v86-readahead.ts); the bytes given to the
 * callback are valid until it returns (v86 copies them; the buffer is read
 * into again, v86-read-buffers.ts); an aborted read (v86 passes an
 * AbortSignal when it cancels I/O) does not call back. Guest writes are copied
 * before they leave (v86 may reuse its buffer) and reach the image in the
 * order v86 issued them; `flush()` on the returned object waits for them and
 * flushes the disk. Offsets are plain numbers, so disks past 2 GiB work.
 *
 * "Save machine" / "restore machine" ({@link saveMachine}, {@link restoreMachine},
 * v86-machine.ts) keep the emulator's state as the VM state of a qcow2
 * snapshot of the same disk: one file holds disk and machine.
 */
import { BlockError } from '../core/errors.js';
import { ReadAhead, READ_AHEAD_DEFAULT } from './v86-readahead.js';
import { ReadBufferPool } from './v86-read-buffers.js';

/** What the adapter needs from a disk: the page's Disk or a BlockBackend. */
export interface V86Disk {
  readonly length: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  /**
   * Reads into `buf` and returns it (the page's Disk transfers it there and
   * back): when present, the adapter reads into buffers it used before.
   */
  readInto?(offset: number, buf: Uint8Array<ArrayBuffer>): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array): Promise<void>;
  flush?(): Promise<void>;
}

/** The buffer object v86 gets. */
export interface V86DiskBuffer {
  readonly byteLength: number;
  onload: ((e: object) => void) | undefined;
  onprogress: ((e: object) => void) | undefined;
  load(): void;
  /**
   * Reads [start, start + len) and calls `fn` with the bytes, which are valid
   * only until `fn` returns (v86 copies them; the buffer is read into again):
   * copy them to keep them.
   */
  get(start: number, len: number, fn: (data: Uint8Array) => void, opts?: { signal?: AbortSignal }): void;
  get_and_cache(start: number, len: number, fn: (data: Uint8Array) => void, opts?: { signal?: AbortSignal }): void;
  get_from_cache(start: number, len: number): Uint8Array | undefined;
  set(start: number, data: Uint8Array, fn?: () => void): void;
  get_buffer(fn: (buf: ArrayBuffer | undefined) => void): void;
  get_state(): unknown[];
  set_state(state: unknown[]): void;
  get_as_file(name: string): Promise<File>;
  /**
   * Waits for the guest writes sent so far and flushes the disk. Rejects with
   * {@link writeError} once any guest write has failed: v86 cannot hear of the
   * failure, so the loss is reported here (and to `onError`) instead.
   */
  flush(): Promise<void>;
  /** The first error a guest write hit (v86 has no way to report it). */
  readonly writeError: unknown;
  /** Guest writes not yet completed. */
  readonly pendingWrites: number;
}

function checkRange(start: number, len: number, size: number, what: string): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(len) || start < 0 || len < 0 || start + len > size) {
    throw new BlockError('EINVAL', `v86 ${what} of ${len} bytes at ${start} is outside the ${size}-byte disk`);
  }
}

/** Options of {@link toV86Buffer}. */
export interface V86BufferOptions {
  /** Where guest write failures go (default: console.error). */
  onError?: (e: unknown) => void;
  /**
   * Bytes read ahead while the guest reads sequentially (v86-readahead.ts);
   * default 4 MiB, 0 turns read-ahead off.
   */
  readAhead?: number;
}

/** Wraps an open disk as a v86 disk buffer. */
export function toV86Buffer(disk: V86Disk, opts: V86BufferOptions = {}): V86DiskBuffer {
  const size = disk.length;
  // Writes and the reads that overlap them are ordered through this chain.
  let tail: Promise<void> = Promise.resolve();
  let pending = 0;
  // With readInto, reads go into buffers v86 is done with (v86-read-buffers.ts).
  const pool = disk.readInto ? new ReadBufferPool() : null;
  const readOnce = pool ? (start: number, len: number) => disk.readInto!(start, pool.take(len)) : (start: number, len: number) => disk.read(start, len);
  // Reads wait for earlier writes so the guest sees its own data.
  const readBehindWrites = (start: number, len: number) => (pending > 0 ? tail.then(() => readOnce(start, len)) : readOnce(start, len));
  const recycle = (buf: Uint8Array) => pool?.give(buf);
  const readAhead = new ReadAhead(readBehindWrites, size, opts.readAhead ?? READ_AHEAD_DEFAULT, recycle);
  // Reads not yet answered: a read found ahead is answered at once only when none is.
  let readsInFlight = 0;
  let writeError: unknown = null;
  const report = (e: unknown) => {
    writeError ??= e;
    if (opts.onError) opts.onError(e);
    else console.error('diskworker v86 adapter:', e);
  };

  const buffer: V86DiskBuffer = {
    byteLength: size,
    onload: undefined,
    onprogress: undefined,
    load() {
      queueMicrotask(() => this.onload?.({}));
    },
    get(start, len, fn, o) {
      checkRange(start, len, size, 'read');
      const signal = o?.signal;
      if (signal?.aborted) return;
      const hit = readAhead.lookup(start, len);
      readAhead.onRead(start, len);
      if (hit && 'now' in hit && readsInFlight === 0) {
        fn(hit.now);
        return;
      }
      // Bytes of a piece read ahead stay the piece's (done() lets it go); bytes read for
      // this request alone go back to the pool once v86 has copied them.
      let done = hit && 'done' in hit ? hit.done : () => {};
      const own = () => readBehindWrites(start, len).then((d) => ((done = () => recycle(d)), d));
      const run = hit === undefined ? own() : Promise.resolve('now' in hit ? hit.now.slice() : hit.later).then((d) => d ?? (done(), own()));
      readsInFlight++;
      run.then(
        (data) => {
          readsInFlight--;
          try {
            if (!signal?.aborted) fn(data);
          } finally {
            done();
          }
        },
        (e) => {
          readsInFlight--;
          done();
          report(e);
          // v86 cannot take an error: give it zeros rather than hanging the guest.
          if (!signal?.aborted) fn(new Uint8Array(len));
        },
      );
    },
    get_and_cache(start, len, fn, o) {
      this.get(start, len, fn, o);
    },
    get_from_cache() {
      return undefined;
    },
    set(start, data, fn) {
      checkRange(start, data.length, size, 'write');
      readAhead.invalidate(start, data.length);
      const copy = data.slice();
      pending++;
      tail = tail.then(
        () =>
          disk.write(start, copy).then(
            () => {
              pending--;
            },
            (e) => {
              pending--;
              report(e);
            },
          ),
      );
      fn?.();
    },
    get_buffer(fn) {
      fn(undefined);
    },
    get_state() {
      // The image is the disk's state: a machine snapshot (saveMachine) keeps it as a
      // qcow2 snapshot, and restoreMachine applies that before v86 restores the rest.
      return [];
    },
    set_state() {
      // The image already is the snapshot's disk; what was read ahead is of the old one.
      readAhead.clear();
    },
    async get_as_file(name) {
      await tail;
      const parts: Uint8Array[] = [];
      for (let pos = 0; pos < size; pos += 1 << 22) {
        parts.push(await disk.read(pos, Math.min(1 << 22, size - pos)));
      }
      return new File(parts as BlobPart[], name);
    },
    async flush() {
      await tail;
      // v86 was told its writes succeeded; a flush must not claim they are on storage.
      if (writeError !== null) throw writeError;
      await disk.flush?.();
    },
    get writeError() {
      return writeError;
    },
    get pendingWrites() {
      return pending;
    },
  };
  return buffer;
}

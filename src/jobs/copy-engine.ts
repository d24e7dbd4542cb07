/**
 * The one copy engine: `img convert`, `img commit`, `img rebase` and the
 * worker's convert, import and export run on it.
 *
 * A copy is a list of extents in target order (a planner from plan.ts makes
 * them from block status), a reader for data and a writer (target-writer.ts:
 * zero detection, sparse and compressed output). The engine runs them as a
 * pipeline: up to `readAhead` pieces read ahead, and writes issued in target
 * order with up to `writeDepth` in flight, so at most readAhead + writeDepth
 * buffers exist at once. It adds an optional rate limit, progress reported in
 * target order, cancellation through an AbortSignal and an error policy per
 * side. Whatever ends a copy early, it returns only once every read and write
 * it started has settled (so no buffer is still in use).
 */
import { BlockError, einval } from '../core/errors.js';
import { CopyError, abortError } from './copy-error.js';
import { CopyBuffers } from './buffers.js';
import { RateLimiter, systemClock, type CopyClock } from './rate-limit.js';
import type { CopyExtent } from './extent.js';
import type { ExtentWriter } from './target-writer.js';

export type { CopyExtent } from './extent.js';

/** Progress of a copy: bytes of counted extents done, of `total`. */
export interface CopyProgress {
  done: number;
  total: number;
}

/**
 * What a failed read or write does: `report` ends the copy with a
 * {@link CopyError}; `ignore` goes on (a piece that could not be read is
 * not written, the target keeps what it had there) and lists the error in
 * {@link CopyResult.errors}.
 */
export type CopyErrorAction = 'report' | 'ignore';

/** The three parts of a copy. */
export interface CopyJob {
  /** The extents, in target order; called twice when the progress total is scanned. */
  extents(): AsyncIterable<CopyExtent>;
  /** Reads data for target range [offset, offset + buf.length). */
  read(offset: number, buf: Uint8Array): Promise<void>;
  /** Writes one piece (data pieces come with their bytes). */
  write: ExtentWriter;
  /**
   * Copies a data piece to the target without reading it here (copy
   * offloading, qemu-img convert -C); false when it cannot, and the piece is
   * then read and written. Optional.
   */
  copy?(extent: CopyExtent): Promise<boolean>;
  /** After the last write (a flush, say); not called when the copy fails. */
  finish?(): Promise<void>;
}

/** How the engine runs a copy. */
export interface CopyEngineOptions {
  /** Largest data piece in bytes: data extents are cut into pieces of this size. */
  chunkSize: number;
  /** Pieces read ahead of the writes (default 8). */
  readAhead?: number;
  /** Writes in flight at once (default 4). */
  writeDepth?: number;
  /** Where buffers come from (default: own buffers of chunkSize). */
  buffers?: CopyBuffers;
  /** Bytes per second read, at most on average (default: no limit). */
  rateLimit?: number;
  /** Clock of the rate limit (default: the real one). */
  clock?: CopyClock;
  /** Cancels the copy: it rejects with an ECANCELED BlockError (or the signal's BlockError reason). */
  signal?: AbortSignal;
  /**
   * Called in target order after each counted extent is written. A throw
   * ends the copy with that error (how a caller cancels from its own check).
   */
  onProgress?: (p: CopyProgress) => void | Promise<void>;
  /** The total given to onProgress; by default the counted extents are summed up first. */
  progressTotal?: number;
  /**
   * Reads data pieces that follow each other with one read of up to this
   * many bytes (at most chunkSize; default 0, off; never with
   * {@link CopyJob.copy}): each piece is
   * still written on its own. A source whose block status comes in small runs
   * (a compressed qcow2 answers one cluster at a time) is then read in large
   * requests, which it may serve faster (qcow2 decodes a batch of compressed
   * clusters on several threads). When such a read fails, each of its pieces
   * is read on its own, so errors name the piece as they would without.
   */
  coalesceReads?: number;
  /** Which extents progress counts (default: all). */
  counts?: (e: CopyExtent) => boolean;
  /** On a failed read (default report). */
  onReadError?: CopyErrorAction;
  /** On a failed write (default report). */
  onWriteError?: CopyErrorAction;
}

/** What a copy did. */
export interface CopyResult {
  /** Bytes of data extents (read, then handed to the writer unless the read failed). */
  dataBytes: number;
  /** Bytes of zero extents. */
  zeroBytes: number;
  /** Bytes of skipped extents. */
  skippedBytes: number;
  /** Most buffers in flight at once. */
  maxBuffersInFlight: number;
  /** Errors the policy ignored, in target order. */
  errors: CopyError[];
}

interface Piece {
  /** The piece (a data extent is cut into pieces of at most chunkSize). */
  extent: CopyExtent;
  /** The extent it is part of. */
  whole: CopyExtent;
  /** Last piece of its extent (progress counts the extent then). */
  last: boolean;
  buf: Uint8Array | null;
  read: Promise<void>;
  /** The job copied it itself ({@link CopyJob.copy}): nothing to write. */
  copied?: boolean;
  /** What the read-ahead counts: the piece, or the read it shares. */
  unit: object;
  /** Part of a read not started yet (coalescing). */
  waiting?: boolean;
  /** The buffer shared by the pieces of one read, and how many still hold it. */
  shared?: { buf: Uint8Array; holders: number };
}

/** Data pieces read together (coalescing): [offset, offset + bytes). */
interface ReadGroup {
  pieces: Piece[];
  offset: number;
  bytes: number;
}

interface Pending {
  piece: Piece;
  /** Resolves to the failure of the write, or null. */
  done: Promise<CopyError | null>;
}

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw einval(`Invalid copy ${name}: ${v}`);
  return v;
}

/**
 * Runs a copy (see the file comment). Rejects with a {@link CopyError} (code
 * of the failure, target offset) when a read or write fails under the
 * `report` policy, with an ECANCELED {@link BlockError} when cancelled, and
 * with what the planner, onProgress or finish threw otherwise.
 */
export async function runCopy(job: CopyJob, o: CopyEngineOptions): Promise<CopyResult> {
  const chunkSize = positiveInt('chunk size', o.chunkSize);
  const readAhead = positiveInt('read-ahead', o.readAhead ?? 8);
  const writeDepth = positiveInt('write depth', o.writeDepth ?? 4);
  const buffers = o.buffers ?? new CopyBuffers({ size: chunkSize });
  const limiter = o.rateLimit !== undefined ? new RateLimiter(o.rateLimit, o.clock ?? systemClock) : undefined;
  const counts = o.counts ?? (() => true);
  const signal = o.signal;
  const result: CopyResult = { dataBytes: 0, zeroBytes: 0, skippedBytes: 0, maxBuffersInFlight: 0, errors: [] };
  const checkAbort = () => {
    if (signal?.aborted) throw abortError(signal);
  };
  checkAbort();

  let total = 0;
  if (o.onProgress) {
    if (o.progressTotal !== undefined) total = o.progressTotal;
    else for await (const e of job.extents()) if (counts(e)) total += e.length;
  }
  let done = 0;

  const reading: Piece[] = [];
  const writing: Pending[] = [];
  const coalesce = !job.copy && (o.coalesceReads ?? 0) > 0;
  const groupMax = Math.min(chunkSize, o.coalesceReads ?? 0);
  const release = (p: Piece) => {
    if (p.shared) {
      if (p.buf && --p.shared.holders === 0) buffers.give(p.shared.buf);
    } else if (p.buf) buffers.give(p.buf);
    p.buf = null;
  };
  const startRead = (p: Piece): Promise<void> => {
    if (!job.copy) return readPiece(p);
    return job.copy(p.extent).then(
      (copied) => {
        if (copied) p.copied = true;
        else return readPiece(p);
      },
      (err: unknown) => {
        throw new CopyError('write', p.extent.offset, err);
      },
    );
  };
  const readPiece = (p: Piece): Promise<void> => {
    p.buf = buffers.take(p.extent.length);
    return readInto(p);
  };
  const readInto = (p: Piece): Promise<void> => {
    const e = p.extent;
    const buf = p.buf!;
    return job.read(e.offset, buf).then(
      () => {
        // A view into WASM memory is detached if that memory grew meanwhile: never let that
        // pass as a read of nothing.
        if (buf.byteLength !== e.length) {
          throw new CopyError('read', e.offset, new BlockError('EIO', `read buffer for ${e.length} bytes at ${e.offset} was detached (WASM memory grew)`));
        }
      },
      (err: unknown) => {
        throw new CopyError('read', e.offset, err);
      },
    );
  };
  /** The read of the pieces gathered so far (coalescing). */
  let group: ReadGroup | null = null;
  const startGroup = (): void => {
    const g = group;
    group = null;
    if (!g) return;
    for (const p of g.pieces) p.waiting = false;
    if (g.pieces.length === 1) {
      const p = g.pieces[0]!;
      p.read = startRead(p);
      p.read.catch(() => undefined);
      return;
    }
    const buf = buffers.take(g.bytes);
    const shared = { buf, holders: g.pieces.length };
    const whole = job.read(g.offset, buf).then(() => {
      if (buf.byteLength !== g.bytes) throw new Error('detached');
    });
    for (const p of g.pieces) {
      const rel = p.extent.offset - g.offset;
      p.buf = buf.subarray(rel, rel + p.extent.length);
      p.shared = shared;
      // On failure each piece is read on its own: the error is its own, at its offset.
      p.read = whole.catch(() => readInto(p));
      p.read.catch(() => undefined);
    }
  };
  /** Adds data piece `p` to the read being gathered, starting that read when it is full. */
  const gather = (p: Piece): void => {
    const e = p.extent;
    if (group && (e.offset !== group.offset + group.bytes || group.bytes + e.length > groupMax)) startGroup();
    group ??= { pieces: [], offset: e.offset, bytes: 0 };
    group.pieces.push(p);
    group.bytes += e.length;
    p.unit = group;
    p.waiting = true;
    if (group.bytes >= groupMax) startGroup();
  };
  /** Read units (reads, or pieces without one) in `reading`. */
  let units = 0;
  const failed = (err: CopyError, action: CopyErrorAction | undefined): void => {
    if ((action ?? 'report') === 'report') throw err;
    result.errors.push(err);
  };
  /** Hands the oldest read piece to its write. */
  const drainOne = async () => {
    const p = reading.shift()!;
    if (p.waiting) startGroup();
    if (reading[0]?.unit !== p.unit) units--;
    let readOk = true;
    try {
      await p.read;
    } catch (err) {
      release(p);
      failed(err as CopyError, o.onReadError);
      readOk = false;
    }
    const e = p.extent;
    let w: Promise<CopyError | null> = Promise.resolve(null);
    // A piece copied by the job is on the target already.
    if (readOk && !p.copied) {
      try {
        w = job.write(e, p.buf).then(
          () => null,
          (err: unknown) => new CopyError('write', e.offset, err),
        );
      } catch (err) {
        w = Promise.resolve(new CopyError('write', e.offset, err));
      }
    }
    writing.push({
      piece: p,
      done: w.finally(() => release(p)),
    });
    if (writing.length >= writeDepth) await popWrite();
  };
  /** Waits for the oldest write, then reports its progress. */
  const popWrite = async () => {
    const { piece, done: w } = writing.shift()!;
    const err = await w;
    if (err) failed(err, o.onWriteError);
    const e = piece.whole;
    if (piece.last && o.onProgress && counts(e)) {
      done += e.length;
      await o.onProgress({ done, total });
    }
  };

  try {
    for await (const e of job.extents()) {
      if (!Number.isSafeInteger(e.offset) || e.offset < 0 || !Number.isSafeInteger(e.length) || e.length < 1) {
        throw einval(`Invalid copy extent: ${e.length} bytes at ${e.offset}`);
      }
      if (e.kind === 'zero') result.zeroBytes += e.length;
      else if (e.kind === 'skip') result.skippedBytes += e.length;
      else result.dataBytes += e.length;
      const step = e.kind === 'data' ? chunkSize : e.length;
      for (let off = 0; off < e.length; off += step) {
        checkAbort();
        const n = Math.min(step, e.length - off);
        const extent = n === e.length ? e : { offset: e.offset + off, length: n, kind: e.kind };
        const p: Piece = { extent, whole: e, last: off + n >= e.length, buf: null, read: Promise.resolve(), unit: {} };
        if (e.kind === 'data') {
          if (limiter) await limiter.take(n, signal);
          checkAbort();
          if (coalesce) gather(p);
          else {
            p.read = startRead(p);
            p.read.catch(() => undefined);
          }
        } else if (group) {
          startGroup();
        }
        if (reading[reading.length - 1]?.unit !== p.unit) units++;
        reading.push(p);
        while (units >= readAhead) await drainOne();
      }
    }
    startGroup();
    while (reading.length) {
      checkAbort();
      await drainOne();
    }
    while (writing.length) await popWrite();
    await job.finish?.();
  } catch (err) {
    // Let every read and write in flight settle before the caller may reuse or free anything.
    await Promise.allSettled([...reading.map((p) => p.read), ...writing.map((w) => w.done)]);
    for (const p of reading) release(p);
    throw err;
  } finally {
    result.maxBuffersInFlight = buffers.maxInFlight;
  }
  return result;
}

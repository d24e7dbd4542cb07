/**
 * Sequential read-ahead for the v86 adapter (issue #18).
 *
 * v86's IDE disk has one command at a time: a guest reading a file waits for
 * each request's round trip to the block worker before it issues the next,
 * and the worker sits idle while the guest works on the data. When reads run
 * on from where the previous one ended, the next ones are asked for ahead of
 * time, so that the worker's reads overlap the guest's work and a request the
 * guest makes is answered from the page. The window starts at twice the
 * request and doubles with each read that continues the run, up to a bound;
 * any read elsewhere ends the run (random reads fetch nothing extra).
 *
 * Coherence: every write of the adapter drops the pieces it overlaps,
 * including pieces still in flight, and pieces are fetched behind the
 * adapter's queued writes, so a piece never holds data older than a write
 * the guest was told is done.
 *
 * A dropped piece's buffer goes back to the adapter (`release`) once its read
 * has settled and no answer still uses it, to be read into again.
 */

/** One piece read ahead: [start, end) of the disk. */
interface Piece {
  readonly start: number;
  readonly end: number;
  /** The bytes once read; undefined while in flight or after a failed read. */
  data: Uint8Array | undefined;
  /** Settles with the bytes, or undefined when the read failed. */
  readonly ready: Promise<Uint8Array | undefined>;
  /** Answers waiting for this piece or using its bytes. */
  holds: number;
  /** No longer in the list: its buffer goes back once nothing holds it. */
  dropped: boolean;
}

/**
 * What a lookup finds: the bytes now (valid until the caller returns), the
 * bytes later (undefined when a read failed; call `done` once they are used),
 * or nothing (read it yourself).
 */
export type ReadAheadHit = { now: Uint8Array } | { later: Promise<Uint8Array | undefined>; done: () => void } | undefined;

/** Default bound of the bytes read ahead (and kept) per disk. */
export const READ_AHEAD_DEFAULT = 4 << 20;
/** Largest single read ahead request. */
const PIECE_MAX = 1 << 20;

/** The read-ahead of one v86 disk buffer. */
export class ReadAhead {
  /** Pieces in disk order, not overlapping. */
  private pieces: Piece[] = [];
  /** End of the previous guest read, -1 before the first. */
  private lastEnd = -1;
  /** Bytes to keep ahead of the guest while its reads run on; 0 outside a run. */
  private ahead = 0;

  /**
   * @param fetch reads [start, start + len) behind the adapter's queued writes.
   * @param size the disk's length.
   * @param maxBytes bound of the bytes read ahead; 0 turns read-ahead off.
   * @param release takes back the buffer of a piece no longer needed.
   */
  constructor(
    private readonly fetch: (start: number, len: number) => Promise<Uint8Array>,
    private readonly size: number,
    private readonly maxBytes: number = READ_AHEAD_DEFAULT,
    private readonly release: (buf: Uint8Array) => void = () => {},
  ) {}

  /** Bytes held or in flight (for tests and the bound). */
  get bytes(): number {
    let n = 0;
    for (const p of this.pieces) n += p.end - p.start;
    return n;
  }

  /**
   * The bytes of [start, start + len) if pieces cover all of it: a view of a
   * piece when one holds it all, else a copy joined from several.
   */
  lookup(start: number, len: number): ReadAheadHit {
    if (len === 0 || this.pieces.length === 0) return undefined;
    const end = start + len;
    const parts: Piece[] = [];
    let at = start;
    for (const p of this.pieces) {
      if (p.end <= at) continue;
      if (p.start > at) break;
      parts.push(p);
      at = p.end;
      if (at >= end) break;
    }
    if (at < end) return undefined;
    const cut = (pieces: Uint8Array[]): Uint8Array => {
      if (pieces.length === 1) return pieces[0]!.subarray(start - parts[0]!.start, end - parts[0]!.start);
      const out = new Uint8Array(len);
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i]!;
        const from = Math.max(start, p.start);
        const to = Math.min(end, p.end);
        out.set(pieces[i]!.subarray(from - p.start, to - p.start), from - start);
      }
      return out;
    };
    if (parts.every((p) => p.data !== undefined)) return { now: cut(parts.map((p) => p.data!)) };
    for (const p of parts) p.holds++;
    const later = Promise.all(parts.map((p) => p.ready)).then((datas) => (datas.every((d) => d !== undefined) ? cut(datas as Uint8Array[]) : undefined));
    let released = false;
    const done = () => {
      if (released) return;
      released = true;
      for (const p of parts) {
        p.holds--;
        this.recycle(p);
      }
    };
    return { later, done };
  }

  /**
   * Notes a guest read of [start, start + len): a read that continues the
   * previous one widens the window and fetches what it lacks; pieces wholly
   * behind the read are dropped.
   */
  onRead(start: number, len: number): void {
    if (this.maxBytes <= 0 || len === 0) return;
    const end = start + len;
    if (start === this.lastEnd) {
      this.ahead = this.ahead === 0 ? Math.min(this.maxBytes, 2 * len) : Math.min(this.maxBytes, 2 * this.ahead);
    } else {
      this.ahead = 0;
    }
    this.lastEnd = end;
    // What the guest has read it will not ask for again soon; elsewhere, the run ended.
    this.dropWhere((p) => p.end <= start || p.start >= end + this.ahead);
    if (this.ahead === 0) return;
    const chunk = Math.min(Math.max(len, PIECE_MAX >> 4), PIECE_MAX);
    const until = Math.min(this.size, end + this.ahead);
    let from = end;
    while (from < until && this.bytes < this.maxBytes) {
      const held = this.pieces.find((p) => p.start <= from && p.end > from);
      if (held) {
        from = held.end;
        continue;
      }
      const next = this.pieces.find((p) => p.start > from);
      const n = Math.min(until - from, chunk, (next?.start ?? Infinity) - from);
      this.add(from, n);
      from += n;
    }
  }

  /** Drops the pieces a write of [start, start + len) overlaps (also those in flight). */
  invalidate(start: number, len: number): void {
    if (this.pieces.length === 0) return;
    const end = start + len;
    this.dropWhere((p) => p.end > start && p.start < end);
  }

  /** Drops everything (the disk changed under the adapter). */
  clear(): void {
    this.dropWhere(() => true);
    this.lastEnd = -1;
    this.ahead = 0;
  }

  private dropWhere(test: (p: Piece) => boolean): void {
    const keep: Piece[] = [];
    for (const p of this.pieces) {
      if (!test(p)) {
        keep.push(p);
        continue;
      }
      p.dropped = true;
      this.recycle(p);
    }
    this.pieces = keep;
  }

  /** Gives a dropped piece's buffer back once its read has settled and nothing holds it. */
  private recycle(p: Piece): void {
    if (!p.dropped || p.holds > 0 || p.data === undefined) return;
    const buf = p.data;
    p.data = undefined;
    this.release(buf);
  }

  private add(start: number, len: number): void {
    const piece: Piece = {
      start,
      end: start + len,
      data: undefined,
      holds: 0,
      dropped: false,
      ready: this.fetch(start, len).then(
        (d) => {
          piece.data = d;
          // Dropped while in flight (a write landed on it): nothing will use these bytes.
          if (piece.dropped && piece.holds === 0) queueMicrotask(() => this.recycle(piece));
          return d;
        },
        () => {
          // A failed read ahead is not the guest's error: its own read will ask again.
          this.dropWhere((p) => p === piece);
          return undefined;
        },
      ),
    };
    const i = this.pieces.findIndex((p) => p.start > start);
    if (i < 0) this.pieces.push(piece);
    else this.pieces.splice(i, 0, piece);
  }
}

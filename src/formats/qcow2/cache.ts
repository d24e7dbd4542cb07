/**
 * Metadata caches (L2 table slices, refcount blocks) and the driver lock.
 *
 * A cache holds at most `capacity` entries of `entrySize` bytes, keyed by
 * their host offset, in LRU order. Modified entries stay dirty until
 * {@link MetaCache.flush} (or eviction) writes them; `before` runs first so a
 * cache can depend on another one (L2 tables are written only after the
 * refcount blocks that count their clusters, QEMU's cache dependency).
 */
import type { DebugEvent } from '../../core/debug-event.js';
import type { BdrvChild } from '../../core/child.js';
import { withContext } from '../../core/errors.js';

interface Entry {
  buf: Uint8Array;
  dirty: boolean;
  /** Bumped on every change, so a flush knows whether what it wrote is still current. */
  gen: number;
  lastUse: number;
}

/** Source of {@link MetaCache.epoch} values, unique across caches. */
let epochCounter = 0;

export class MetaCache {
  /**
   * Changes whenever a cached buffer may stop being the current content of
   * its offset (an entry dropped, evicted or given a new buffer); adding
   * entries or changing a buffer in place keeps it. Memos of a peeked buffer
   * (lookup.ts) stay valid while it is unchanged. Unique across caches.
   */
  epoch = ++epochCounter;
  private readonly entries = new Map<number, Entry>();
  private readonly loading = new Map<number, Promise<Uint8Array>>();
  /** LRU use clock (bumped on every use). */
  clock = 0;
  /** The flush in progress: flushes run one at a time, so two writes of one entry never race. */
  private flushing: Promise<void> | null = null;
  /** Runs before dirty entries are written (dependency flush). */
  before: (() => Promise<void>) | null = null;
  /** Checks each write of an entry before it is made (throws to refuse: QEMU's overlap check). */
  checkWrite: ((offset: number, bytes: number) => Promise<void>) | null = null;
  /** Debug events announced on the child before a load and before a write-back (l2_load, l2_update). */
  loadEvent: DebugEvent | null = null;
  writeEvent: DebugEvent | null = null;
  /** Checks a table's bytes after loading (throws to refuse). */
  validate: ((offset: number, buf: Uint8Array) => void) | null = null;

  constructor(
    readonly name: string,
    private readonly child: () => BdrvChild,
    readonly entrySize: number,
    public capacity: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** The entry at `offset`, read from storage on a miss. */
  async get(offset: number): Promise<Uint8Array> {
    const e = this.entries.get(offset);
    if (e) {
      e.lastUse = ++this.clock;
      return e.buf;
    }
    const pending = this.loading.get(offset);
    if (pending) return pending;
    const p = this.load(offset);
    this.loading.set(offset, p);
    try {
      return await p;
    } finally {
      this.loading.delete(offset);
    }
  }

  /** The entry if cached, without I/O. */
  peek(offset: number): Uint8Array | undefined {
    const e = this.entries.get(offset);
    if (e === undefined) return undefined;
    e.lastUse = ++this.clock;
    return e.buf;
  }

  /** Marks the entry at `offset` used (LRU), for a reader holding a memo of its buffer. */
  touch(offset: number): number {
    const e = this.entries.get(offset);
    if (e !== undefined) e.lastUse = ++this.clock;
    return this.clock;
  }

  private async load(offset: number): Promise<Uint8Array> {
    const buf = new Uint8Array(this.entrySize);
    await withContext(`while reading ${this.name} at 0x${offset.toString(16)}`, { offset }, async () => {
      // As in QEMU, a table past the end of the file reads as zeros.
      const child = this.child();
      if (this.loadEvent) await child.debugEvent(this.loadEvent);
      const have = Math.max(0, Math.min(this.entrySize, child.length - offset));
      if (have > 0) await child.preadv(offset, have, buf.subarray(0, have));
    });
    this.validate?.(offset, buf);
    await this.makeRoom();
    const again = this.entries.get(offset);
    if (again) return again.buf;
    this.entries.set(offset, { buf, dirty: false, gen: 0, lastUse: ++this.clock });
    return buf;
  }

  /** Inserts an entry whose content is known (a new table); dirty if not yet on disk. */
  async put(offset: number, buf: Uint8Array, dirty: boolean): Promise<void> {
    const e = this.entries.get(offset);
    if (e) {
      if (e.buf !== buf) this.epoch = ++epochCounter;
      e.buf = buf;
      e.dirty = e.dirty || dirty;
      e.gen++;
      e.lastUse = ++this.clock;
      return;
    }
    await this.makeRoom();
    this.entries.set(offset, { buf, dirty, gen: 0, lastUse: ++this.clock });
  }

  markDirty(offset: number): void {
    const e = this.entries.get(offset);
    if (e) {
      e.dirty = true;
      e.gen++;
    }
  }

  /**
   * Records that `buf` (the content of the entry at `offset`) was modified:
   * synchronously, re-inserting it if a concurrent reader evicted it.
   */
  setDirty(offset: number, buf: Uint8Array): void {
    const e = this.entries.get(offset);
    if (e) {
      if (e.buf !== buf) this.epoch = ++epochCounter;
      e.buf = buf;
      e.dirty = true;
      e.gen++;
      e.lastUse = ++this.clock;
    } else {
      this.entries.set(offset, { buf, dirty: true, gen: 0, lastUse: ++this.clock });
    }
  }

  /** Drops an entry without writing it (its cluster was freed). */
  forget(offset: number): void {
    if (this.entries.delete(offset)) this.epoch = ++epochCounter;
  }

  /** Drops entries in [start, end) without writing them. */
  forgetRange(start: number, end: number): void {
    for (const k of [...this.entries.keys()]) if (k >= start && k < end) this.entries.delete(k);
    this.epoch = ++epochCounter;
  }

  get hasDirty(): boolean {
    for (const e of this.entries.values()) if (e.dirty) return true;
    return false;
  }

  private async makeRoom(): Promise<void> {
    while (this.entries.size >= this.capacity) {
      let victim: number | undefined;
      let best = Infinity;
      // Prefer clean entries; write a dirty one only when all are dirty.
      for (const [k, e] of this.entries) {
        const score = e.lastUse + (e.dirty ? 1e15 : 0);
        if (score < best) {
          best = score;
          victim = k;
        }
      }
      if (victim === undefined) return;
      const e = this.entries.get(victim)!;
      if (e.dirty) {
        // Choose again afterwards: the entry may have changed while it was written.
        await this.flush();
        continue;
      }
      this.entries.delete(victim);
      this.epoch = ++epochCounter;
    }
  }

  /**
   * Writes every dirty entry (after the dependency). Does not flush the child.
   * The entries are copied before the dependency runs and stay dirty until
   * written, so what is written is covered by the dependency; a change made
   * meanwhile (by a request outside the lock) may depend on something the
   * dependency did not write, and is written by the next flush.
   *
   * `stable`: the caller guarantees that no entry changes before the flush
   * returns (the node is drained and the caller alone works on the image, as
   * a snapshot operation does), so the entries are written from their own
   * buffers. The copies cost more than the writes: every fresh buffer is a
   * page fault per 4 KiB.
   */
  async flush(stable = false): Promise<void> {
    while (this.flushing) await this.flushing.catch(() => undefined);
    if (!this.hasDirty) return;
    const run = this.flushDirty(stable);
    this.flushing = run;
    try {
      await run;
    } finally {
      if (this.flushing === run) this.flushing = null;
    }
  }

  private async flushDirty(stable: boolean): Promise<void> {
    const dirty = [...this.entries]
      .filter(([, e]) => e.dirty)
      .sort((a, b) => a[0] - b[0])
      .map(([off, e]) => ({ off, e, gen: e.gen, copy: stable ? e.buf : e.buf.slice() }));
    if (this.before) await this.before();
    const write = async ({ off, e, gen, copy }: (typeof dirty)[number]): Promise<void> => {
      // Dropped meanwhile: its cluster was freed, and must not be written.
      if (this.entries.get(off) !== e) return;
      if (this.checkWrite) await this.checkWrite(off, this.entrySize);
      await withContext(`while writing ${this.name} at 0x${off.toString(16)}`, { offset: off }, async () => {
        if (this.writeEvent) await this.child().debugEvent(this.writeEvent);
        await this.child().pwritev(off, this.entrySize, copy);
      });
      if (e.gen === gen) e.dirty = false;
    };
    // The entries of one flush may reach the disk in any order (they depend only on what the
    // dependency wrote), so a stable flush writes them all at once; one by one (QEMU's order)
    // when they may change meanwhile or a debugging child counts the writes.
    if (!stable || dirty.length < 2 || this.child().node.instance.debug) {
      for (const d of dirty) await write(d);
      return;
    }
    const results = await Promise.allSettled(dirty.map(write));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Drops clean entries not used since `mark` (cache-clean-interval). */
  dropIdle(mark: number): void {
    for (const [k, e] of this.entries) {
      if (!e.dirty && e.lastUse <= mark) {
        this.entries.delete(k);
        this.epoch = ++epochCounter;
      }
    }
  }

  /** Current use clock, for {@link dropIdle}. */
  get now(): number {
    return this.clock;
  }

  clear(): void {
    this.entries.clear();
    this.epoch = ++epochCounter;
  }
}

/** A FIFO async lock (QEMU's s->lock). */
export class Mutex {
  private locked = false;
  private readonly waiters: Array<() => void> = [];

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.locked) await new Promise<void>((r) => this.waiters.push(r));
    else this.locked = true;
    try {
      return await fn();
    } finally {
      const next = this.waiters.shift();
      if (next) next();
      else this.locked = false;
    }
  }
}

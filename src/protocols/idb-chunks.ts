/**
 * The chunk logic of the idb back end, independent of IndexedDB so it can be
 * unit-tested in Node: an image is a size plus fixed-size chunks; a missing
 * chunk reads as zeros. Writes collect in a dirty set; a commit stores every
 * dirty chunk and the metadata in one atomic batch (one IndexedDB
 * transaction), so the stored image is always the state at some commit.
 */
import { BlockError, toBlockError } from '../core/errors.js';
import { isZeroBuffer } from '../core/zero-detect.js';

/** Metadata record of an image. */
export interface IdbMeta {
  size: number;
  chunkSize: number;
  version: 1;
}

/** What the chunk logic needs from storage (IndexedDB, or a map in tests). */
export interface ChunkStore {
  /** Reads chunks; undefined for missing ones. One transaction. */
  getMany(name: string, indexes: number[]): Promise<Array<ArrayBuffer | Uint8Array | undefined>>;
  /**
   * Stores in one atomic transaction, in this order: deletes of every chunk at
   * or after `deleteFrom` (when set), deletes of `deletes`, `puts`, and `meta`. `durable`
   * asks for a strict (flushed) commit.
   */
  commit(
    name: string,
    puts: Array<[number, Uint8Array]>,
    deletes: number[],
    deleteFrom: number | undefined,
    meta: IdbMeta,
    durable: boolean,
  ): Promise<void>;
}

export interface ChunkedImageOptions {
  /** Bytes of clean chunks kept in memory. */
  cacheBytes?: number;
  /** Dirty bytes that force a (non-durable) commit from a write. */
  writebackBytes?: number;
}

/** An open chunked image. */
export class ChunkedImage {
  private dirty = new Map<number, Uint8Array | null>();
  private pending = new Map<number, Uint8Array | null>();
  private readonly cache = new Map<number, Uint8Array>();
  private deleteFrom: number | undefined;
  private metaDirty = false;
  private committing: Promise<void> | null = null;
  private readonly maxCached: number;
  private readonly writebackChunks: number;
  /** Commits done (for tests and stats). */
  commits = 0;

  constructor(
    private readonly store: ChunkStore,
    readonly name: string,
    private meta: IdbMeta,
    opts: ChunkedImageOptions = {},
  ) {
    this.maxCached = Math.max(4, Math.floor((opts.cacheBytes ?? 32 * 1024 * 1024) / meta.chunkSize));
    this.writebackChunks = Math.max(4, Math.floor((opts.writebackBytes ?? 16 * 1024 * 1024) / meta.chunkSize));
  }

  get size(): number {
    return this.meta.size;
  }
  get chunkSize(): number {
    return this.meta.chunkSize;
  }
  /** Dirty (uncommitted) chunk count. */
  get dirtyChunks(): number {
    return this.dirty.size;
  }

  private cached(idx: number): Uint8Array | null | undefined {
    if (this.dirty.has(idx)) return this.dirty.get(idx)!;
    if (this.pending.has(idx)) return this.pending.get(idx)!;
    if (this.deleteFrom !== undefined && idx >= this.deleteFrom) return null;
    const c = this.cache.get(idx);
    if (c) {
      this.cache.delete(idx);
      this.cache.set(idx, c);
    }
    return c;
  }

  private remember(idx: number, c: Uint8Array): void {
    this.cache.set(idx, c);
    while (this.cache.size > this.maxCached) this.cache.delete(this.cache.keys().next().value as number);
  }

  /** Chunks [first, last] with missing ones loaded in one batch; null = zeros. */
  private async load(first: number, last: number): Promise<Map<number, Uint8Array | null>> {
    const out = new Map<number, Uint8Array | null>();
    const missing: number[] = [];
    for (let i = first; i <= last; i++) {
      const c = this.cached(i);
      if (c === undefined) missing.push(i);
      else out.set(i, c);
    }
    if (missing.length > 0) {
      const got = await this.store.getMany(this.name, missing);
      missing.forEach((idx, k) => {
        const v = got[k];
        // Re-check: a write may have landed while we waited.
        const now = this.cached(idx);
        if (now !== undefined) {
          out.set(idx, now);
          return;
        }
        if (v === undefined) {
          out.set(idx, null);
          return;
        }
        let c = v instanceof Uint8Array ? v : new Uint8Array(v);
        if (c.length !== this.meta.chunkSize) {
          const full = new Uint8Array(this.meta.chunkSize);
          full.set(c.subarray(0, this.meta.chunkSize));
          c = full;
        }
        this.remember(idx, c);
        out.set(idx, c);
      });
    }
    return out;
  }

  async read(offset: number, buf: Uint8Array, bytes = buf.length): Promise<void> {
    const cs = this.meta.chunkSize;
    const end = Math.min(offset + bytes, this.meta.size);
    if (end > offset) {
      const first = Math.floor(offset / cs);
      const last = Math.floor((end - 1) / cs);
      const chunks = await this.load(first, last);
      let pos = offset;
      for (let i = first; i <= last; i++) {
        const within = pos - i * cs;
        const n = Math.min(cs - within, end - pos);
        const c = chunks.get(i);
        if (c) buf.set(c.subarray(within, within + n), pos - offset);
        else buf.fill(0, pos - offset, pos - offset + n);
        pos += n;
      }
    }
    if (end - offset < bytes) buf.fill(0, Math.max(0, end - offset), bytes);
  }

  /** A chunk buffer this image owns and may modify (moves it out of pending / cache). */
  private writable(idx: number, current: Uint8Array | null): Uint8Array {
    if (current && this.dirty.get(idx) === current) return current;
    const own = this.pending.get(idx) === current && current ? current : null;
    if (own) {
      this.pending.delete(idx);
      return own;
    }
    if (current && this.cache.get(idx) === current) {
      this.cache.delete(idx);
      return current;
    }
    const c = new Uint8Array(this.meta.chunkSize);
    if (current) c.set(current);
    return c;
  }

  /** Writes `data` (or zeros when null) at `offset`; the image grows when the write ends past it. */
  async write(offset: number, data: Uint8Array | null, bytes = data ? data.length : 0): Promise<void> {
    if (bytes === 0) return;
    const cs = this.meta.chunkSize;
    const end = offset + bytes;
    const first = Math.floor(offset / cs);
    const last = Math.floor((end - 1) / cs);
    // Partial chunks need their old content; load the (at most two) in one batch.
    const partial: number[] = [];
    if (offset % cs !== 0) partial.push(first);
    if (end % cs !== 0 && (last !== first || partial.length === 0)) partial.push(last);
    const old = new Map<number, Uint8Array | null>();
    for (const i of partial) {
      if (i * cs >= this.meta.size) old.set(i, null);
      else for (const [k, v] of await this.load(i, i)) old.set(k, v);
    }
    let pos = offset;
    for (let i = first; i <= last; i++) {
      const within = pos - i * cs;
      const n = Math.min(cs - within, end - pos);
      if (n === cs) {
        if (!data) this.dirty.set(i, null);
        else {
          const c = this.writable(i, this.dirty.get(i) ?? null);
          c.set(data.subarray(pos - offset, pos - offset + n));
          this.dirty.set(i, c);
        }
        this.pending.delete(i);
      } else {
        const cur = this.dirty.has(i) ? this.dirty.get(i)! : (old.get(i) ?? null);
        if (!data && !cur) {
          this.dirty.set(i, null);
        } else {
          const c = this.writable(i, cur);
          if (data) c.set(data.subarray(pos - offset, pos - offset + n), within);
          else c.fill(0, within, within + n);
          this.dirty.set(i, c);
        }
        this.pending.delete(i);
      }
      this.cache.delete(i);
      pos += n;
    }
    if (end > this.meta.size) {
      this.meta = { ...this.meta, size: end };
      this.metaDirty = true;
    }
    if (this.dirty.size >= this.writebackChunks) await this.commit(false);
  }

  /** Changes the size; chunks past the end are dropped, the tail of the last one zeroed. */
  async truncate(size: number): Promise<void> {
    const cs = this.meta.chunkSize;
    if (size < this.meta.size) {
      const keep = Math.ceil(size / cs);
      if (size % cs !== 0) {
        const i = keep - 1;
        const cur = (await this.load(i, i)).get(i) ?? null;
        if (cur) {
          const c = this.writable(i, cur);
          c.fill(0, size - i * cs);
          this.dirty.set(i, c);
          this.pending.delete(i);
        }
      }
      for (const m of [this.dirty, this.pending]) for (const k of [...m.keys()]) if (k >= keep) m.delete(k);
      for (const k of [...this.cache.keys()]) if (k >= keep) this.cache.delete(k);
      this.deleteFrom = Math.min(this.deleteFrom ?? keep, keep);
    }
    this.meta = { ...this.meta, size };
    this.metaDirty = true;
  }

  /** Stores every dirty chunk and the metadata in one transaction. */
  async commit(durable: boolean): Promise<void> {
    while (this.committing) await this.committing.catch(() => undefined);
    if (this.dirty.size === 0 && !this.metaDirty && this.deleteFrom === undefined && !durable) return;
    const batch = this.dirty;
    this.dirty = new Map();
    this.pending = batch;
    const deleteFrom = this.deleteFrom;
    this.deleteFrom = undefined;
    const metaWasDirty = this.metaDirty;
    this.metaDirty = false;
    const puts: Array<[number, Uint8Array]> = [];
    const deletes: number[] = [];
    for (const [i, c] of batch) {
      if (c && !isZeroBuffer(c)) puts.push([i, c]);
      else deletes.push(i);
    }
    this.committing = this.store.commit(this.name, puts, deletes, deleteFrom, this.meta, durable);
    try {
      await this.committing;
      this.commits++;
      for (const [i, c] of this.pending) if (c && !isZeroBuffer(c)) this.remember(i, c);
      this.pending = new Map();
    } catch (e) {
      // Nothing was stored: the batch is dirty again (unless rewritten since).
      for (const [i, c] of this.pending) if (!this.dirty.has(i)) this.dirty.set(i, c);
      this.pending = new Map();
      if (deleteFrom !== undefined) this.deleteFrom = Math.min(this.deleteFrom ?? deleteFrom, deleteFrom);
      this.metaDirty ||= metaWasDirty;
      const err = toBlockError(e);
      if (err.code === 'ENOSPC') {
        throw new BlockError('ENOSPC', `No space left on device while storing IndexedDB image '${this.name}': the storage quota is exhausted (${err.message})`, {}, { cause: e });
      }
      throw err.withPrefix(`Could not store IndexedDB image '${this.name}'`);
    } finally {
      this.committing = null;
    }
  }

  /** Bytes of chunks known to be stored or dirty (an estimate: loaded ones only). */
  get allocatedEstimate(): number {
    return (this.cache.size + this.dirty.size) * this.meta.chunkSize;
  }
}

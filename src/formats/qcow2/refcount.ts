/**
 * Reference counts of an image: its refcount table and blocks (through a
 * cache), updates, cluster allocation as QEMU places clusters, refcount block
 * creation (including blocks that describe themselves). Entry codecs and
 * block loops: refcount-entries.ts; the queue of decrements waiting for their
 * references to leave the disk: refcount-queue.ts; refcount table growth:
 * refcount-area.ts.
 *
 * Ordering rules for crash safety (a cut at any write leaves no corruption):
 * - a new refcount block is written, then flushed, before the refcount table
 *   entry that points to it;
 * - a grown refcount table is written with its own refcounts before the header
 *   points to it; the old table is freed only after that;
 * - refcount increments reach the disk before the L2 / L1 entries that use the
 *   clusters (the image flushes this cache before its L2 cache);
 * - decrements are queued ({@link Refcounts.queueFree}) and applied only after
 *   the references are gone on disk and no read in flight may still use the
 *   clusters (read-gate.ts);
 * - the cluster compressed data is packed into is forgotten once it is freed
 *   (the allocator may hand it out for anything afterwards).
 */
import type { BdrvChild } from '../../core/child.js';
import { BlockError, STRERROR } from '../../core/errors.js';
import { MetaCache } from './cache.js';
import type { ReadGate } from './read-gate.js';
import { FreeQueue } from './refcount-queue.js';
import { refcountArea } from './refcount-area.js';
import type { MetadataKind } from './metadata-index.js';
import {
  findFreeInBlock,
  getRefcount,
  getRefcountExact,
  incrementRange,
  initRefcountWasm,
  maxRefcount,
  readyRefcountWasm,
  setRefcount,
  type BlockRun,
} from './refcount-entries.js';

export {
  compareBlockCounts,
  findFreeInBlock,
  getRefcount,
  getRefcountExact,
  incrementRange,
  initRefcountWasm,
  maxRefcount,
  refcountBlocksFor,
  refcountWasmState,
  setRefcount,
  setRefcountWasmEnabled,
} from './refcount-entries.js';

export interface RefcountHost {
  file(): BdrvChild;
  /** Header update: refcount table moved. Must be durable when it returns. */
  setReftable(offset: number, clusters: number): Promise<void>;
  /** Registers / unregisters metadata clusters for the overlap checks. */
  addMeta(offset: number, bytes: number, kind: MetadataKind): void;
  removeMeta(offset: number, bytes: number, kind: MetadataKind): void;
  /** Marks the image corrupt and returns the error to throw. */
  corrupt(message: string): Promise<BlockError>;
  /** Prints a message on the tool's stderr as it is (QEMU's fprintf to stderr). */
  notice?(message: string): void;
  /** Refuses (marking the image corrupt) a write of new metadata over existing metadata. */
  checkOverlap?(offset: number, bytes: number): Promise<void>;
  /** QEMU's overlap check of a metadata write of kind `own` (throws to refuse). */
  checkMetaWrite?(offset: number, bytes: number, own: MetadataKind): Promise<void>;
  /** Whether freed clusters are discarded in the file. */
  passDiscard: boolean;
  /**
   * Writes the metadata that dropped the references to the queued clusters and
   * applies the queued decrements that no read in flight holds back.
   */
  reclaim?(): Promise<void>;
}

type Range = [start: number, end: number];

export class Refcounts {
  readonly clusterSize: number;
  /** Entries per refcount block. */
  readonly perBlock: number;
  readonly cache: MetaCache;
  /** The largest refcount an entry holds (2^bits - 1). */
  readonly maxCount: number;
  /**
   * The allocation cursor (QEMU's free_cluster_index): searches start here; it
   * moves past each allocation and back to a cluster whose refcount drops to 0.
   */
  freeHint = 0;
  /** Clusters whose refcount drops once their references are gone on disk. */
  private readonly queue = new FreeQueue();
  /**
   * Reads in flight (read-gate.ts): a queued decrement is applied only once
   * the reads that may still use the cluster have ended. Null: no reads to wait for.
   */
  readers: ReadGate | null = null;
  /**
   * End of compressed data written last (byte offset), for packing (QEMU
   * free_byte_offset); 0 when there is no cluster to pack into.
   */
  freeByteOffset = 0;

  constructor(
    /** The image's side (refcount-area.ts uses it too). */
    readonly host: RefcountHost,
    readonly clusterBits: number,
    readonly order: number,
    /** Offsets of refcount blocks (0 = none), one per refcount table entry. */
    public table: Float64Array,
    public tableOffset: number,
    cacheEntries: number,
  ) {
    this.clusterSize = 2 ** clusterBits;
    this.perBlock = (this.clusterSize * 8) >> order;
    this.maxCount = maxRefcount(order);
    this.cache = new MetaCache('refcount block', () => host.file(), this.clusterSize, Math.max(4, cacheEntries));
    if (host.checkMetaWrite) this.cache.checkWrite = (off, bytes) => host.checkMetaWrite!(off, bytes, 'refcount block');
    this.cache.writeEvent = 'refblock_update_part';
    // Start loading the module now, so the first allocation seldom waits for it.
    void initRefcountWasm();
  }

  get pendingCount(): number {
    return this.queue.length;
  }

  private blockOf(ci: number): number {
    return Math.floor(ci / this.perBlock);
  }

  /** Refcount block `rb` (through the cache), or null when the table has none. */
  async loadBlock(rb: number): Promise<Uint8Array | null> {
    return this.block(rb);
  }

  private async block(rb: number): Promise<Uint8Array | null> {
    if (rb >= this.table.length) return null;
    const off = this.table[rb]!;
    if (off === 0) return null;
    if (off % this.clusterSize !== 0) {
      throw await this.host.corrupt(`Refblock offset 0x${off.toString(16)} unaligned (reftable index: ${rb === 0 ? '0' : `0x${rb.toString(16)}`})`);
    }
    return this.cache.get(off);
  }

  /**
   * Announces an update of refcount block `rb` to a debugging file child as
   * QEMU does (alloc_refcount_block, then load_refcount_block when the block
   * exists; a missing one is announced by {@link createBlock}).
   */
  private async announceUpdate(rb: number): Promise<void> {
    if (!this.table[rb]) return;
    const file = this.host.file();
    await file.debugEvent('refblock_alloc');
    await file.debugEvent('refblock_load');
  }

  /** Refcount of cluster index `ci`. */
  async get(ci: number): Promise<number> {
    const buf = await this.block(this.blockOf(ci));
    if (!buf) return 0;
    return getRefcount(buf, ci % this.perBlock, this.order);
  }

  /**
   * How many clusters in [0, end) have a refcount above zero, counting stops
   * once `limit` is reached. One cache lookup per refcount block.
   */
  async countInUse(end: number, limit: number): Promise<number> {
    const per = this.perBlock;
    let counted = 0;
    for (let base = 0; base < end && counted < limit; base += per) {
      const buf = await this.block(this.blockOf(base));
      if (!buf) continue;
      const stop = Math.min(per, end - base);
      for (let i = 0; i < stop && counted < limit; i++) if (getRefcount(buf, i, this.order) > 0) counted++;
    }
    return counted;
  }

  /** Refcount of cluster index `ci`, exactly (see {@link getRefcountExact}). */
  async getExact(ci: number): Promise<bigint> {
    const buf = await this.block(this.blockOf(ci));
    if (!buf) return 0n;
    return getRefcountExact(buf, ci % this.perBlock, this.order);
  }

  /**
   * Adds `delta` to the refcount of `ci`; its block must exist. Returns the
   * new refcount (past 2^53 only close: 64-bit refcounts are summed exactly).
   */
  async update(ci: number, delta: number | bigint): Promise<number> {
    const rb = this.blockOf(ci);
    await this.announceUpdate(rb);
    let buf = await this.block(rb);
    if (!buf) {
      if (delta < 0) throw await this.host.corrupt(`Freeing cluster ${ci}, which has no refcount block`);
      await this.createBlock(rb, [[ci, ci + 1]]);
      buf = (await this.block(rb))!;
    }
    const idx = ci % this.perBlock;
    if (this.order < 6 && typeof delta === 'number') {
      // Up to 32-bit refcounts: plain numbers (the BigInt path cost more than the walk of a
      // snapshot that references every cluster).
      const n = getRefcount(buf, idx, this.order) + delta;
      if (n < 0) throw await this.host.corrupt(`Refcount of cluster ${ci} would drop below 0`);
      if (n > this.maxCount) throw new BlockError('EINVAL', `Refcount of cluster ${ci} would overflow`);
      setRefcount(buf, idx, this.order, n);
      this.cache.setDirty(this.table[rb]!, buf);
      if (n === 0) this.becameFree(ci);
      return n;
    }
    const exact = getRefcountExact(buf, idx, this.order) + BigInt(delta);
    if (exact < 0n) throw await this.host.corrupt(`Refcount of cluster ${ci} would drop below 0`);
    if (exact > (1n << BigInt(1 << this.order)) - 1n) throw new BlockError('EINVAL', `Refcount of cluster ${ci} would overflow`);
    const v = Number(exact);
    if (this.order === 6) new DataView(buf.buffer, buf.byteOffset, buf.byteLength).setBigUint64(idx * 8, exact);
    else setRefcount(buf, idx, this.order, v);
    this.cache.setDirty(this.table[rb]!, buf);
    if (v === 0) this.becameFree(ci);
    return v;
  }

  /**
   * {@link update} without a promise when it can be done at once (up to 32-bit
   * refcounts, the block cached, no bound crossed); undefined otherwise, and then
   * nothing changed: call {@link update}. Walks over every cluster use it.
   */
  updateNow(ci: number, delta: number): number | undefined {
    if (this.order >= 6) return undefined;
    const rb = Math.floor(ci / this.perBlock);
    const off = rb < this.table.length ? this.table[rb]! : 0;
    if (off === 0 || off % this.clusterSize !== 0) return undefined;
    const buf = this.cache.peek(off);
    if (!buf) return undefined;
    const idx = ci % this.perBlock;
    const n = getRefcount(buf, idx, this.order) + delta;
    if (n <= 0 || n > this.maxCount) return undefined;
    setRefcount(buf, idx, this.order, n);
    this.cache.setDirty(off, buf);
    return n;
  }

  /** The refcount of `ci` when its block is cached (no promise), else undefined. */
  getNow(ci: number): number | undefined {
    const rb = Math.floor(ci / this.perBlock);
    const off = rb < this.table.length ? this.table[rb]! : 0;
    if (off === 0) return 0;
    if (off % this.clusterSize !== 0) return undefined;
    const buf = this.cache.peek(off);
    return buf ? (this.order === 6 ? undefined : getRefcount(buf, ci % this.perBlock, this.order)) : undefined;
  }

  /** Cluster `ci`'s refcount dropped to 0. */
  private becameFree(ci: number): void {
    if (ci < this.freeHint) this.freeHint = ci;
    // The cluster compressed data was packed into is free now and may next hold
    // anything (a data cluster, an L2 table): never pack into it again.
    if (this.freeByteOffset !== 0 && Math.floor(this.freeByteOffset / this.clusterSize) === ci) this.freeByteOffset = 0;
  }

  /**
   * First run of `n` clusters with refcount 0 at or after the allocation cursor
   * ({@link freeHint}), not in `reserved`; the cursor then moves past the run, as
   * QEMU's free_cluster_index does (free clusters it skipped are found again only
   * after a free below the cursor moves it back, see {@link update}).
   */
  async findFree(n: number, reserved: Range[] = [], floor = 1): Promise<number> {
    const start = await this.peekFree(n, reserved, floor);
    this.freeHint = start + n;
    return start;
  }

  /**
   * Where {@link findFree} would place `n` clusters, without moving the cursor;
   * clusters before `floor` are not searched (cluster 0, the header, is only
   * searched by allocations whose callers refuse it as QEMU does).
   */
  private async peekFree(n: number, reserved: Range[], floor = 1): Promise<number> {
    if (!Number.isInteger(n) || n < 1) throw new BlockError('EINVAL', `cannot allocate ${n} clusters`);
    await readyRefcountWasm();
    // Every cluster before the first free one is in use: the cursor may move there
    // at once, so later searches do not scan them again.
    const hint = this.freeHint;
    const first = await this.scanFree(Math.max(hint, floor), 1, []);
    if (this.freeHint === hint && first > hint) this.freeHint = first;
    return n === 1 && reserved.length === 0 ? first : this.scanFree(first, n, reserved);
  }

  /**
   * Whether a queued decrement of a cluster before `end` waits: QEMU's frees take
   * effect at once, so such a cluster would be part of its search.
   */
  private waitingFreeBefore(end: number): boolean {
    return this.queue.someCluster((c) => c < end);
  }

  /**
   * Where an allocation of `n` clusters goes, as in QEMU: when a cluster queued for
   * release could be part of the search, the references to the queued clusters are
   * made durable and the decrements applied first ({@link RefcountHost.reclaim}),
   * so a freed cluster is reused only once no reference to it remains on disk.
   */
  private async allocStart(n: number, reserved: Range[], floor = 1): Promise<number> {
    if (this.queue.length > 0 && this.host.reclaim && this.waitingFreeBefore((await this.peekFree(n, reserved, floor)) + n)) {
      await this.host.reclaim();
    }
    return this.findFree(n, reserved, floor);
  }

  /** From cluster `from`, the first run of `n` clusters with refcount 0, not in `reserved`. */
  private async scanFree(from: number, n: number, reserved: Range[]): Promise<number> {
    const per = this.perBlock;
    const last = Math.floor(Number.MAX_SAFE_INTEGER / this.clusterSize);
    let c = from;
    /** The run being measured: its first cluster and length so far (0: none). */
    let runStart = 0;
    let run = 0;
    for (;;) {
      if (c > last) throw new BlockError('ENOSPC', `No free run of ${n} clusters from cluster ${from}`);
      const rb = this.blockOf(c);
      const base = rb * per;
      const buf = await this.block(rb);
      const find = (start: number, count: number): BlockRun =>
        buf === null ? { index: start, length: Math.min(per - start, count) } : findFreeInBlock(buf, this.order, per, start, count);
      let r: BlockRun;
      if (run > 0) {
        // The run from the previous block must go on at this block's first entry.
        r = find(0, n - run);
        if (r.index === 0 && r.length > 0) {
          run += r.length;
        } else {
          // Broken: no run of n starts before r.index (it would hold one of n - run).
          run = 0;
          if (r.index < per) r = find(r.index, n);
        }
      } else {
        r = find(c - base, n);
      }
      if (run === 0) {
        if (r.length === 0) {
          c = base + per;
          continue;
        }
        runStart = base + r.index;
        run = r.length;
      }
      if (run < n) {
        // It reaches the end of this block: go on in the next one.
        c = base + per;
        continue;
      }
      // A whole run: if it meets a reserved range, search again after that range.
      const end = runStart + n;
      let after = -1;
      for (const [s, e] of reserved) if (runStart < e && s < end) after = Math.max(after, e);
      if (after < 0) return runStart;
      c = after;
      run = 0;
    }
  }

  /**
   * Allocates `n` contiguous clusters (refcount 1 each) and returns the host
   * offset of the first. `reserved` ranges are skipped. When a refcount block
   * has to be created for the run, it goes after the run and the search starts
   * again at the run (QEMU's -EAGAIN from alloc_refcount_block, after which
   * update_refcount moves the cursor back), so the run lands where QEMU puts it.
   * With `mayReturnZero` the run may start at cluster 0 when its refcount says
   * free (a damaged image): the caller refuses it as QEMU does (overlap check,
   * "invalid allocation ... at offset 0"); others never see offset 0.
   */
  async alloc(n: number, reserved: Range[] = [], mayReturnZero = false): Promise<number> {
    await this.host.file().debugEvent('cluster_alloc');
    for (let attempt = 0; ; attempt++) {
      const start = await this.allocStart(n, reserved, mayReturnZero ? 0 : 1);
      const missing = this.missingBlock(start, start + n);
      if (missing < 0) {
        await this.increment(start, n);
        return start * this.clusterSize;
      }
      // Each attempt creates one missing block: a long run (a LUKS header in small clusters) needs one per block it spans.
      if (attempt >= 8 + Math.ceil(n / this.perBlock)) throw new BlockError('EIO', `Refcount block allocation for clusters ${start}..${start + n - 1} does not converge`);
      await this.createBlock(missing, [...reserved, [start, start + n]]);
      this.freeHint = Math.min(this.freeHint, start);
    }
  }

  /** Whether cluster `ci` has a refcount block (a refcount of it can change without allocating one). */
  hasBlock(ci: number): boolean {
    return this.missingBlock(ci, ci + 1) < 0;
  }

  /** The first refcount block index covering clusters [first, end) that has no block, or -1. */
  private missingBlock(first: number, end: number): number {
    for (let rb = this.blockOf(first); rb <= this.blockOf(end - 1); rb++) {
      if (rb >= this.table.length || this.table[rb] === 0) return rb;
    }
    return -1;
  }

  /**
   * Allocates the free clusters at [ci, ci+n) up to the first one in use (QEMU's
   * qcow2_alloc_clusters_at) and returns how many; the cursor does not move.
   */
  async allocContiguous(ci: number, n: number): Promise<number> {
    if (this.queue.length > 0 && this.host.reclaim && this.queue.someCluster((c) => c >= ci && c < ci + n)) await this.host.reclaim();
    for (let attempt = 0; ; attempt++) {
      let free = 0;
      while (free < n && (await this.get(ci + free)) === 0) free++;
      if (free === 0) return 0;
      const missing = this.missingBlock(ci, ci + free);
      if (missing < 0) {
        await this.increment(ci, free);
        return free;
      }
      if (attempt >= 8 + Math.ceil(free / this.perBlock)) throw new BlockError('EIO', `Refcount block allocation for clusters ${ci}..${ci + free - 1} does not converge`);
      await this.createBlock(missing, [[ci, ci + free]]);
      this.freeHint = Math.min(this.freeHint, ci);
    }
  }

  /** Adds 1 to the refcounts of clusters [ci, ci+n), a block at a time; their blocks exist. */
  private async increment(ci: number, n: number): Promise<void> {
    const per = this.perBlock;
    for (let c = ci; c < ci + n; ) {
      const rb = this.blockOf(c);
      const count = Math.min(ci + n, (rb + 1) * per) - c;
      await this.announceUpdate(rb);
      const buf = await this.block(rb);
      if (!buf) throw new BlockError('EIO', `Refcount block ${rb} for cluster ${c} is missing`);
      const bad = incrementRange(buf, this.order, c - rb * per, count);
      if (bad >= 0) throw new BlockError('EIO', `Refcount of cluster ${rb * per + bad} would overflow`);
      this.cache.setDirty(this.table[rb]!, buf);
      c += count;
    }
  }

  /**
   * Creates refcount block `rb` in the first free cluster at the cursor outside
   * `reserved` (QEMU's alloc_refcount_block): the block is written, with its own
   * refcount or the one of the block counting it, before the table entry points
   * to it; when the table has no entry `rb`, it grows ({@link growTable}).
   */
  private async createBlock(rb: number, reserved: Range[], depth = 0): Promise<void> {
    if (depth > 8) throw new BlockError('EIO', 'Refcount block allocation does not converge');
    if (rb < this.table.length && this.table[rb] !== 0) return;
    await this.host.file().debugEvent('refblock_alloc');
    // Cluster 0 is searched too: on a damaged image (no refcounts for the header) it is
    // found, and refused as QEMU refuses it.
    const loc = await this.findFree(1, reserved, 0);
    if (loc === 0) throw await this.host.corrupt('Preventing invalid allocation of refcount block at offset 0');
    const locRb = this.blockOf(loc);
    const buf = new Uint8Array(this.clusterSize);
    if (locRb === rb) {
      setRefcount(buf, loc % this.perBlock, this.order, 1);
    } else {
      if (locRb >= this.table.length || this.table[locRb] === 0) {
        await this.createBlock(locRb, [...reserved, [loc, loc + 1]], depth + 1);
        if (rb < this.table.length && this.table[rb] !== 0) return;
      }
      await this.update(loc, 1);
    }
    const off = loc * this.clusterSize;
    // A damaged image may call metadata free: never write the block over it (QEMU's
    // overlap check on the refcount block cache).
    await this.host.checkOverlap?.(off, this.clusterSize);
    const file = this.host.file();
    // Its own refcount (or the block counting it) first, then the block, then the pointer.
    await this.cache.flush();
    await file.debugEvent('refblock_alloc_write');
    await file.pwritev(off, this.clusterSize, buf);
    await file.flush();
    await this.cache.put(off, buf, false);
    this.host.addMeta(off, this.clusterSize, 'refcount block');
    if (rb >= this.table.length) {
      await file.debugEvent('reftable_grow');
      await this.growTable(rb, off);
      return;
    }
    const entry = new Uint8Array(8);
    new DataView(entry.buffer).setBigUint64(0, BigInt(off));
    await file.debugEvent('refblock_alloc_hookup');
    await file.pwritev(this.tableOffset + rb * 8, 8, entry);
    this.table[rb] = off;
  }

  /**
   * Moves the refcount table to a bigger one that also holds entry `rb` (the new
   * block at `blockOff`), as QEMU's alloc_refcount_block does: a refcount area
   * (refcount-area.ts) from the first refcount block range past both, its table
   * 50 % larger than needed.
   */
  private async growTable(rb: number, blockOff: number): Promise<void> {
    const per = this.perBlock;
    const areaIndex = Math.max(rb + 1, Math.ceil((blockOff / this.clusterSize + 1) / per));
    await refcountArea(this, { start: areaIndex * per, additional: 0, exact: false, newBlockIndex: rb, newBlockOffset: blockOff });
  }

  /**
   * QEMU's qcow2_free_clusters: drops a reference from every cluster touching
   * [offset, offset+bytes) now, blkdebug's cluster_free event first, and with
   * `discard` discards the clusters that became free in the file. It never
   * fails: an error is printed as QEMU prints it and the clusters not yet
   * updated leak (the ones done stay done: no reference to them is left;
   * nothing is discarded then). Returns the clusters whose refcount reached 0.
   */
  async freeClusters(offset: number, bytes: number, discard: boolean): Promise<number[]> {
    const freed: number[] = [];
    if (bytes <= 0) return freed;
    await this.host.file().debugEvent('cluster_free');
    const cs = this.clusterSize;
    try {
      for (let c = Math.floor(offset / cs); c <= Math.floor((offset + bytes - 1) / cs); c++) {
        if ((await this.update(c, -1)) === 0) freed.push(c);
      }
    } catch (e) {
      const code = e instanceof BlockError ? e.code : 'EIO';
      this.host.notice?.(`qcow2_free_clusters failed: ${STRERROR[code] ?? code}`);
      return freed;
    }
    if (discard) await this.discardFreed(freed);
    return freed;
  }

  /**
   * Discards `clusters` (refcount 0, no reference left) in the file, adjacent
   * ones in one request, as QEMU passes the discards of freed clusters on;
   * advisory: a failure is ignored.
   */
  async discardFreed(clusters: readonly number[]): Promise<void> {
    const sorted = [...clusters].sort((a, b) => a - b);
    const cs = this.clusterSize;
    for (let i = 0; i < sorted.length; ) {
      let j = i + 1;
      while (j < sorted.length && sorted[j] === sorted[j - 1]! + 1) j++;
      await this.host
        .file()
        .pdiscard(sorted[i]! * cs, (j - i) * cs)
        .catch(() => undefined);
      i = j;
    }
  }

  /** Queues a decrement of every cluster touching [offset, offset+bytes). */
  queueFree(offset: number, bytes: number): void {
    void this.host.file().debugEvent('cluster_free');
    const first = Math.floor(offset / this.clusterSize);
    const last = Math.floor((offset + bytes - 1) / this.clusterSize);
    this.queue.add(first, last, this.readers?.stamp() ?? 0);
  }

  /** The read gate's stamp of the newest queued decrement (0 when none). */
  get newestPendingStamp(): number {
    return this.queue.newestStamp;
  }

  /**
   * Applies queued decrements whose clusters no read in flight may still use
   * (the others stay queued). The caller has made sure no reference to the
   * clusters remains on disk. Returns clusters whose refcount reached 0.
   */
  async applyFrees(): Promise<number[]> {
    const ready = this.queue.takeReady(this.readers?.oldest() ?? Infinity);
    const freed: number[] = [];
    for (const c of ready) {
      // A reference to a cluster whose refcount is 0 already (a damaged image): as
      // QEMU's qcow2_free_clusters, say so and go on; the refcount stays 0.
      if ((await this.get(c)) === 0) {
        this.host.notice?.('qcow2_free_clusters failed: Invalid argument');
        continue;
      }
      if ((await this.update(c, -1)) === 0) freed.push(c);
    }
    for (const c of freed) this.cache.forget(c * this.clusterSize);
    return freed;
  }

  /**
   * Allocates `bytes` (at most one cluster) of byte-granular space for
   * compressed data, as QEMU's qcow2_alloc_bytes: packed after the compressed
   * data written last when it fits in that cluster; else in a new cluster, and
   * when the new cluster follows that one, the data starts in the old cluster
   * and runs into the new one. The cluster packed into holds only compressed
   * data: {@link update} forgets it once its refcount drops to 0, since the
   * allocator may then hand it out for anything else.
   */
  async allocBytes(bytes: number): Promise<number> {
    const cs = this.clusterSize;
    if (!Number.isInteger(bytes) || bytes < 1 || bytes > cs) throw new BlockError('EINVAL', `cannot allocate ${bytes} bytes of compressed data`);
    await this.host.file().debugEvent('cluster_alloc_bytes');
    let off = this.freeByteOffset;
    for (let attempt = 0; ; attempt++) {
      if (off !== 0) {
        const rc = await this.get(Math.floor(off / cs));
        if (rc === 0 || rc >= this.maxCount) off = 0;
      }
      if (off === 0 || cs - (off % cs) < bytes) {
        const fresh = await this.allocStart(1, [], 0);
        if (fresh === 0) throw await this.host.corrupt('Preventing invalid allocation of compressed cluster at offset 0');
        // A compressed cluster's descriptor holds 70 - cluster_bits bits of host offset (49 with
        // 2 MiB clusters: 512 TiB): past that QEMU's alloc_clusters_noref refuses with EFBIG.
        const limit = compressedOffsetLimit(cs);
        if (fresh * cs > limit) {
          throw new BlockError('EFBIG', 'File too large', {}, { detail: `compressed data cannot be placed at host offset ${fresh * cs}: the descriptor holds offsets up to ${limit}` });
        }
        if (off === 0 || Math.ceil(off / cs) !== fresh) off = fresh * cs;
      }
      const first = Math.floor(off / cs);
      const last = Math.floor((off + bytes - 1) / cs);
      const missing = this.missingBlock(first, last + 1);
      if (missing >= 0) {
        if (attempt >= 8) throw new BlockError('EIO', `Refcount block allocation for compressed data at 0x${off.toString(16)} does not converge`);
        await this.createBlock(missing, [[first, last + 1]]);
        // As in QEMU, a new cluster is searched for after the block is placed,
        // from the first cluster tried.
        this.freeHint = Math.min(this.freeHint, first);
        off = 0;
        continue;
      }
      for (let c = first; c <= last; c++) await this.update(c, 1);
      this.freeByteOffset = (off + bytes) % cs === 0 ? 0 : off + bytes;
      return off;
    }
  }

  /** Writes dirty refcount blocks (not flushed to disk); `stable` as {@link MetaCache.flush}. */
  async flushCache(stable = false): Promise<void> {
    await this.cache.flush(stable);
  }
}

/**
 * The largest host offset a compressed cluster's descriptor can hold: its
 * offset field has 62 - (cluster_bits - 8) bits (docs/interop/qcow2.txt).
 */
export function compressedOffsetLimit(clusterSize: number): number {
  const bits = 70 - Math.log2(clusterSize);
  return bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** bits - 1;
}

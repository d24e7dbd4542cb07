/**
 * qcow2: the image driver. This file holds the node's state and its
 * {@link DriverInstance} surface; the work is done by one module per concern:
 *
 * - open.ts: opening and validation (header, options, tables, repairs)
 * - metadata-index.ts: which clusters hold metadata, overlap checks, corruption
 * - lookup.ts: the mapping walk (guest offset → run of clusters)
 * - read.ts: the read path (data, zeros, compressed, backing)
 * - block-status.ts: block status, metadata preallocation detection
 * - cow.ts: allocation, copy-on-write writes, frees and the flush ordering
 * - zero-discard.ts: zero writes and discard
 * - compressed.ts: codecs, compressed cluster reads and writes
 * - resize.ts: truncate and preallocation
 * - check.ts, amend.ts, create.ts, snapshot.ts, bitmap.ts, refcount.ts,
 *   cache.ts, header.ts, l2-entry.ts (L1 / L2 entry codec), constants.ts (on-disk bits),
 *   crypt.ts (encrypted data clusters)
 *
 * Over 600 lines on purpose: it is the whole DriverInstance surface of qcow2, one short
 * method per entry of the contract, each handing the work to the module of its concern.
 */
import type {
  AmendProgress,
  BlockDriver,
  BlockStatusResult,
  CheckFix,
  CheckResult,
  DriverInstance,
  PreallocMode,
  ReopenState,
  ReqFlags,
  SnapshotInfo,
  SpecificInfo,
} from '../../core/driver.js';
import { loadVmState, saveVmState, vmStateOffset } from './vmstate.js';
import { ReqFlag } from '../../core/driver.js';
import { copyRangeFrom, type CopyRangeRequest } from '../../core/copy-range.js';
import { preadv } from '../../core/request-read.js';
import type { BdrvChild } from '../../core/child.js';
import type { BlockNode } from '../../core/node.js';
import type { OptionReader } from '../../core/options.js';
import type { BlockLimits } from '../../core/limits.js';
import { BlockError, STRERROR, einval, toBlockError } from '../../core/errors.js';
import { ROLE_IMAGE } from '../../core/permissions.js';
import { MetaCache, Mutex } from './cache.js';
import { HDR, INCOMPAT } from './constants.js';
import { describeFeatures, serializeHeader, type Qcow2Header } from './header.js';
import { TYPE_NAMES, ClusterType } from './l2-entry.js';
import { Refcounts } from './refcount.js';
import type { Qcow2Snapshot } from './snapshot.js';
import { describeBitmap, markInUseOnDisk, type Qcow2Bitmap } from './bitmap.js';
import { checkCanStoreBitmap, removeStoredBitmap, storePersistentBitmaps } from './bitmap-store.js';
import { bitmapsInUseAgain, checkpointBitmaps } from './bitmap-checkpoint.js';
import { type BdrvDirtyBitmap, releaseDirtyBitmaps } from '../../core/dirty-bitmap.js';
import { checkImage } from './check.js';
import { createQcow2, qcow2AmendOptions, qcow2CreateOptions } from './create.js';
import { measureQcow2 } from './measure.js';
import { amendImage } from './amend.js';
import { makeEmpty } from './make-empty.js';
import { MetadataIndex, markCorrupt, registerMetadata } from './metadata-index.js';
import { openImage, refcountHost } from './open.js';
import { SliceMemo, fastDataHost, lookup, type Run } from './lookup.js';
import { readGuest } from './read.js';
import { encryptInfo, type Qcow2Crypto } from './crypt.js';
import { ReadGate } from './read-gate.js';
import { InFlightWrites, flushAll, whenClustersIdle, writeGuest } from './cow.js';
import { writeCompressed } from './compressed.js';
import { discardRange, writeZeroes } from './zero-discard.js';
import { preallocate, resizeImage } from './resize.js';
import { blockStatusOf } from './block-status.js';
import { commitReopen, prepareReopen } from './reopen.js';
import { closeImage } from './close.js';
import { createSnapshot, deleteSnapshot, gotoSnapshot, loadSnapshotTmp, loadSnapshotVmState } from './snapshot-ops.js';
import { childAllocatedSize } from '../../core/image-facts.js';

export type { Run } from './lookup.js';

/** An open qcow2 node: its state, and the driver methods the generic layer calls. */
export class Qcow2Image implements DriverInstance {
  header!: Qcow2Header;
  /** Cluster size and its log2. */
  clusterSize = 0;
  clusterBits = 0;
  /** Extended L2 entries (subclusters). */
  extendedL2 = false;
  /** Entries per L2 table. */
  l2Entries = 0;
  /** Bytes per L2 entry (8 or 16). */
  l2EntryBytes = 8;
  /** Entries per cached L2 slice. */
  sliceEntries = 0;
  sliceBytes = 0;
  /** Subcluster size (the cluster size without extended L2). */
  subSize = 0;
  /** L1 entries: L2 table offsets (0 = none) and their COPIED flags. */
  l1 = new Float64Array(0);
  l1Copied = new Uint8Array(0);
  l2cache!: MetaCache;
  private refcounts!: Refcounts;
  /** Reads in flight: host clusters they may use are not reused until they end (read-gate.ts). */
  readonly readers = new ReadGate();

  /** The refcount structures; each one set here defers its frees past the reads in flight. */
  get refs(): Refcounts {
    return this.refcounts;
  }
  set refs(r: Refcounts) {
    r.readers = this.readers;
    this.refcounts = r;
  }
  /** The image lock (QEMU's s->lock): metadata changes run one at a time. */
  readonly lock = new Mutex();
  /** Guest clusters whose data is being written outside the lock (cow.ts). */
  readonly inFlight = new InFlightWrites();
  /** Metadata clusters, for the overlap checks. */
  meta = new MetadataIndex(512);
  snapshots: Qcow2Snapshot[] = [];
  snapshotTableBytes = 0;
  /** Opened for check: why the snapshot table could not be read (check reports it), else undefined. */
  snapshotTableError: unknown = undefined;
  /** Whether snapshotTableError is the table check's (QEMU's qcow2_validate_table), not the read's. */
  snapshotTableInvalid = false;
  bitmaps: Qcow2Bitmap[] = [];
  /** The LUKS volume of an encrypted image (crypt method 2); undefined otherwise. */
  crypto: Qcow2Crypto | undefined = undefined;
  /** Whether data IVs come from host offsets (LUKS) or guest offsets (legacy AES). */
  cryptPhysical = true;
  /** The id of the secret the image was opened with (amend adds key slots with it). */
  cryptoSecret: string | undefined = undefined;
  /** Where guest data lives: the image file, or the external data file. */
  dataChild!: BdrvChild;
  hasDataFile = false;
  dataFileRaw = false;
  lazyRefcounts = false;
  /** Whether we set the dirty bit in this session (lazy refcounts). */
  markedDirty = false;
  discardNoUnref = false;
  passDiscardRequest = true;
  passDiscardOther = false;
  /** pass-discard-snapshot: clusters a snapshot operation frees are discarded in the file. */
  passDiscardSnapshot = true;
  /**
   * Whether the image looks preallocated with preallocation=metadata
   * (block-status.ts); undefined until the first block status query.
   */
  metadataPreallocation: boolean | undefined = undefined;
  /** Set once a corruption was found: no further writes in this session. */
  corrupt = false;
  /** Set once any corruption was reported (QEMU's signaled_corruption): later non-fatal ones are not. */
  signaledCorruption = false;
  /**
   * Set when a corruption was found on a writable image: as QEMU drops the
   * node's driver then, the node reports no medium and every request fails
   * with ENOMEDIUM until it is closed.
   */
  dropped = false;
  /**
   * Set when a read-write reopen could not mark the persistent bitmaps in
   * use: a write would make them stale while they still look valid.
   */
  bitmapsNotInUse = false;
  /**
   * Set once an open that loaded the bitmaps completed: only then are the
   * node's bitmaps the image's (a failed open, or one for check, must not
   * rewrite the bitmap directory).
   */
  storeBitmapsOnClose = false;
  /** The bitmaps were stored by a checkpoint and no write came since (bitmap-checkpoint.ts). */
  bitmapsAtRest = false;
  /** The marking in use of bitmaps at rest, while it runs. */
  markingInUse: Promise<void> | null = null;
  /** Whether open loaded the persistent bitmaps into the node (not for check). */
  bitmapsLoaded = false;
  /**
   * Where each persistent bitmap's bits are in the image and the bitmap's
   * generation when they were loaded or stored (bitmap-store.ts keeps them
   * when the bits did not change since).
   */
  storedBitmapBits = new WeakMap<BdrvDirtyBitmap, { generation: number; tableOffset: number; tableSize: number }>();
  readonly warnings: string[] = [];
  /** What the open-time repair of a dirty image reported (QEMU prints it on stderr). */
  readonly repairMessages: string[] = [];

  openMessages(): readonly string[] {
    return this.repairMessages;
  }
  /** What the close could not do, as QEMU reports it (bitmaps, caches). */
  readonly closeLines: string[] = [];

  closeMessages(): readonly string[] {
    return this.closeLines;
  }
  /** Last decompressed cluster (sequential reads of compressed data). */
  lastCompressed: { key: string; buf: Uint8Array } | null = null;
  /** The L2 slice of the last fast read (lookup.ts). */
  readonly sliceMemo = new SliceMemo();
  /** Host clusters to discard in the file once their refcount is 0 on disk. */
  discardAfterFree = new Set<number>();
  private cleanTimer: ReturnType<typeof setInterval> | null = null;
  /** Compressed writes are qcow2's own (FUA is done by the generic layer's flush). */
  readonly supportedWriteFlags = ReqFlag.COMPRESSED;
  readonly supportedZeroFlags = ReqFlag.MAY_UNMAP;

  constructor(
    readonly node: BlockNode,
    readonly file: BdrvChild,
  ) {}

  get readOnly(): boolean {
    return this.node.readOnly;
  }

  get version(): number {
    return this.header.version;
  }

  getLength(): number {
    return this.header.size;
  }

  // -------------------------------------------------------------------------
  // Open and state shared by the modules

  /** Opens the image (see open.ts). */
  async open(options: OptionReader): Promise<void> {
    await openImage(this, options);
    this.storeBitmapsOnClose = this.bitmapsLoaded;
  }

  /** Drops idle cache entries every `seconds` (cache-clean-interval). */
  startCacheCleaner(seconds: number): void {
    if (this.cleanTimer) clearInterval(this.cleanTimer);
    this.cleanTimer = null;
    if (seconds <= 0 || typeof setInterval === 'undefined') return;
    let mark = 0;
    this.cleanTimer = setInterval(() => {
      this.l2cache.dropIdle(mark);
      this.refs.cache.dropIdle(mark);
      mark = Math.min(this.l2cache.now, this.refs.cache.now);
    }, Math.min(seconds * 1000, MAX_TIMER_MS));
    (this.cleanTimer as { unref?: () => void }).unref?.();
  }

  /** Marks the image corrupt and returns the EIO to throw (see metadata-index.ts). */
  markCorrupt(message: string): Promise<BlockError> {
    return markCorrupt(this, message);
  }

  isInserted(): boolean {
    return !this.dropped;
  }

  /** Throws once the image was found corrupt in this session. */
  checkUsable(): void {
    if (this.dropped) throw new BlockError('ENOMEDIUM', 'No medium found', { node: this.node.nodeName });
    if (this.corrupt) throw new BlockError('EIO', 'qcow2: Image is corrupt; no further writes are accepted', { node: this.node.nodeName });
  }

  /**
   * Before every guest write: throws while the persistent bitmaps could not
   * be marked in use (see reopenCommitPost), and marks bitmaps a checkpoint
   * left at rest in use again first.
   */
  private async checkBitmapsWritable(): Promise<void> {
    if (this.bitmapsNotInUse) {
      throw new BlockError('EPERM', 'qcow2: the persistent dirty bitmaps could not be marked in use; writes are refused until a reopen succeeds', { node: this.node.nodeName });
    }
    await bitmapsInUseAgain(this);
  }

  /**
   * Checks the new options, stores the persistent bitmaps before a reopen to
   * read-only, and marks the image clean before it turns read-only or stops
   * using lazy refcounts (reopen.ts).
   */
  reopenPrepare(state: ReopenState): Promise<void> {
    return prepareReopen(this, state, () => this.storeBitmapsBeforeReadOnly(state));
  }

  reopenCommit(state: ReopenState): void {
    commitReopen(this, state);
  }

  /**
   * A reopen to read-only stores the persistent bitmaps first, while the
   * image is still writable (QEMU's qcow2_reopen_bitmaps_ro); they are
   * readonly from then on.
   */
  private async storeBitmapsBeforeReadOnly(state: ReopenState): Promise<void> {
    if (!state.readOnly || this.readOnly || !this.refs || this.corrupt || !this.storeBitmapsOnClose) return;
    if (!this.node.dirtyBitmaps.some((b) => b.persistent) && !this.header.bitmaps) return;
    await this.whenIdle(async () => {
      await flushAll(this, true);
      await storePersistentBitmaps(this);
    });
    for (const bm of this.node.dirtyBitmaps) if (bm.persistent) bm.readonly = true;
  }

  /**
   * After a reopen to read-write, marks the persistent bitmaps in use on
   * disk, as a read-write open does: our writes do not update them. On
   * failure the reopen stays, but writes are refused (QEMU leaves its bitmaps
   * read-only, which blocks writes the same way).
   */
  async reopenCommitPost(state: ReopenState): Promise<void> {
    const ext = this.header.bitmaps;
    if (state.readOnly || !ext) return;
    try {
      this.bitmaps = await this.whenIdle(() => markInUseOnDisk(this.file, ext, this.clusterSize, this.header.size));
      this.bitmapsNotInUse = false;
      for (const bm of this.node.dirtyBitmaps) if (bm.persistent) bm.readonly = false;
    } catch (e) {
      this.bitmapsNotInUse = true;
      const err = toBlockError(e);
      throw new BlockError(err.code, `Failed to make dirty bitmaps writable: ${err.message}`, { node: this.node.nodeName });
    }
  }

  /** Rewrites the header cluster and flushes. */
  async writeHeader(): Promise<void> {
    // The whole first cluster, as QEMU's qcow2_update_header: no bytes of an older, longer header stay behind.
    const buf = serializeHeader(this.header);
    await this.file.pwritev(0, buf.length, buf);
    await this.file.flush();
  }

  /** Points the header at a new refcount table (durable when it returns). */
  async setReftable(offset: number, clusters: number): Promise<void> {
    this.header.refcountTableOffset = offset;
    this.header.refcountTableClusters = clusters;
    const b = new Uint8Array(12);
    const dv = new DataView(b.buffer);
    dv.setBigUint64(0, BigInt(offset));
    dv.setUint32(8, clusters);
    await this.file.pwritev(HDR.REFCOUNT_TABLE_OFFSET, 12, b);
    await this.file.flush();
  }

  /** The first run of same-typed, host-contiguous (sub)clusters from `offset` (see lookup.ts). */
  lookup(offset: number, max: number): Promise<Run> {
    return lookup(this, offset, max);
  }

  /**
   * Runs `fn` under the lock once no write is in flight on the guest clusters
   * of [offset, offset+bytes) (on any cluster when no range is given).
   */
  whenIdle<T>(fn: () => Promise<T>, offset?: number, bytes?: number): Promise<T> {
    if (offset === undefined || bytes === undefined) return whenClustersIdle(this, fn);
    return whenClustersIdle(this, fn, Math.floor(offset / this.clusterSize), Math.floor((offset + Math.max(bytes, 1) - 1) / this.clusterSize));
  }

  /** Makes queued frees durable: L2 tables first, then the refcounts (see cow.ts). */
  flushAll(): Promise<void> {
    return flushAll(this);
  }

  // -------------------------------------------------------------------------
  // Read

  preadv(offset: number, bytes: number, buf: Uint8Array): Promise<void> | void {
    // The backend's fast path does not ask isInserted(): a dropped image answers here.
    if (this.dropped) return Promise.reject(new BlockError('ENOMEDIUM', 'No medium found', { node: this.node.nodeName, offset }));
    // Fast path: one run of plain data in a cached L2 slice (no promise of our own when the
    // child completes synchronously). The ticket keeps the host cluster from reuse meanwhile;
    // it is registered only if the read goes asynchronous (no other code runs before that).
    const ticket = this.readers.reserve();
    // A debugging file child (blkdebug) hears of every read, and encrypted data is decrypted
    // on the way (read.ts): no fast path for either.
    const host = this.file.node.instance.debug || this.crypto ? -1 : fastDataHost(this, offset, bytes);
    const r = host >= 0 && host + bytes <= this.dataChild.length ? this.dataChild.preadv(host, bytes, buf, 0) : readGuest(this, offset, bytes, buf);
    if (r === undefined) return;
    this.readers.hold(ticket);
    return r.finally(() => this.readers.exit(ticket));
  }

  // -------------------------------------------------------------------------
  // Block status and mapping for the generic layer

  blockStatus(_wantZero: boolean, offset: number, bytes: number): Promise<BlockStatusResult> {
    return blockStatusOf(this, offset, bytes);
  }

  // -------------------------------------------------------------------------
  // Write

  async flushToOs(): Promise<void> {
    // A corrupt image writes nothing more (QEMU drops the node's driver), as close() does.
    if (this.readOnly || !this.refs || this.corrupt) return;
    await this.lock.run(() => flushAll(this, false, true));
  }

  async pwritev(offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): Promise<void> {
    if (this.bitmapsAtRest || this.bitmapsNotInUse) await this.checkBitmapsWritable();
    if (flags & ReqFlag.COMPRESSED) {
      // QEMU's compressed writes fail on encrypted images.
      if (this.header.cryptMethod !== 0) throw new BlockError('EIO', 'Compressed writes to an encrypted qcow2 image are not possible', { node: this.node.nodeName, offset });
      return writeCompressed(this, offset, bytes, buf);
    }
    await writeGuest(this, offset, bytes, buf);
  }

  /**
   * The source side of a copy (QEMU's qcow2_co_copy_range_from), run by
   * run: data clusters go on from the data file at their host offset,
   * zero clusters (and unallocated ones without a backing file) become a
   * zero write on the destination, unallocated ones go on from the backing
   * file; compressed clusters cannot be copied (ENOTSUP).
   */
  async copyRangeFrom(r: CopyRangeRequest): Promise<void> {
    let pos = 0;
    while (pos < r.bytes) {
      const run = await lookup(this, r.srcOffset + pos, r.bytes - pos);
      if (run.type === ClusterType.COMPRESSED) throw new BlockError('ENOTSUP', 'Operation not supported');
      const part = { ...r, srcOffset: r.srcOffset + pos, dstOffset: r.dstOffset + pos, bytes: run.bytes };
      const backing = this.node.backing;
      if (run.type === ClusterType.NORMAL) await copyRangeFrom({ ...part, src: this.dataChild, srcOffset: run.host });
      else if (run.type === ClusterType.UNALLOC && backing) await copyRangeFrom({ ...part, src: backing });
      else await copyRangeFrom({ ...part, writeFlags: part.writeFlags | ReqFlag.ZERO_WRITE });
      pos += run.bytes;
    }
  }

  /**
   * The destination side of a copy (QEMU's qcow2_co_copy_range_to): the
   * clusters are allocated as a write allocates them, every byte stored as
   * data (no zero detection, as QEMU's copy leaves none). The bytes come from
   * the source link by a read, then take the write path of this image.
   * QEMU's copy ends in the data file's back end: where that cannot take a
   * copy from the source (another back end, a filter, another file system),
   * the request is refused (ENOTSUP) before any cluster is allocated, so the
   * caller's reads and writes (qemu-img convert -C's fallback) decide the
   * allocation, as in QEMU.
   */
  async copyRangeTo(r: CopyRangeRequest): Promise<void> {
    const data = this.dataChild.node.instance;
    if (!data.copyRangeTo) throw new BlockError('ENOTSUP', 'Operation not supported');
    // An empty copy at the data file: its back end's checks, no bytes.
    await data.copyRangeTo({ ...r, dst: this.dataChild, dstOffset: 0, bytes: 0 });
    const step = Math.max(this.clusterSize, 1 << 20);
    const buf = new Uint8Array(Math.min(step, r.bytes));
    for (let done = 0; done < r.bytes; done += step) {
      const n = Math.min(step, r.bytes - done);
      await preadv(r.src, r.srcOffset + done, n, buf.subarray(0, n), r.readFlags);
      await this.pwritev(r.dstOffset + done, n, buf.subarray(0, n), 0);
    }
  }

  refreshLimits(l: BlockLimits): void {
    l.pwriteZeroesAlignment = this.extendedL2 ? this.subSize : this.clusterSize;
    l.pdiscardAlignment = this.clusterSize;
    // Encryption works on whole 512-byte sectors.
    l.requestAlignment = this.header.cryptMethod !== 0 ? 512 : 1;
  }

  isEncrypted(): boolean {
    return this.header.cryptMethod !== 0;
  }

  async pwriteZeroes(offset: number, bytes: number, flags: ReqFlags): Promise<void> {
    if (this.bitmapsAtRest || this.bitmapsNotInUse) await this.checkBitmapsWritable();
    return writeZeroes(this, offset, bytes, flags);
  }

  async pdiscard(offset: number, bytes: number): Promise<void> {
    if (this.bitmapsAtRest || this.bitmapsNotInUse) await this.checkBitmapsWritable();
    // Without the zero flag, discarded clusters would show the backing file's data.
    if (this.header.version < 3 && this.node.backing) {
      throw new BlockError('ENOTSUP', 'qcow2 v2 images with a backing file cannot discard');
    }
    await this.whenIdle(() => discardRange(this, offset, bytes, false, this.passDiscardRequest), offset, bytes);
  }

  // -------------------------------------------------------------------------
  // Truncate and preallocation

  async truncate(offset: number, exact: boolean, prealloc: PreallocMode, flags: ReqFlags = 0): Promise<void> {
    if (this.bitmapsAtRest || this.bitmapsNotInUse) await this.checkBitmapsWritable();
    void exact;
    const old = this.header.size;
    const zeroWrite = await this.whenIdle(() => resizeImage(this, offset, prealloc, (flags & ReqFlag.ZERO_WRITE) !== 0 && offset > old));
    // The grown area's head, up to the first subcluster boundary, gets explicit zeros.
    const zeroStart = Math.ceil(old / this.subSize) * this.subSize;
    if (zeroWrite && zeroStart > old) {
      const len = Math.min(zeroStart, offset) - old;
      try {
        await writeGuest(this, old, len, new Uint8Array(len));
      } catch (e) {
        const err = toBlockError(e);
        throw new BlockError(err.code, `Failed to zero out the new area: ${STRERROR[err.code] ?? err.message}`);
      }
    }
  }

  /** Allocates clusters for [from, to) without writing data (caller holds the lock; create uses it). */
  preallocate(from: number, to: number, mode: PreallocMode): Promise<void> {
    return preallocate(this, from, to, mode);
  }

  // -------------------------------------------------------------------------
  // Image-level operations

  async check(fix: CheckFix): Promise<CheckResult> {
    return this.whenIdle(async () => {
      // The check reads L2 tables from the file and refcounts through the cache:
      // only the L2 tables (and pending frees) need to be on disk. Refcount blocks
      // a repair changed stay cached, as in QEMU, until the next flush.
      if (!this.readOnly) {
        if (this.refs.pendingCount > 0) await flushAll(this, true);
        else await this.l2cache.flush();
      }
      return checkImage(this, fix);
    });
  }

  getInfo(): { clusterSize: number; dirty: boolean; vmStateOffset: number } {
    return { clusterSize: this.clusterSize, dirty: (this.header.incompatible & INCOMPAT.DIRTY) !== 0n, vmStateOffset: vmStateOffset(this) };
  }

  getSpecificInfo(): SpecificInfo {
    const h = this.header;
    const data = describeFeatures(h);
    if (h.version === 3) {
      if (this.bitmaps.length > 0) data['bitmaps'] = this.bitmaps.map(describeBitmap);
      data['refcount-bits'] = 1 << h.refcountOrder;
      const enc = encryptInfo(this);
      if (enc) data['encrypt'] = enc;
      data['corrupt'] = (h.incompatible & INCOMPAT.CORRUPT) !== 0n;
      if (h.dataFile !== undefined) data['data-file'] = h.dataFile;
      if (this.hasDataFile) data['data-file-raw'] = this.dataFileRaw;
      data['extended-l2'] = this.extendedL2;
    }
    return { type: 'qcow2', data };
  }

  backingFile(): { filename: string; format?: string } | undefined {
    const h = this.header;
    if (h.backingFile === undefined) return undefined;
    return { filename: h.backingFile, ...(h.backingFormat !== undefined ? { format: h.backingFormat } : {}) };
  }

  async changeBackingFile(filename: string | undefined, format: string | undefined): Promise<void> {
    await this.lock.run(async () => {
      const h = this.header;
      if (filename && this.dataFileRaw) throw einval('data-file-raw cannot be combined with a backing file');
      const saved = { f: h.backingFile, fmt: h.backingFormat };
      h.backingFile = filename || undefined;
      h.backingFormat = filename ? format : undefined;
      try {
        serializeHeader(h);
      } catch (e) {
        h.backingFile = saved.f;
        h.backingFormat = saved.fmt;
        throw e;
      }
      await this.writeHeader();
    });
  }

  async makeEmpty(): Promise<void> {
    await this.whenIdle(() => makeEmpty(this));
  }

  async amend(options: OptionReader, force: boolean, progress?: AmendProgress): Promise<void> {
    const rest = await this.whenIdle(async () => {
      await flushAll(this, true);
      return amendImage(this, options, force, progress);
    });
    if (rest.size !== undefined) {
      await this.truncate(rest.size, false, 'off');
      await this.node.refreshLength();
    }
    if (rest.downgrade) await this.whenIdle(rest.downgrade);
  }

  snapshotList(): SnapshotInfo[] {
    return this.snapshots.map(({ l1TableOffset: _o, l1Size: _s, extraDataSize: _e, unknownExtra: _u, ...info }) => info);
  }

  snapshotCreate(info: SnapshotInfo): Promise<void> {
    return this.whenIdle(() => createSnapshot(this, info));
  }

  snapshotGoto(idOrName: string): Promise<void> {
    return this.whenIdle(() => gotoSnapshot(this, idOrName));
  }

  snapshotDelete(id: string | undefined, name: string | undefined): Promise<void> {
    return this.whenIdle(() => deleteSnapshot(this, id, name));
  }

  snapshotLoadTmp(id: string | undefined, name: string | undefined): Promise<void> {
    return this.whenIdle(() => loadSnapshotTmp(this, id, name));
  }

  saveVmState(pos: number, buf: Uint8Array): Promise<void> {
    return saveVmState(this, pos, buf);
  }

  loadVmState(pos: number, buf: Uint8Array): Promise<void> {
    return loadVmState(this, pos, buf);
  }

  snapshotLoadVmState(id: string, pos: number, buf: Uint8Array): Promise<void> {
    return this.whenIdle(() => loadSnapshotVmState(this, id, pos, buf));
  }

  supportsPersistentBitmaps(): boolean {
    return this.header.version >= 3;
  }

  canStoreNewDirtyBitmap(name: string, granularity: number): void {
    checkCanStoreBitmap(this, name, granularity);
  }

  /** Stores the persistent bitmaps now; the next write marks them in use again (bitmap-checkpoint.ts). */
  checkpointPersistentBitmaps(): Promise<void> {
    return checkpointBitmaps(this);
  }

  async removePersistentDirtyBitmap(name: string): Promise<void> {
    if (this.readOnly || !this.refs || !this.storeBitmapsOnClose) return;
    this.checkUsable();
    await this.whenIdle(() => removeStoredBitmap(this, name));
  }

  hasZeroInit(): boolean {
    // Preallocated clusters of an encrypted image read as the decryption of zeros (QEMU
    // looks at the first L1 entry only: preallocation allocates every L2 table).
    if (this.header.cryptMethod !== 0 && this.l1.length > 0 && this.l1[0] !== 0) return false;
    return !this.hasDataFile || (this.dataChild.node.instance.hasZeroInit?.() ?? false);
  }

  async getAllocatedFileSize(): Promise<number> {
    // As QEMU's bdrv_sum_allocated_file_sizes: through filters; a child that cannot say makes it unknown.
    const f = await childAllocatedSize(this.file);
    return this.hasDataFile ? f + (await childAllocatedSize(this.dataChild)) : f;
  }

  /** Replaces the refcount structures' in-memory state after a rebuild. */
  resetRefcounts(table: Float64Array, offset: number, order: number): void {
    const entries = this.refs.cache.capacity;
    this.refs = new Refcounts(refcountHost(this), this.clusterBits, order, table, offset, entries);
    registerMetadata(this);
  }

  async close(): Promise<void> {
    if (this.cleanTimer) clearInterval(this.cleanTimer);
    this.cleanTimer = null;
    try {
      await closeImage(this);
    } finally {
      this.crypto?.close();
    }
  }

  describeType(t: ClusterType): string {
    return TYPE_NAMES[t] ?? String(t);
  }
}

/** Longest delay a JavaScript timer takes (longer ones fire at once); cleaning less often is harmless. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export const qcow2Driver = {
  name: 'qcow2',
  kind: 'format',
  strongOptions: ['encrypt.key-secret'],
  supportsBacking: true,
  createOptions: qcow2CreateOptions,
  amendOptions: qcow2AmendOptions,
  probe(header: Uint8Array): number {
    if (header.length >= 8 && header[0] === 0x51 && header[1] === 0x46 && header[2] === 0x49 && header[3] === 0xfb) {
      // Any version from 2 up is qcow2's to open or refuse (version 1 is qcow).
      const v = ((header[4]! << 24) | (header[5]! << 16) | (header[6]! << 8) | header[7]!) >>> 0;
      if (v >= 2) return 100;
    }
    return 0;
  },
  async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
    const file = (await node.openChild(options, 'file', ROLE_IMAGE))!;
    const img = new Qcow2Image(node, file);
    try {
      await img.open(options);
    } catch (e) {
      releaseDirtyBitmaps(node);
      await img.close().catch(() => undefined);
      throw e;
    }
    return img;
  },
  create: createQcow2,
  measure: measureQcow2,
} satisfies BlockDriver;

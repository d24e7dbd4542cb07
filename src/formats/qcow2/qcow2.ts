/**
 * qcow2: the image driver. Opening and validation, the read path (L1/L2
 * mapping, zero, backing fall-through, compressed, external data file), the
 * write path (allocation, copy-on-write, COPIED in-place writes, zero writes,
 * discard, compressed writes), flush ordering, truncate and the image-level
 * operations (check, info, amend, make-empty, backing file change).
 */
import type {
  BlockDriver,
  BlockStatusResult,
  CheckFix,
  CheckResult,
  DriverInstance,
  Mapping,
  MeasureInfo,
  PreallocMode,
  ReqFlags,
  SnapshotInfo,
  SpecificInfo,
} from '../../core/driver.js';
import { ReqFlag, Status } from '../../core/driver.js';
import type { BdrvChild } from '../../core/child.js';
import type { BlockNode } from '../../core/node.js';
import type { OptionReader, BlockOptions } from '../../core/options.js';
import type { BlockLimits } from '../../core/limits.js';
import { BlockError, einval } from '../../core/errors.js';
import { ROLE_DATA_FILE, ROLE_IMAGE } from '../../core/permissions.js';
import { MetaCache, Mutex } from './cache.js';
import {
  AUTOCLEAR,
  AUTOCLEAR_KNOWN,
  COMPAT,
  COMPRESSION_NAMES,
  HDR,
  INCOMPAT,
  MAX_L1_BYTES,
  SUBCLUSTERS,
  V2_HEADER_LENGTH,
} from './constants.js';
import { describeFeatures, parseHeader, peekClusterBits, serializeHeader, type Qcow2Header } from './header.js';
import {
  T,
  TYPE_NAMES,
  clusterType,
  compressedInfo,
  entryOffset,
  isCopied,
  makeCompressedEntry,
  makeEntry,
  readEntry,
  subMask,
  subclusterType,
  writeEntry,
  type ClusterType,
  type RawEntry,
} from './mapping.js';
import { Refcounts } from './refcount.js';
import { compressCluster, decompressCluster } from './compressed.js';
import { readSnapshotTable, type Qcow2Snapshot } from './snapshot.js';
import { describeBitmap, markAllInUse, readBitmapDirectory, type Qcow2Bitmap } from './bitmap.js';
import { checkImage } from './check.js';
import { createQcow2, measureQcow2, qcow2CreateOptions } from './create.js';
import { amendImage } from './amend.js';

/** One answer of the mapping walk: a run of (sub)clusters of one type. */
export interface Run {
  type: ClusterType;
  bytes: number;
  /** Host offset of the first byte (NORMAL, ZERO_ALLOC, UNALLOC_ALLOC). */
  host: number;
  /** Compressed descriptor (COMPRESSED). */
  coffset: number;
  csize: number;
}

/** Default L2 cache: enough for 8 GiB of a 64 KiB-cluster image (1 MiB). */
const DEFAULT_L2_CACHE_BYTES = 1 << 20;
/** Pending frees after which the caches are flushed early. */
const MAX_PENDING_FREES = 4096;

const hex = (n: number) => `0x${n.toString(16)}`;

export class Qcow2Image implements DriverInstance {
  header!: Qcow2Header;
  cs = 0;
  cbits = 0;
  ext = false;
  /** Entries per L2 table. */
  l2Entries = 0;
  /** Bytes per L2 entry (8 or 16). */
  l2esz = 8;
  /** Entries per cached L2 slice. */
  sliceEntries = 0;
  sliceBytes = 0;
  subSize = 0;
  /** L1 entries: L2 table offsets (0 = none) and their COPIED flags. */
  l1 = new Float64Array(0);
  l1Copied = new Uint8Array(0);
  l2cache!: MetaCache;
  refs!: Refcounts;
  readonly lock = new Mutex();
  /** Metadata clusters (cluster index → what), for the overlap checks. */
  readonly meta = new Map<number, string>();
  snapshots: Qcow2Snapshot[] = [];
  snapshotTableBytes = 0;
  bitmaps: Qcow2Bitmap[] = [];
  dataChild!: BdrvChild;
  hasDataFile = false;
  dataFileRaw = false;
  lazyRefcounts = false;
  /** Whether we set the dirty bit in this session (lazy refcounts). */
  markedDirty = false;
  discardNoUnref = false;
  passDiscardRequest = true;
  passDiscardOther = false;
  readonly warnings: string[] = [];
  private cleanTimer: ReturnType<typeof setInterval> | null = null;
  /** Last decompressed cluster (sequential reads of compressed data). */
  private lastCompressed: { key: string; buf: Uint8Array } | null = null;
  /** Guest clusters to discard in the file once their refcount is 0 on disk. */
  private discardAfterFree = new Set<number>();
  readonly supportedWriteFlags = 0;
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
  // Open

  async open(options: OptionReader): Promise<void> {
    const fileLen = this.file.length;
    const first = new Uint8Array(Math.min(512, fileLen));
    await this.file.preadv(0, first.length, first);
    const cbits = peekClusterBits(first);
    const hbuf = new Uint8Array(Math.min(2 ** cbits, fileLen));
    await this.file.preadv(0, hbuf.length, hbuf);
    const h = parseHeader(hbuf, fileLen);
    this.header = h;
    this.cbits = cbits;
    this.cs = 2 ** cbits;
    this.ext = (h.incompatible & INCOMPAT.EXTL2) !== 0n;
    this.l2esz = this.ext ? 16 : 8;
    this.l2Entries = this.cs / this.l2esz;
    this.subSize = this.ext ? this.cs / SUBCLUSTERS : this.cs;

    if (h.incompatible & INCOMPAT.CORRUPT) {
      if (!this.readOnly) {
        throw new BlockError('EACCES', 'qcow2: Image is corrupt; cannot be opened read/write');
      }
      this.warnings.push('qcow2: Image is corrupt; opened read-only');
    }

    // Options (QEMU's qcow2 runtime options).
    const l2CacheSize = options.size('l2-cache-size');
    const l2EntrySize = options.size('l2-cache-entry-size', this.cs);
    const refCacheSize = options.size('refcount-cache-size');
    const cacheSize = options.size('cache-size');
    const cleanInterval = options.uint('cache-clean-interval', 600);
    const lazyOpt = options.bool('lazy-refcounts');
    this.passDiscardRequest = options.bool('pass-discard-request', true);
    options.bool('pass-discard-snapshot', true);
    this.passDiscardOther = options.bool('pass-discard-other', false);
    this.discardNoUnref = options.bool('discard-no-unref', false);
    options.string('overlap-check');
    options.raw('encrypt');
    if (l2EntrySize < 512 || l2EntrySize > this.cs || (l2EntrySize & (l2EntrySize - 1)) !== 0) {
      throw einval(`L2 cache entry size must be a power of two between 512 and the cluster size (${this.cs}), got ${l2EntrySize}`);
    }
    this.sliceBytes = l2EntrySize;
    this.sliceEntries = l2EntrySize / this.l2esz;
    const { l2Bytes, refBytes } = this.cacheSizes(l2CacheSize, refCacheSize, cacheSize);
    this.l2cache = new MetaCache('L2 table', () => this.file, this.sliceBytes, Math.max(2, Math.floor(l2Bytes / this.sliceBytes)));

    // Data file.
    if (h.incompatible & INCOMPAT.DATA_FILE) {
      this.hasDataFile = true;
      this.dataFileRaw = (h.autoclear & AUTOCLEAR.DATA_FILE_RAW) !== 0n;
      this.dataChild = await this.openDataFile(options);
    } else {
      if (options.has('data-file')) {
        throw einval("'data-file' can only be set for images with an external data file");
      }
      this.dataChild = this.file;
    }

    // L1 table.
    this.l1 = new Float64Array(h.l1Size);
    this.l1Copied = new Uint8Array(h.l1Size);
    if (h.l1Size > 0) {
      const raw = new Uint8Array(h.l1Size * 8);
      await this.file.preadv(h.l1TableOffset, raw.length, raw);
      const dv = new DataView(raw.buffer);
      for (let i = 0; i < h.l1Size; i++) {
        const hi = dv.getUint32(i * 8);
        const lo = dv.getUint32(i * 8 + 4);
        this.l1[i] = entryOffset(hi, lo);
        this.l1Copied[i] = isCopied(hi) ? 1 : 0;
      }
    }

    // Refcount table.
    const rtBytes = h.refcountTableClusters * this.cs;
    const rtRaw = new Uint8Array(rtBytes);
    await this.file.preadv(h.refcountTableOffset, rtBytes, rtRaw);
    const rtdv = new DataView(rtRaw.buffer);
    const table = new Float64Array(rtBytes / 8);
    for (let i = 0; i < table.length; i++) {
      const hi = rtdv.getUint32(i * 8);
      const lo = rtdv.getUint32(i * 8 + 4);
      table[i] = hi * 4294967296 + ((lo & 0xfffffe00) >>> 0);
      if (lo & 0x1ff && !this.readOnly) this.warnings.push(`Refcount table entry ${i} has reserved bits set`);
      if (table[i]! > Number.MAX_SAFE_INTEGER) throw new BlockError('EFBIG', `Refcount block offset of entry ${i} is too large`);
    }
    const refEntries = Math.max(4, Math.floor(refBytes / this.cs));
    this.refs = new Refcounts(
      {
        file: () => this.file,
        setReftable: (off, clusters) => this.setReftable(off, clusters),
        addMeta: (off, bytes, kind) => this.addMeta(off, bytes, kind),
        removeMeta: (off, bytes) => this.removeMeta(off, bytes),
        corrupt: (msg) => this.markCorrupt(msg),
        passDiscard: this.passDiscardRequest,
      },
      cbits,
      h.refcountOrder,
      table,
      h.refcountTableOffset,
      refEntries,
    );
    this.refs.cache.validate = () => undefined;

    // Snapshots and bitmaps.
    if (h.nbSnapshots > 0) {
      const r = await readSnapshotTable(this.file, h.snapshotsOffset, h.nbSnapshots, this.cs);
      this.snapshots = r.snapshots;
      this.snapshotTableBytes = r.bytes;
    }
    let bitmapRaw: Uint8Array | null = null;
    if (h.bitmaps) {
      const r = await readBitmapDirectory(this.file, h.bitmaps.directoryOffset, h.bitmaps.directorySize, h.bitmaps.nbBitmaps, this.cs);
      this.bitmaps = r.bitmaps;
      bitmapRaw = r.raw;
    }
    this.registerMetadata();

    this.lazyRefcounts = lazyOpt ?? (h.compatible & COMPAT.LAZY_REFCOUNTS) !== 0n;
    if (this.lazyRefcounts && h.version < 3) {
      throw einval('Lazy refcounts require a qcow2 image with at least qemu 1.1 compatibility level');
    }
    this.l2cache.before = async () => {
      if (!this.lazyRefcounts) {
        await this.refs.flushCache();
        await this.file.flush();
      }
    };

    if (!this.readOnly) {
      if (h.incompatible & INCOMPAT.DIRTY) {
        // Lazy refcounts left the refcounts stale: rebuild them, as QEMU does.
        const res = await checkImage(this, { leaks: true, errors: true });
        if (res.corruptions - res.corruptionsFixed > 0) {
          throw new BlockError('EIO', `Could not repair dirty image: ${res.corruptions - res.corruptionsFixed} corruptions remain`);
        }
        this.header.incompatible &= ~INCOMPAT.DIRTY;
        await this.writeHeader();
      }
      let rewrite = false;
      if (h.autoclear & ~AUTOCLEAR_KNOWN) {
        h.autoclear &= AUTOCLEAR_KNOWN;
        rewrite = true;
      }
      if (rewrite) await this.writeHeader();
      if (bitmapRaw && h.bitmaps && markAllInUse(bitmapRaw, this.bitmaps)) {
        await this.file.pwritev(h.bitmaps.directoryOffset, bitmapRaw.length, bitmapRaw);
        await this.file.flush();
      }
    } else if (h.incompatible & INCOMPAT.DIRTY) {
      this.warnings.push('qcow2: Image is dirty (lazy refcounts); refcounts may be stale until a read-write open repairs them');
    }
    if (cleanInterval > 0 && typeof setInterval !== 'undefined') {
      let mark = 0;
      this.cleanTimer = setInterval(() => {
        const l2mark = mark;
        this.l2cache.dropIdle(l2mark);
        this.refs.cache.dropIdle(l2mark);
        mark = Math.min(this.l2cache.now, this.refs.cache.now);
      }, cleanInterval * 1000);
      (this.cleanTimer as { unref?: () => void }).unref?.();
    }
  }

  private cacheSizes(l2?: number, ref?: number, total?: number): { l2Bytes: number; refBytes: number } {
    const cs = this.cs;
    // What the whole image needs: one L2 slice per slice of guest space.
    const maxL2 = Math.max(Math.ceil(this.header.size / this.cs) * this.l2esz, 2 * this.sliceBytes);
    const minRef = 4 * cs;
    if (total !== undefined) {
      if (l2 !== undefined && ref !== undefined) {
        throw einval("l2-cache-size, refcount-cache-size and cache-size may not be set at the same time");
      }
      if (l2 !== undefined) return { l2Bytes: l2, refBytes: Math.max(minRef, total - l2) };
      if (ref !== undefined) return { l2Bytes: Math.max(2 * cs, total - ref), refBytes: ref };
      const l2b = Math.min(maxL2, Math.floor(total * 4 / 5));
      return { l2Bytes: l2b, refBytes: Math.max(minRef, total - l2b) };
    }
    const l2Bytes = l2 ?? Math.min(maxL2, DEFAULT_L2_CACHE_BYTES);
    const refBytes = ref ?? Math.max(minRef, Math.floor(l2Bytes / 4));
    return { l2Bytes, refBytes };
  }

  private async openDataFile(options: OptionReader): Promise<BdrvChild> {
    const node = this.node;
    if (options.has('data-file')) {
      return (await node.openChild(options, 'data-file', ROLE_DATA_FILE))!;
    }
    options.consume('data-file');
    const name = this.header.dataFile;
    if (!name) throw einval("'data-file' is required for this image");
    const resolved = node.graph.resolveBacking(node, name, undefined);
    const proto = (resolved.file ?? resolved) as BlockOptions;
    const child = await node.graph.openNode(proto, {
      inheritFrom: node,
      readOnly: node.readOnly,
      relativeTo: node,
      childKey: 'data-file',
    } as never);
    try {
      return await node.graph.attachChild(node, child, 'data-file', ROLE_DATA_FILE);
    } catch (e) {
      await child.unref();
      throw e;
    }
  }

  /** Registers every metadata cluster for the overlap checks. */
  private registerMetadata(): void {
    const h = this.header;
    this.meta.clear();
    this.addMeta(0, this.cs, 'header');
    if (h.l1Size > 0) this.addMeta(h.l1TableOffset, h.l1Size * 8, 'active L1 table');
    this.addMeta(h.refcountTableOffset, h.refcountTableClusters * this.cs, 'refcount table');
    for (const off of this.refs.table) if (off) this.addMeta(off, this.cs, 'refcount block');
    for (const off of this.l1) if (off) this.addMeta(off, this.cs, 'active L2 table');
    if (h.nbSnapshots > 0) this.addMeta(h.snapshotsOffset, this.snapshotTableBytes, 'snapshot table');
    for (const s of this.snapshots) if (s.l1Size) this.addMeta(s.l1TableOffset, s.l1Size * 8, 'inactive L1 table');
    if (h.bitmaps) this.addMeta(h.bitmaps.directoryOffset, h.bitmaps.directorySize, 'bitmap directory');
  }

  addMeta(offset: number, bytes: number, kind: string): void {
    if (bytes <= 0) return;
    const first = Math.floor(offset / this.cs);
    const last = Math.floor((offset + bytes - 1) / this.cs);
    if (last - first > 1 << 22) return;
    for (let c = first; c <= last; c++) this.meta.set(c, kind);
  }

  removeMeta(offset: number, bytes: number): void {
    if (bytes <= 0) return;
    const first = Math.floor(offset / this.cs);
    const last = Math.floor((offset + bytes - 1) / this.cs);
    for (let c = first; c <= last; c++) this.meta.delete(c);
  }

  /** Refuses (and marks the image corrupt) when a data write would hit metadata. */
  private async overlapCheck(host: number, bytes: number): Promise<void> {
    if (this.hasDataFile) return;
    const first = Math.floor(host / this.cs);
    const last = Math.floor((host + bytes - 1) / this.cs);
    for (let c = first; c <= last; c++) {
      const kind = this.meta.get(c);
      if (kind) {
        throw await this.markCorrupt(`Preventing invalid write on metadata (overlaps with ${kind}) at ${hex(c * this.cs)}`);
      }
    }
  }

  /** Marks the image corrupt (QEMU's qcow2_signal_corruption) and returns the EIO to throw. */
  async markCorrupt(message: string): Promise<BlockError> {
    const err = new BlockError('EIO', `qcow2: Marking image as corrupt: ${message}; further corruption events will be suppressed`, {
      node: this.node.nodeName,
    });
    if (!this.readOnly && this.header.version === 3 && !(this.header.incompatible & INCOMPAT.CORRUPT)) {
      this.header.incompatible |= INCOMPAT.CORRUPT;
      try {
        await this.writeHeader();
      } catch {
        // The error we report is the corruption.
      }
    }
    this.corrupt = true;
    return err;
  }
  corrupt = false;

  private checkUsable(): void {
    if (this.corrupt) throw new BlockError('EIO', 'qcow2: Image is corrupt; no further writes are accepted', { node: this.node.nodeName });
  }

  /** Rewrites the header cluster and flushes. */
  async writeHeader(): Promise<void> {
    const buf = serializeHeader(this.header);
    const len = this.header.version === 2 ? Math.max(V2_HEADER_LENGTH, 512) : buf.length;
    await this.file.pwritev(0, Math.min(len, buf.length), buf.subarray(0, Math.min(len, buf.length)));
    await this.file.flush();
  }

  private async setReftable(offset: number, clusters: number): Promise<void> {
    this.header.refcountTableOffset = offset;
    this.header.refcountTableClusters = clusters;
    const b = new Uint8Array(12);
    const dv = new DataView(b.buffer);
    dv.setBigUint64(0, BigInt(offset));
    dv.setUint32(8, clusters);
    await this.file.pwritev(HDR.REFCOUNT_TABLE_OFFSET, 12, b);
    await this.file.flush();
  }

  // -------------------------------------------------------------------------
  // Mapping

  /** Validates an L2 table offset from the L1 table. */
  private async l2Offset(l1i: number): Promise<number> {
    const off = this.l1[l1i]!;
    if (off % this.cs !== 0) {
      throw await this.markCorrupt(`L2 table offset ${hex(off)} unaligned (L1 index: ${hex(l1i)})`);
    }
    return off;
  }

  /** The first run of same-typed, host-contiguous (sub)clusters from `offset`, at most `max` bytes. */
  async lookup(offset: number, max: number): Promise<Run> {
    const cs = this.cs;
    const ci = Math.floor(offset / cs);
    const inCluster = offset - ci * cs;
    const l1i = Math.floor(ci / this.l2Entries);
    const run: Run = { type: T.UNALLOC, bytes: 0, host: 0, coffset: 0, csize: 0 };
    if (l1i >= this.l1.length) {
      run.bytes = max;
      return run;
    }
    const idx = ci % this.l2Entries;
    const sliceIdx = Math.floor(idx / this.sliceEntries);
    const i0 = idx % this.sliceEntries;
    const sliceEnd = (ci - i0 + this.sliceEntries) * cs;
    const limit = Math.min(max, sliceEnd - offset);
    const l2off = await this.l2Offset(l1i);
    if (l2off === 0) {
      run.bytes = limit;
      return run;
    }
    const buf = await this.l2cache.get(l2off + sliceIdx * this.sliceBytes);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const ext = this.ext;
    const df = this.hasDataFile;
    let e = readEntry(dv, i0, ext);
    const ct: ClusterType = clusterType(e, ext, df);
    if (ct === T.COMPRESSED) {
      const ci2 = compressedInfo(e, this.cbits);
      run.type = T.COMPRESSED;
      run.coffset = ci2.offset;
      run.csize = ci2.sectors * 512 - (ci2.offset & 511);
      run.bytes = Math.min(limit, cs - inCluster);
      if (df) throw await this.markCorrupt(`Compressed cluster with an external data file (L2 index ${hex(idx)})`);
      return run;
    }
    if (!ext) {
      let host = entryOffset(e.hi, e.lo);
      if ((ct === T.NORMAL || ct === T.ZERO_ALLOC) && host % cs !== 0) {
        throw await this.markCorrupt(`Cluster allocation offset ${hex(host)} unaligned (L2 offset: ${hex(l2off)}, L2 index: ${hex(idx)})`);
      }
      if (ct === T.NORMAL && df && host !== ci * cs) {
        throw await this.markCorrupt(`External data file cluster at ${hex(host)} does not match guest offset ${hex(ci * cs)}`);
      }
      run.type = ct as ClusterType;
      run.host = host + inCluster;
      let bytes = cs - inCluster;
      let i = i0 + 1;
      while (bytes < limit) {
        e = readEntry(dv, i, false);
        const t2: ClusterType = clusterType(e, false, df);
        if (t2 !== (ct as ClusterType) || t2 === T.COMPRESSED) break;
        if (ct === T.NORMAL || ct === T.ZERO_ALLOC) {
          host += cs;
          if (entryOffset(e.hi, e.lo) !== host) break;
        }
        bytes += cs;
        i++;
      }
      run.bytes = Math.min(bytes, limit);
      return run;
    }
    // Extended L2: walk subclusters.
    const sc = this.subSize;
    let s = Math.floor(inCluster / sc);
    const host0 = entryOffset(e.hi, e.lo);
    if (ct === T.NORMAL && host0 % cs !== 0) {
      throw await this.markCorrupt(`Cluster allocation offset ${hex(host0)} unaligned (L2 offset: ${hex(l2off)}, L2 index: ${hex(idx)})`);
    }
    const st = subclusterType(ct, e, s);
    if (st === T.INVALID) {
      throw await this.markCorrupt(`Invalid cluster entry found (L2 offset: ${hex(l2off)}, L2 index: ${hex(idx)})`);
    }
    run.type = st;
    run.host = host0 + inCluster;
    let expectHost = host0 + (s + 1) * sc;
    let bytes = (s + 1) * sc - inCluster;
    let i = i0;
    s++;
    const hasHost = st === T.NORMAL || st === T.ZERO_ALLOC || st === T.UNALLOC_ALLOC;
    let cur = e;
    let curType: ClusterType = ct;
    while (bytes < limit) {
      if (s === SUBCLUSTERS) {
        i++;
        s = 0;
        cur = readEntry(dv, i, true);
        curType = clusterType(cur, true, df);
        if (curType === T.COMPRESSED) break;
        if (hasHost && entryOffset(cur.hi, cur.lo) !== expectHost) break;
      }
      const t2 = subclusterType(curType, cur, s);
      if (t2 !== st) break;
      bytes += sc;
      expectHost += sc;
      s++;
    }
    run.bytes = Math.min(bytes, limit);
    return run;
  }

  // -------------------------------------------------------------------------
  // Read

  preadv(offset: number, bytes: number, buf: Uint8Array): Promise<void> | void {
    // Fast path: one run of plain data in a cached L2 slice (no promise of our own).
    const host = this.fastHost(offset, bytes);
    if (host >= 0) return this.dataChild.preadv(host, bytes, buf);
    return this.readInternal(offset, bytes, buf);
  }

  /**
   * Host offset of [offset, offset+bytes) when it is plain data in one run of
   * a cached slice of a standard L2 table; -1 otherwise (take the full path).
   */
  private fastHost(offset: number, bytes: number): number {
    if (this.ext) return -1;
    const cs = this.cs;
    const ci = Math.floor(offset / cs);
    const l1i = Math.floor(ci / this.l2Entries);
    if (l1i >= this.l1.length) return -1;
    const l2off = this.l1[l1i]!;
    if (l2off === 0 || l2off % cs !== 0) return -1;
    const idx = ci % this.l2Entries;
    const i0 = idx % this.sliceEntries;
    const lastCi = Math.floor((offset + bytes - 1) / cs);
    if (lastCi - ci >= this.sliceEntries - i0) return -1;
    const buf = this.l2cache.peek(l2off + (idx - i0) * this.l2esz);
    if (!buf) return -1;
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let expect = -1;
    let first = -1;
    for (let i = i0; i <= i0 + (lastCi - ci); i++) {
      const hi = dv.getUint32(i * 8);
      const lo = dv.getUint32(i * 8 + 4);
      if (hi & 0x40000000 || lo & 1) return -1;
      const host = entryOffset(hi, lo);
      if (host === 0 || host % cs !== 0 || this.hasDataFile) return -1;
      if (first < 0) first = host;
      else if (host !== expect) return -1;
      expect = host + cs;
    }
    return first + (offset - ci * cs);
  }

  /** Reads guest data through the mapping (no lock; also used for copy-on-write). */
  async readInternal(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    let pos = 0;
    while (pos < bytes) {
      const run = await this.lookup(offset + pos, bytes - pos);
      const n = run.bytes;
      const out = buf.subarray(pos, pos + n);
      switch (run.type) {
        case T.NORMAL:
          await this.dataChild.preadv(run.host, n, out);
          break;
        case T.ZERO_PLAIN:
        case T.ZERO_ALLOC:
          out.fill(0);
          break;
        case T.COMPRESSED:
          await this.readCompressed(run, offset + pos, out);
          break;
        default:
          await this.readBacking(offset + pos, n, out);
      }
      pos += n;
    }
  }

  private async readBacking(offset: number, n: number, out: Uint8Array): Promise<void> {
    const b = this.node.backing;
    if (!b) {
      out.fill(0, 0, n);
      return;
    }
    const blen = b.node.length;
    const k = offset >= blen ? 0 : Math.min(n, blen - offset);
    if (k > 0) await b.preadv(offset, k, out.subarray(0, k));
    if (k < n) out.fill(0, k, n);
  }

  private async readCompressed(run: Run, offset: number, out: Uint8Array): Promise<void> {
    const key = `${run.coffset}:${run.csize}`;
    let cluster: Uint8Array;
    if (this.lastCompressed?.key === key) {
      cluster = this.lastCompressed.buf;
    } else {
      if (run.csize <= 0 || run.csize > 2 * this.cs + 512) {
        throw await this.markCorrupt(`Compressed cluster descriptor at ${hex(run.coffset)} has an invalid size ${run.csize}`);
      }
      const input = new Uint8Array(run.csize);
      await this.file.preadv(run.coffset, run.csize, input);
      cluster = new Uint8Array(this.cs);
      await decompressCluster(this.header.compressionType, input, cluster, { node: this.node.nodeName, offset: run.coffset });
      this.lastCompressed = { key, buf: cluster };
    }
    const inCluster = offset % this.cs;
    out.set(cluster.subarray(inCluster, inCluster + out.length));
  }

  // -------------------------------------------------------------------------
  // Block status and mapping for the generic layer

  async blockStatus(_wantZero: boolean, offset: number, bytes: number): Promise<BlockStatusResult> {
    const run = await this.lookup(offset, bytes);
    const file = this.dataChild.node;
    switch (run.type) {
      case T.NORMAL:
        return { status: Status.DATA | Status.OFFSET_VALID, pnum: run.bytes, map: run.host, file };
      case T.ZERO_PLAIN:
        return { status: Status.ZERO, pnum: run.bytes };
      case T.ZERO_ALLOC:
        return { status: Status.ZERO | Status.OFFSET_VALID, pnum: run.bytes, map: run.host, file };
      case T.UNALLOC_ALLOC:
        return { status: Status.OFFSET_VALID, pnum: run.bytes, map: run.host, file };
      case T.COMPRESSED:
        return { status: Status.DATA | Status.COMPRESSED, pnum: run.bytes };
      default:
        return { status: 0, pnum: run.bytes };
    }
  }

  async getMapping(offset: number, bytes: number): Promise<Mapping> {
    if (offset >= this.header.size) return { kind: 'eof', offset, length: 0 };
    const run = await this.lookup(offset, Math.min(bytes, this.header.size - offset));
    const length = run.bytes;
    switch (run.type) {
      case T.NORMAL:
        return { kind: 'data', offset, length, child: this.dataChild, hostOffset: run.host };
      case T.ZERO_PLAIN:
      case T.ZERO_ALLOC:
        return { kind: 'zero', offset, length };
      case T.COMPRESSED:
        return { kind: 'compressed', offset, length, child: this.file, hostOffset: run.coffset, compressedLength: run.csize };
      default:
        return { kind: 'unallocated', offset, length };
    }
  }

  // -------------------------------------------------------------------------
  // Write path helpers

  /** Sets the dirty bit before the first metadata change with lazy refcounts. */
  private async beforeModify(): Promise<void> {
    this.checkUsable();
    if (this.lazyRefcounts && !this.markedDirty) {
      if (!(this.header.incompatible & INCOMPAT.DIRTY)) {
        await this.refs.flushCache();
        this.header.incompatible |= INCOMPAT.DIRTY;
        await this.writeHeader();
      }
      this.markedDirty = true;
    }
  }

  /** Writes L1 entry `i` to disk. */
  private async writeL1Entry(i: number): Promise<void> {
    const b = new Uint8Array(8);
    const e = makeEntry(this.l1[i]!, this.l1Copied[i] === 1);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, e.hi);
    dv.setUint32(4, e.lo);
    await this.file.pwritev(this.header.l1TableOffset + i * 8, 8, b);
  }

  /** Grows the L1 table to at least `entries` (new table, then the header, then the old one is freed). */
  async growL1(entries: number): Promise<void> {
    if (entries <= this.l1.length) return;
    if (entries > MAX_L1_BYTES / 8) throw new BlockError('EFBIG', `L1 table of ${entries} entries would be too large`);
    const bytes = entries * 8;
    const clusters = Math.ceil(bytes / this.cs);
    const off = await this.refs.alloc(clusters);
    const raw = new Uint8Array(clusters * this.cs);
    const dv = new DataView(raw.buffer);
    for (let i = 0; i < this.l1.length; i++) {
      const e = makeEntry(this.l1[i]!, this.l1Copied[i] === 1);
      dv.setUint32(i * 8, e.hi);
      dv.setUint32(i * 8 + 4, e.lo);
    }
    await this.refs.flushCache();
    await this.file.flush();
    await this.file.pwritev(off, raw.length, raw);
    await this.file.flush();
    const oldOff = this.header.l1TableOffset;
    const oldSize = this.l1.length;
    const hb = new Uint8Array(12);
    const hdv = new DataView(hb.buffer);
    hdv.setUint32(0, entries);
    hdv.setBigUint64(4, BigInt(off));
    await this.file.pwritev(HDR.L1_SIZE, 12, hb);
    await this.file.flush();
    this.header.l1Size = entries;
    this.header.l1TableOffset = off;
    const l1 = new Float64Array(entries);
    l1.set(this.l1);
    const cp = new Uint8Array(entries);
    cp.set(this.l1Copied);
    this.l1 = l1;
    this.l1Copied = cp;
    if (oldSize > 0) {
      this.removeMeta(oldOff, oldSize * 8);
      this.refs.queueFree(oldOff, oldSize * 8);
    }
    this.addMeta(off, bytes, 'active L1 table');
  }

  /** Offset of a writable (COPIED) L2 table for L1 index `l1i`, allocating or copying it. */
  private async writableL2(l1i: number): Promise<number> {
    if (l1i >= this.l1.length) await this.growL1(l1i + 1);
    const old = await this.l2Offset(l1i);
    if (old !== 0 && this.l1Copied[l1i]) return old;
    const cs = this.cs;
    const off = await this.refs.alloc(1);
    await this.overlapCheck(off, cs);
    const table = new Uint8Array(cs);
    if (old !== 0) {
      for (let s = 0; s < cs / this.sliceBytes; s++) {
        table.set(await this.l2cache.get(old + s * this.sliceBytes), s * this.sliceBytes);
      }
    }
    // Refcount of the new table first, then the table, then the L1 entry.
    await this.refs.flushCache();
    await this.file.flush();
    await this.file.pwritev(off, cs, table);
    await this.file.flush();
    this.l1[l1i] = off;
    this.l1Copied[l1i] = 1;
    await this.writeL1Entry(l1i);
    for (let s = 0; s < cs / this.sliceBytes; s++) {
      await this.l2cache.put(off + s * this.sliceBytes, table.slice(s * this.sliceBytes, (s + 1) * this.sliceBytes), false);
    }
    this.addMeta(off, cs, 'active L2 table');
    if (old !== 0) {
      this.removeMeta(old, cs);
      this.refs.queueFree(old, cs);
    }
    return off;
  }

  /** The slice of a writable L2 table holding guest cluster `ci`. */
  private async writableSlice(ci: number): Promise<{ sliceOff: number; buf: Uint8Array; dv: DataView; i0: number }> {
    const l1i = Math.floor(ci / this.l2Entries);
    const l2off = await this.writableL2(l1i);
    const idx = ci % this.l2Entries;
    const sliceOff = l2off + Math.floor(idx / this.sliceEntries) * this.sliceBytes;
    const buf = await this.l2cache.get(sliceOff);
    return { sliceOff, buf, dv: new DataView(buf.buffer, buf.byteOffset, buf.byteLength), i0: idx % this.sliceEntries };
  }

  /** Queues the release of the host cluster(s) an entry owns. */
  private freeEntry(e: RawEntry, ct: ClusterType, discard: boolean): void {
    if (ct === T.COMPRESSED) {
      const c = compressedInfo(e, this.cbits);
      const start = c.offset & ~511;
      this.refs.queueFree(start, c.sectors * 512);
      return;
    }
    if (ct !== T.NORMAL && ct !== T.ZERO_ALLOC) return;
    const host = entryOffset(e.hi, e.lo);
    if (this.hasDataFile) return;
    this.refs.queueFree(host, this.cs);
    if (discard) this.discardAfterFree.add(host / this.cs);
  }

  /** Makes queued frees durable: L2 tables first, then the decremented refcounts. */
  async flushAll(): Promise<void> {
    await this.l2cache.flush();
    if (this.refs.pendingCount > 0) {
      await this.file.flush();
      const freed = await this.refs.applyFrees();
      for (const c of freed) this.l2cache.forgetRange(c * this.cs, (c + 1) * this.cs);
      await this.refs.flushCache();
      if (this.discardAfterFree.size > 0) {
        await this.file.flush();
        const set = this.discardAfterFree;
        this.discardAfterFree = new Set();
        for (const c of freed) {
          if (set.has(c)) {
            try {
              await this.file.pdiscard(c * this.cs, this.cs);
            } catch {
              // Advisory.
            }
          }
        }
      }
    } else {
      await this.refs.flushCache();
    }
  }

  async flushToOs(): Promise<void> {
    if (this.readOnly || !this.refs) return;
    await this.lock.run(() => this.flushAll());
  }

  // -------------------------------------------------------------------------
  // Write

  async pwritev(offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): Promise<void> {
    if (flags & ReqFlag.COMPRESSED) return this.writeCompressed(offset, bytes, buf);
    await this.lock.run(async () => {
      await this.beforeModify();
      let pos = 0;
      while (pos < bytes) pos += await this.writeRun(offset + pos, bytes - pos, buf.subarray(pos));
      if (this.refs.pendingCount > MAX_PENDING_FREES) await this.flushAll();
    });
  }

  /**
   * Writes the part of [off, off+len) that lies in one L2 slice: plans each
   * cluster (in place or newly allocated, with its copy-on-write areas),
   * writes the data, then updates the L2 entries. Returns the bytes done.
   */
  private async writeRun(off: number, len: number, data: Uint8Array): Promise<number> {
    const cs = this.cs;
    const ci0 = Math.floor(off / cs);
    const { sliceOff, buf, dv, i0 } = await this.writableSlice(ci0);
    const nClusters = Math.min(Math.ceil((off + len) / cs) - ci0, this.sliceEntries - i0);
    const runEnd = Math.min(off + len, (ci0 + nClusters) * cs);
    const sc = this.subSize;
    interface Plan {
      old: RawEntry;
      ct: ClusterType;
      host: number;
      fs: number;
      fe: number;
      alloc: boolean;
      entry: RawEntry;
      freeOld: boolean;
    }
    const plans: Plan[] = [];
    let need = 0;
    for (let k = 0; k < nClusters; k++) {
      const ci = ci0 + k;
      const cstart = ci * cs;
      const ws = Math.max(off, cstart) - cstart;
      const we = Math.min(runEnd, cstart + cs) - cstart;
      const old = readEntry(dv, i0 + k, this.ext);
      const ct = clusterType(old, this.ext, this.hasDataFile);
      const oldHost = entryOffset(old.hi, old.lo);
      let inPlace = false;
      let host = 0;
      if (this.hasDataFile) {
        inPlace = true;
        host = cstart;
      } else if ((ct === T.NORMAL || ct === T.ZERO_ALLOC) && isCopied(old.hi)) {
        if (oldHost % cs !== 0) throw await this.markCorrupt(`Cluster allocation offset ${hex(oldHost)} unaligned`);
        inPlace = true;
        host = oldHost;
      }
      let fs: number;
      let fe: number;
      const entry: RawEntry = { hi: 0, lo: 0, zero: 0, alloc: 0 };
      if (!this.ext) {
        if (inPlace && ct === T.NORMAL) {
          fs = ws;
          fe = we;
        } else {
          fs = 0;
          fe = cs;
        }
      } else {
        // Subclusters: write whole subclusters; a fresh copy of a shared or
        // compressed cluster takes the whole cluster.
        const fromShared = !inPlace && (ct === T.NORMAL || ct === T.COMPRESSED || ct === T.ZERO_ALLOC);
        if (fromShared) {
          fs = 0;
          fe = cs;
        } else {
          fs = Math.floor(ws / sc) * sc;
          fe = Math.ceil(we / sc) * sc;
        }
      }
      const fresh = !inPlace;
      if (fresh) need++;
      if (!this.ext) {
        Object.assign(entry, makeEntry(0, true));
      } else {
        const mask = subMask(fs / sc, fe / sc);
        if (fresh && (ct === T.NORMAL || ct === T.COMPRESSED || ct === T.ZERO_ALLOC)) {
          entry.alloc = 0xffffffff;
          entry.zero = 0;
        } else {
          const baseAlloc = ct === T.NORMAL && inPlace ? old.alloc : 0;
          entry.alloc = (baseAlloc | mask) >>> 0;
          entry.zero = (old.zero & ~mask) >>> 0;
          if (ct === T.COMPRESSED) entry.zero = 0;
        }
      }
      plans.push({ old, ct, host, fs, fe, alloc: fresh, entry, freeOld: fresh && ct !== T.UNALLOC && ct !== T.ZERO_PLAIN });
    }
    if (need > 0) {
      let next = await this.refs.alloc(need);
      for (const p of plans) {
        if (p.alloc) {
          p.host = next;
          next += cs;
        }
      }
    }
    // Data: group host-contiguous clusters whose written ranges join.
    let k = 0;
    while (k < nClusters) {
      let j = k;
      while (j + 1 < nClusters && plans[j]!.fe === cs && plans[j + 1]!.fs === 0 && plans[j + 1]!.host === plans[j]!.host + cs) j++;
      const first = plans[k]!;
      const last = plans[j]!;
      const gStart = (ci0 + k) * cs + first.fs;
      const gEnd = (ci0 + j) * cs + last.fe;
      const hStart = first.host + first.fs;
      await this.overlapCheck(hStart, gEnd - gStart);
      let src: Uint8Array;
      if (gStart >= off && gEnd <= runEnd) {
        src = data.subarray(gStart - off, gEnd - off);
      } else {
        src = new Uint8Array(gEnd - gStart);
        const headEnd = Math.min(Math.max(off, gStart), gEnd);
        if (headEnd > gStart) await this.readOld(gStart, headEnd - gStart, src.subarray(0, headEnd - gStart), plans[k]!);
        const tailStart = Math.max(Math.min(runEnd, gEnd), gStart);
        if (gEnd > tailStart) await this.readOld(tailStart, gEnd - tailStart, src.subarray(tailStart - gStart), plans[j]!);
        const ds = Math.max(off, gStart);
        const de = Math.min(runEnd, gEnd);
        if (de > ds) src.set(data.subarray(ds - off, de - off), ds - gStart);
      }
      await this.dataChild.pwritev(hStart, src.length, src);
      k = j + 1;
    }
    // Metadata: the L2 entries (written back after the refcounts, see flushAll).
    for (let k2 = 0; k2 < nClusters; k2++) {
      const p = plans[k2]!;
      const e = p.entry;
      const ne = makeEntry(this.hasDataFile ? (ci0 + k2) * cs : p.host, true);
      e.hi = ne.hi;
      e.lo = ne.lo;
      writeEntry(dv, i0 + k2, this.ext, e);
      if (p.freeOld) this.freeEntry(p.old, p.ct, this.passDiscardOther);
    }
    this.l2cache.setDirty(sliceOff, buf);
    return runEnd - off;
  }

  /** Reads the current guest content for a copy-on-write area. */
  private async readOld(offset: number, n: number, out: Uint8Array, _plan: unknown): Promise<void> {
    await this.readInternal(offset, n, out);
  }

  // -------------------------------------------------------------------------
  // Compressed writes

  private async writeCompressed(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    const cs = this.cs;
    if (this.hasDataFile) throw new BlockError('ENOTSUP', 'Compression is not supported with an external data file');
    if (offset % cs !== 0) throw einval(`Compressed writes must be cluster aligned (offset ${offset})`);
    for (let pos = 0; pos < bytes; pos += cs) {
      const n = Math.min(cs, bytes - pos);
      if (n < cs && offset + pos + n !== this.header.size) {
        throw einval(`Compressed writes must cover whole clusters (offset ${offset + pos}, ${n} bytes)`);
      }
      let cluster = buf.subarray(pos, pos + n);
      if (n < cs) {
        const padded = new Uint8Array(cs);
        padded.set(cluster);
        cluster = padded;
      }
      const packed = await compressCluster(this.header.compressionType, cluster);
      if (!packed) {
        await this.pwritev(offset + pos, n, buf.subarray(pos, pos + n), 0);
        continue;
      }
      await this.lock.run(async () => {
        await this.beforeModify();
        const ci = Math.floor((offset + pos) / cs);
        const { sliceOff, buf: l2, dv, i0 } = await this.writableSlice(ci);
        const old = readEntry(dv, i0, this.ext);
        const ct = clusterType(old, this.ext, false);
        if (ct === T.NORMAL || ct === T.COMPRESSED || ct === T.ZERO_ALLOC) {
          throw new BlockError('EIO', `Compression can't overwrite the allocated cluster at guest offset ${offset + pos}`);
        }
        const host = await this.refs.allocBytes(packed.length);
        await this.overlapCheck(host, packed.length);
        await this.file.pwritev(host, packed.length, packed);
        writeEntry(dv, i0, this.ext, makeCompressedEntry(host, packed.length, this.cbits));
        this.l2cache.setDirty(sliceOff, l2);
        this.lastCompressed = null;
      });
    }
  }

  // -------------------------------------------------------------------------
  // Zero writes and discard

  refreshLimits(l: BlockLimits): void {
    l.pwriteZeroesAlignment = this.ext ? this.subSize : this.cs;
    l.pdiscardAlignment = this.cs;
    l.requestAlignment = 1;
  }

  /** Whether the whole cluster at `ci` reads as zeros now. */
  private async clusterReadsZero(ci: number): Promise<boolean> {
    const cs = this.cs;
    const run = await this.lookup(ci * cs, cs);
    if (run.bytes < cs) {
      // Mixed subclusters: check each run.
      let pos = 0;
      while (pos < cs) {
        const r = await this.lookup(ci * cs + pos, cs - pos);
        if (!(await this.runReadsZero(r, ci * cs + pos))) return false;
        pos += r.bytes;
      }
      return true;
    }
    return this.runReadsZero(run, ci * cs);
  }

  private async runReadsZero(r: Run, offset: number): Promise<boolean> {
    if (r.type === T.ZERO_PLAIN || r.type === T.ZERO_ALLOC) return true;
    if (r.type === T.UNALLOC || r.type === T.UNALLOC_ALLOC) {
      const b = this.node.backing;
      return !b || offset >= b.node.length;
    }
    return false;
  }

  async pwriteZeroes(offset: number, bytes: number, flags: ReqFlags): Promise<void> {
    if (this.header.version < 3 || this.dataFileRaw) {
      throw new BlockError('ENOTSUP', 'qcow2 v2 images (and raw data files) cannot store zero clusters');
    }
    const cs = this.cs;
    const sc = this.subSize;
    await this.lock.run(async () => {
      const end = offset + bytes;
      // A partial (sub)cluster that already reads as zeros needs nothing; else fall back to writing zeros.
      if (offset % sc !== 0 || (end % sc !== 0 && end !== this.header.size)) {
        const ci = Math.floor(offset / cs);
        if (Math.floor((end - 1) / cs) === ci && (await this.clusterReadsZero(ci))) return;
        throw new BlockError('ENOTSUP', 'Partial cluster zero write');
      }
      if (!this.ext && (offset % cs !== 0 || (end % cs !== 0 && end !== this.header.size))) {
        const ci = Math.floor(offset / cs);
        if (Math.floor((end - 1) / cs) === ci && (await this.clusterReadsZero(ci))) return;
        throw new BlockError('ENOTSUP', 'Partial cluster zero write');
      }
      await this.beforeModify();
      const unmapReq = (flags & ReqFlag.MAY_UNMAP) !== 0;
      let pos = offset;
      while (pos < end) {
        const ci = Math.floor(pos / cs);
        const { sliceOff, buf, dv, i0 } = await this.writableSlice(ci);
        const n = Math.min(Math.ceil(end / cs) - ci, this.sliceEntries - i0);
        for (let k = 0; k < n; k++) {
          const cstart = (ci + k) * cs;
          const zs = Math.max(pos, cstart) - cstart;
          const ze = Math.min(end, cstart + cs) - cstart;
          const old = readEntry(dv, i0 + k, this.ext);
          const ct = clusterType(old, this.ext, this.hasDataFile);
          const whole = zs === 0 && (ze === cs || cstart + ze === this.header.size);
          if (!this.ext) {
            const unmap = unmapReq || ct === T.COMPRESSED;
            let ne: RawEntry;
            if (unmap && !this.hasDataFile) {
              ne = { hi: 0, lo: 1, zero: 0, alloc: 0 };
              this.freeEntry(old, ct, this.passDiscardRequest);
            } else {
              ne = { hi: old.hi, lo: (old.lo | 1) >>> 0, zero: 0, alloc: 0 };
            }
            writeEntry(dv, i0 + k, false, ne);
            continue;
          }
          const mask = whole ? 0xffffffff : subMask(zs / sc, Math.ceil(ze / sc));
          if (ct === T.COMPRESSED && !whole) throw new BlockError('ENOTSUP', 'Partial zero write to a compressed cluster');
          if (whole && (unmapReq || ct === T.COMPRESSED) && !this.hasDataFile) {
            this.freeEntry(old, ct, this.passDiscardRequest);
            writeEntry(dv, i0 + k, true, { hi: 0, lo: 0, zero: 0xffffffff, alloc: 0 });
          } else {
            const keep = ct === T.COMPRESSED ? { hi: 0, lo: 0 } : old;
            writeEntry(dv, i0 + k, true, {
              hi: keep.hi,
              lo: keep.lo,
              zero: (old.zero | mask) >>> 0,
              alloc: (old.alloc & ~mask) >>> 0,
            });
          }
        }
        this.l2cache.setDirty(sliceOff, buf);
        pos = Math.min(end, (ci + n) * cs);
      }
      if (this.refs.pendingCount > MAX_PENDING_FREES) await this.flushAll();
    });
  }

  async pdiscard(offset: number, bytes: number): Promise<void> {
    await this.lock.run(() => this.discardRange(offset, bytes, false, this.passDiscardRequest));
  }

  /**
   * Discards whole clusters in [offset, offset+bytes). `full` makes them fall
   * through to the backing file (truncate, make-empty); otherwise they read as
   * zeros on v3 (or with a backing file) as QEMU's discard does.
   */
  async discardRange(offset: number, bytes: number, full: boolean, passDiscard: boolean): Promise<void> {
    const cs = this.cs;
    const start = Math.ceil(offset / cs) * cs;
    let end = offset + bytes === this.header.size ? offset + bytes : Math.floor((offset + bytes) / cs) * cs;
    end = Math.min(end, this.l1.length * this.l2Entries * cs);
    if (end <= start) return;
    await this.beforeModify();
    let pos = start;
    while (pos < end) {
      const ci = Math.floor(pos / cs);
      const l1i = Math.floor(ci / this.l2Entries);
      const tableEnd = (l1i + 1) * this.l2Entries * cs;
      if (this.l1[l1i] === 0) {
        // Nothing allocated; discarding reads zeros only where needed.
        if (full || (!this.node.backing && true)) {
          pos = Math.min(end, tableEnd);
          continue;
        }
      }
      const { sliceOff, buf, dv, i0 } = await this.writableSlice(ci);
      const n = Math.min(Math.ceil(end / cs) - ci, this.sliceEntries - i0);
      let changed = false;
      for (let k = 0; k < n; k++) {
        const old = readEntry(dv, i0 + k, this.ext);
        const ct = clusterType(old, this.ext, this.hasDataFile);
        const allocated = ct === T.NORMAL || ct === T.ZERO_ALLOC || ct === T.COMPRESSED;
        let ne: RawEntry;
        let free = allocated;
        if (full) {
          ne = { hi: 0, lo: 0, zero: 0, alloc: 0 };
        } else if (this.node.backing || allocated) {
          if (this.discardNoUnref && (ct === T.NORMAL || ct === T.ZERO_ALLOC)) {
            free = false;
            ne = this.ext ? { hi: old.hi, lo: old.lo, zero: 0xffffffff, alloc: 0 } : { hi: old.hi, lo: (old.lo | 1) >>> 0, zero: 0, alloc: 0 };
            if (this.header.version < 3 && !this.ext) ne = { ...old };
          } else if (this.ext) {
            ne = { hi: 0, lo: 0, zero: 0xffffffff, alloc: 0 };
          } else {
            ne = { hi: 0, lo: this.header.version >= 3 ? 1 : 0, zero: 0, alloc: 0 };
          }
        } else {
          continue;
        }
        if (ne.hi === old.hi && ne.lo === old.lo && ne.zero === old.zero && ne.alloc === old.alloc) continue;
        writeEntry(dv, i0 + k, this.ext, ne);
        changed = true;
        if (free) this.freeEntry(old, ct, passDiscard);
        if (this.hasDataFile && allocated && passDiscard && !this.dataFileRaw) {
          // Data file clusters are not refcounted; pass the discard on.
          const host = entryOffset(old.hi, old.lo);
          await this.dataChild.pdiscard(host, cs).catch(() => undefined);
        }
      }
      if (changed) this.l2cache.setDirty(sliceOff, buf);
      pos = Math.min(end, (ci + n) * cs);
    }
    if (this.refs.pendingCount > MAX_PENDING_FREES) await this.flushAll();
  }

  // -------------------------------------------------------------------------
  // Truncate and preallocation

  async truncate(offset: number, exact: boolean, prealloc: PreallocMode): Promise<void> {
    void exact;
    await this.lock.run(async () => {
      const h = this.header;
      const old = h.size;
      if (offset % 512 !== 0) throw einval(`The new size must be a multiple of 512 (got ${offset})`);
      if (offset < old) {
        if (prealloc !== 'off') throw einval('Preallocation can only be used when growing an image');
        if (this.snapshots.length > 0) throw new BlockError('ENOTSUP', "Can't shrink an image which has snapshots");
        await this.shrink(offset);
      } else if (offset > old) {
        const needL1 = Math.ceil(offset / (this.l2Entries * this.cs));
        await this.beforeModify();
        await this.growL1(needL1);
        await this.flushAll();
        h.size = offset;
        await this.writeSize();
        if (prealloc !== 'off') await this.preallocate(old, offset, prealloc);
      }
    });
  }

  private async writeSize(): Promise<void> {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(this.header.size));
    await this.file.pwritev(HDR.SIZE, 8, b);
    await this.file.flush();
  }

  private async shrink(size: number): Promise<void> {
    const cs = this.cs;
    const old = this.header.size;
    const from = Math.ceil(size / cs) * cs;
    if (from < old) await this.discardRange(from, old - from, true, true);
    // Free L2 tables wholly beyond the new end.
    const keep = Math.ceil(size / (this.l2Entries * cs));
    for (let i = keep; i < this.l1.length; i++) {
      const off = this.l1[i]!;
      if (!off) continue;
      await this.l2cache.flush();
      this.l1[i] = 0;
      this.l1Copied[i] = 0;
      await this.writeL1Entry(i);
      this.l2cache.forgetRange(off, off + cs);
      this.removeMeta(off, cs);
      this.refs.queueFree(off, cs);
    }
    await this.flushAll();
    this.header.size = size;
    await this.writeSize();
    // Cut the file after the last used cluster.
    const fileClusters = Math.ceil(this.file.length / cs);
    let last = fileClusters - 1;
    while (last > 0 && (await this.refs.get(last)) === 0) last--;
    if ((last + 1) * cs < this.file.length) {
      await this.file.truncate((last + 1) * cs, false, 'off').catch(() => undefined);
    }
    this.refs.freeHint = Math.min(this.refs.freeHint, last + 1);
  }

  /** Allocates clusters for [from, to) without writing data (metadata preallocation). */
  async preallocate(from: number, to: number, mode: PreallocMode): Promise<void> {
    const cs = this.cs;
    let ci = Math.floor(from / cs);
    const endC = Math.ceil(to / cs);
    let hostEnd = 0;
    while (ci < endC) {
      const { sliceOff, buf, dv, i0 } = await this.writableSlice(ci);
      const n = Math.min(endC - ci, this.sliceEntries - i0);
      const todo: number[] = [];
      for (let k = 0; k < n; k++) {
        const e = readEntry(dv, i0 + k, this.ext);
        if (clusterType(e, this.ext, this.hasDataFile) === T.UNALLOC) todo.push(k);
      }
      if (todo.length > 0) {
        let host = this.hasDataFile ? 0 : await this.refs.alloc(todo.length);
        for (const k of todo) {
          const h = this.hasDataFile ? (ci + k) * cs : host;
          const e = readEntry(dv, i0 + k, this.ext);
          const ne = makeEntry(h, true);
          writeEntry(dv, i0 + k, this.ext, { hi: ne.hi, lo: ne.lo, zero: e.zero, alloc: e.alloc });
          hostEnd = Math.max(hostEnd, h + cs);
          host += cs;
        }
        this.l2cache.setDirty(sliceOff, buf);
      }
      ci += n;
    }
    await this.flushAll();
    if (hostEnd > this.dataChild.length) {
      await this.dataChild.truncate(hostEnd, false, mode === 'metadata' ? 'off' : mode);
    }
    await this.dataChild.flush();
  }

  // -------------------------------------------------------------------------
  // Image-level operations

  async check(fix: CheckFix): Promise<CheckResult> {
    return this.lock.run(async () => {
      if (!this.readOnly) await this.flushAll();
      return checkImage(this, fix);
    });
  }

  getInfo(): { clusterSize: number; dirty: boolean } {
    return { clusterSize: this.cs, dirty: (this.header.incompatible & INCOMPAT.DIRTY) !== 0n };
  }

  getSpecificInfo(): SpecificInfo {
    const h = this.header;
    const data = describeFeatures(h);
    if (h.version === 3) {
      if (this.bitmaps.length > 0) data['bitmaps'] = this.bitmaps.map(describeBitmap);
      data['refcount-bits'] = 1 << h.refcountOrder;
      data['corrupt'] = (h.incompatible & INCOMPAT.CORRUPT) !== 0n;
      if (h.dataFile !== undefined) data['data-file'] = h.dataFile;
      if (this.hasDataFile) data['data-file-raw'] = this.dataFileRaw;
      data['extended-l2'] = this.ext;
    }
    void COMPRESSION_NAMES;
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
    await this.lock.run(async () => {
      await this.discardRange(0, this.header.size, true, true);
      await this.flushAll();
    });
  }

  async amend(options: OptionReader, force: boolean): Promise<void> {
    await this.lock.run(async () => {
      await this.flushAll();
      await amendImage(this, options, force);
    });
  }

  async measure(options: OptionReader, source?: BlockNode): Promise<MeasureInfo> {
    return measureQcow2(options, source);
  }

  snapshotList(): SnapshotInfo[] {
    return this.snapshots.map(({ l1TableOffset: _o, l1Size: _s, ...info }) => info);
  }

  supportsPersistentBitmaps(): boolean {
    return this.header.version >= 3;
  }

  hasZeroInit(): boolean {
    return !this.hasDataFile || (this.dataChild.node.instance.hasZeroInit?.() ?? false);
  }

  async getAllocatedFileSize(): Promise<number> {
    const f = (await this.file.node.instance.getAllocatedFileSize?.()) ?? this.file.length;
    if (this.hasDataFile) return f + ((await this.dataChild.node.instance.getAllocatedFileSize?.()) ?? this.dataChild.length);
    return f;
  }

  /** Replaces the refcount structures' in-memory state after a rebuild. */
  resetRefcounts(table: Float64Array, offset: number, order: number): void {
    const entries = this.refs.cache.capacity;
    this.refs = new Refcounts(
      {
        file: () => this.file,
        setReftable: (off, clusters) => this.setReftable(off, clusters),
        addMeta: (off, bytes, kind) => this.addMeta(off, bytes, kind),
        removeMeta: (off, bytes) => this.removeMeta(off, bytes),
        corrupt: (msg) => this.markCorrupt(msg),
        passDiscard: this.passDiscardRequest,
      },
      this.cbits,
      order,
      table,
      offset,
      entries,
    );
    this.registerMetadata();
  }

  async close(): Promise<void> {
    if (this.cleanTimer) clearInterval(this.cleanTimer);
    this.cleanTimer = null;
    if (this.readOnly || !this.refs || this.corrupt) return;
    await this.lock.run(async () => {
      await this.flushAll();
      await this.file.flush();
      if (this.markedDirty && this.header.incompatible & INCOMPAT.DIRTY) {
        this.header.incompatible &= ~INCOMPAT.DIRTY;
        await this.writeHeader();
      }
    });
  }

  describeType(t: ClusterType): string {
    return TYPE_NAMES[t] ?? String(t);
  }
}

export const qcow2Driver = {
  name: 'qcow2',
  kind: 'format',
  supportsBacking: true,
  createOptions: qcow2CreateOptions,
  probe(header: Uint8Array): number {
    if (header.length >= 8 && header[0] === 0x51 && header[1] === 0x46 && header[2] === 0x49 && header[3] === 0xfb) {
      const v = (header[4]! << 24) | (header[5]! << 16) | (header[6]! << 8) | header[7]!;
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
      await img.close().catch(() => undefined);
      throw e;
    }
    return img;
  },
  create: createQcow2,
} satisfies BlockDriver;

/**
 * Allocation and the copy-on-write write path (QEMU's qcow2-cluster.c
 * allocation side and qcow2_co_pwritev): writable L1 / L2 tables, planning
 * each cluster of a write (in place when the cluster is ours, else a new
 * cluster whose head and tail are copied from the current content), the data
 * writes, then the L2 updates; the release of clusters that lost their last
 * reference; and the flush that makes it all durable in a crash-safe order.
 *
 * Concurrency (QEMU's design): planning and allocation run under the image
 * lock, the data (and copy-on-write) writes outside it, and the L2 update
 * under the lock again, so writes to different clusters overlap their I/O.
 * Guest clusters with a write between those phases are registered in
 * {@link InFlightWrites}; anything else that would change their L2 entries
 * (another write, zero, discard, compressed write) waits for them first, and
 * image-wide operations (truncate, check, amend, close) wait for all.
 *
 * Ordering (a power cut at any write leaves no corruption):
 * - refcount increments reach the disk before the L1 / L2 entries that use
 *   the clusters (the L2 cache flushes the refcount cache first);
 * - a new L2 table is written and flushed before the L1 entry points to it;
 * - data is written before the L2 entry that maps it;
 * - refcount decrements are applied only after the L2 tables that dropped
 *   the references are on disk ({@link flushAll}), and only once no read
 *   that started before the drop is still running (read-gate.ts).
 */
import { encryptHost } from './crypt.js';
import { ArraySet } from '../../core/array-set.js';
import { BlockError } from '../../core/errors.js';
import { isZeroBuffer } from '../../core/zero-detect.js';
import { HDR, INCOMPAT, MAX_L1_BYTES } from './constants.js';
import { ClusterType, bitmapValid, clusterType, compressedInfo, encodeL1, entryOffset, isCopied, makeEntry, readEntry, subMask, writeEntry, type RawEntry } from './l2-entry.js';
import { l2TableOffset } from './lookup.js';
import { markCorrupt, metadataWriteCheck, overlapCheck, signalCorruption } from './metadata-index.js';
import { readGuest } from './read.js';
import type { Qcow2Image } from './qcow2.js';
import { cHex as hex } from '../../core/c-hex.js';

/** C's %#x, as QEMU's messages print numbers: 0 without the prefix. */
/** Trailing zero bits of a 32-bit value (32 for 0). */
const ctz32 = (x: number): number => (x === 0 ? 32 : 31 - Math.clz32(x & -x));

/** Pending frees after which the caches are flushed early (bounds the memory they hold). */
export const MAX_PENDING_FREES = 4096;

/** Refuses writes after corruption; sets the dirty bit before the first metadata change with lazy refcounts. */
export async function beforeModify(img: Qcow2Image): Promise<void> {
  img.checkUsable();
  if (img.lazyRefcounts && !img.markedDirty) {
    if (!(img.header.incompatible & INCOMPAT.DIRTY)) {
      await img.refs.flushCache();
      img.header.incompatible |= INCOMPAT.DIRTY;
      await img.writeHeader();
    }
    img.markedDirty = true;
  }
}

/** Writes L1 entry `i` to disk. */
export async function writeL1Entry(img: Qcow2Image, i: number): Promise<void> {
  const b = new Uint8Array(8);
  const e = makeEntry(img.l1[i]!, img.l1Copied[i] === 1);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, e.hi);
  dv.setUint32(4, e.lo);
  await metadataWriteCheck(img, img.header.l1TableOffset + i * 8, 8, 'active L1 table');
  await img.file.debugEvent('l1_update');
  await img.file.pwritev(img.header.l1TableOffset + i * 8, 8, b);
  // QEMU writes the entry synchronously (bdrv_pwrite_sync): a flush follows.
  await img.file.flush();
}

/**
 * Grows the L1 table to at least `min` entries (new table, then the header,
 * then the old one is freed): exactly `min`, or (`exact` false, for writes
 * past the table: the VM state area) by half again until it fits, as QEMU's
 * qcow2_grow_l1_table sizes it.
 */
export async function growL1(img: Qcow2Image, min: number, exact = true): Promise<void> {
  if (min <= img.l1.length) return;
  if (min > MAX_L1_BYTES / 8) throw new BlockError('EFBIG', `L1 table of ${min} entries would be too large`);
  let entries = min;
  if (!exact) {
    entries = Math.max(img.l1.length, 1);
    while (entries < min) entries = Math.ceil((entries * 3) / 2);
  }
  if (entries > MAX_L1_BYTES / 8) throw new BlockError('EFBIG', `L1 table of ${entries} entries would be too large`);
  const bytes = entries * 8;
  const clusters = Math.ceil(bytes / img.clusterSize);
  await img.file.debugEvent('l1_grow_alloc_table');
  const off = await img.refs.alloc(clusters);
  await overlapCheck(img, off, clusters * img.clusterSize);
  const raw = encodeL1(img.l1, img.l1Copied, img.l1.length, new Uint8Array(clusters * img.clusterSize));
  await img.refs.flushCache();
  await img.file.flush();
  await img.file.debugEvent('l1_grow_write_table');
  await img.file.pwritev(off, raw.length, raw);
  await img.file.flush();
  const oldOff = img.header.l1TableOffset;
  const oldSize = img.l1.length;
  const hb = new Uint8Array(12);
  const hdv = new DataView(hb.buffer);
  hdv.setUint32(0, entries);
  hdv.setBigUint64(4, BigInt(off));
  await img.file.debugEvent('l1_grow_activate_table');
  await img.file.pwritev(HDR.L1_SIZE, 12, hb);
  await img.file.flush();
  img.header.l1Size = entries;
  img.header.l1TableOffset = off;
  const l1 = new Float64Array(entries);
  l1.set(img.l1);
  const cp = new Uint8Array(entries);
  cp.set(img.l1Copied);
  img.l1 = l1;
  img.l1Copied = cp;
  if (oldSize > 0) {
    img.meta.remove(oldOff, oldSize * 8, 'active L1 table');
    img.refs.queueFree(oldOff, oldSize * 8);
  }
  img.meta.add(off, bytes, 'active L1 table');
}

/** Offset of a writable (COPIED) L2 table for L1 index `l1i`, allocating or copying it. */
async function writableL2(img: Qcow2Image, l1i: number): Promise<number> {
  if (l1i >= img.l1.length) await growL1(img, l1i + 1, false);
  const old = await l2TableOffset(img, l1i);
  if (old !== 0 && img.l1Copied[l1i]) return old;
  const cs = img.clusterSize;
  const off = await img.refs.alloc(1, [], true);
  if (off === 0) throw await markCorrupt(img, 'Preventing invalid allocation of L2 table at offset 0');
  // Refcount of the new table first (checked and written before the table is, as QEMU's
  // l2_allocate), then the table, then the L1 entry.
  await img.refs.flushCache();
  await img.file.flush();
  await overlapCheck(img, off, cs);
  const table = new Uint8Array(cs);
  if (old !== 0) {
    await img.file.debugEvent('l2_alloc_cow_read');
    for (let s = 0; s < cs / img.sliceBytes; s++) {
      table.set(await img.l2cache.get(old + s * img.sliceBytes), s * img.sliceBytes);
    }
  }
  // As QEMU's l2_allocate: the new table goes into the cache dirty and the cache is flushed
  // (an l2_update per dirty slice, other tables' included) before the L1 entry names it.
  await img.file.debugEvent('l2_alloc_write');
  for (let s = 0; s < cs / img.sliceBytes; s++) {
    await img.l2cache.put(off + s * img.sliceBytes, table.subarray(s * img.sliceBytes, (s + 1) * img.sliceBytes), true);
  }
  try {
    await img.l2cache.flush();
    await img.file.flush();
  } catch (e) {
    // Nothing names the new table yet: it is freed again, its cached slices dropped unwritten.
    img.l2cache.forgetRange(off, off + cs);
    img.refs.queueFree(off, cs);
    img.discardAfterFree.add(off / cs);
    throw e;
  }
  const oldCopied = img.l1Copied[l1i]!;
  img.l1[l1i] = off;
  img.l1Copied[l1i] = 1;
  try {
    await writeL1Entry(img, l1i);
  } catch (e) {
    // The L1 on disk may still name the old table: so must the one in memory, or later
    // writes would go into a table no reopen finds. The new cluster stays allocated (a
    // leak check repairs): a failed write may have reached the disk after all.
    img.l1[l1i] = old;
    img.l1Copied[l1i] = oldCopied;
    throw e;
  }
  img.meta.add(off, cs, 'active L2 table');
  if (old !== 0) {
    img.meta.remove(old, cs, 'active L2 table');
    img.refs.queueFree(old, cs);
  }
  return off;
}

/** A cached slice of a writable L2 table and the index in it of guest cluster `ci`. */
export interface WritableSlice {
  /** Host offset of the L2 table. */
  l2off: number;
  /** Host offset of the slice (its cache key). */
  sliceOff: number;
  buf: Uint8Array;
  dv: DataView;
  /** Index of the cluster's entry in the slice. */
  i0: number;
}

/** The slice of a writable L2 table holding guest cluster `ci`. */
export async function writableSlice(img: Qcow2Image, ci: number): Promise<WritableSlice> {
  const l1i = Math.floor(ci / img.l2Entries);
  const l2off = await writableL2(img, l1i);
  const idx = ci % img.l2Entries;
  const sliceOff = l2off + Math.floor(idx / img.sliceEntries) * img.sliceBytes;
  const buf = await img.l2cache.get(sliceOff);
  return { l2off, sliceOff, buf, dv: new DataView(buf.buffer, buf.byteOffset, buf.byteLength), i0: idx % img.sliceEntries };
}

/**
 * Queues the release of the host cluster(s) an entry owns; `discard` also
 * discards them in the file once their refcount is 0 on disk.
 */
export function freeEntry(img: Qcow2Image, e: RawEntry, ct: ClusterType, discard: boolean): void {
  if (ct === ClusterType.COMPRESSED) {
    const c = compressedInfo(e, img.clusterBits);
    const start = c.offset & ~511;
    img.refs.queueFree(start, c.sectors * 512);
    return;
  }
  if (ct !== ClusterType.NORMAL && ct !== ClusterType.ZERO_ALLOC) return;
  const host = entryOffset(e.hi, e.lo);
  // Data file clusters are not refcounted.
  if (img.hasDataFile) return;
  if (host % img.clusterSize !== 0) {
    // Which cluster was meant is unknown: nothing is freed, and the image goes on (not fatal).
    signalCorruption(img, `Cannot free unaligned cluster ${hex(host)}`, { fatal: false });
    return;
  }
  img.refs.queueFree(host, img.clusterSize);
  if (discard) img.discardAfterFree.add(host / img.clusterSize);
}

/**
 * Whether refcount blocks may stay unwritten on a flush: while the dirty bit
 * is set (lazy refcounts) the on-disk refcounts are rebuilt after a crash
 * anyway, so as in QEMU only a clean close (or a switch away from lazy
 * refcounts) writes them, before it clears the bit.
 */
export function refcountsMayLag(img: Qcow2Image): boolean {
  return (img.header.incompatible & INCOMPAT.DIRTY) !== 0n;
}

/**
 * Makes queued frees durable: L2 tables first, then the decremented refcounts.
 * Frees of clusters that reads in flight may still use stay queued
 * (read-gate.ts), unless `all`, which waits for those reads first (image-wide
 * operations: reads never wait for the lock, so waiting under it is safe).
 * `lazy` (a guest flush or an early flush of frees) leaves the refcount
 * blocks in their cache while {@link refcountsMayLag}.
 */
export async function flushAll(img: Qcow2Image, all = false, lazy = false): Promise<void> {
  if (all) await img.readers.whenPassed(img.refs.newestPendingStamp);
  await img.l2cache.flush();
  // Decrements may then stay in the cache: the L2 tables that dropped the
  // references are written above, so the order still holds on disk.
  const writeRefs = !(lazy && refcountsMayLag(img));
  if (img.refs.pendingCount > 0) {
    await img.file.flush();
    const freed = await img.refs.applyFrees();
    for (const c of freed) img.l2cache.forgetRange(c * img.clusterSize, (c + 1) * img.clusterSize);
    if (writeRefs) await img.refs.flushCache();
    if (img.discardAfterFree.size > 0) {
      await img.file.flush();
      const set = img.discardAfterFree;
      img.discardAfterFree = new Set();
      // Frees held back for reads in flight keep their discard for a later flush.
      if (img.refs.pendingCount > 0) for (const c of set) img.discardAfterFree.add(c);
      for (const c of freed) {
        img.discardAfterFree.delete(c);
        if (set.has(c)) {
          try {
            await img.file.pdiscard(c * img.clusterSize, img.clusterSize);
          } catch {
            // Advisory.
          }
        }
      }
    }
  } else if (writeRefs) {
    await img.refs.flushCache();
  }
}

/** A range of guest clusters with a write between planning and its L2 update. */
interface InFlightRun {
  first: number;
  last: number;
  done: Promise<void>;
}

/**
 * Guest clusters whose write runs outside the image lock (QEMU's
 * cluster_allocs list and handle_dependencies).
 */
export class InFlightWrites {
  private readonly runs = new ArraySet<InFlightRun>();

  get size(): number {
    return this.runs.size;
  }

  /** A promise for one in-flight run overlapping clusters [first, last], or undefined. */
  overlapping(first: number, last: number): Promise<void> | undefined {
    for (const r of this.runs.members) if (r.first <= last && r.last >= first) return r.done;
    return undefined;
  }

  /** Registers [first, last]; call the returned function when the L2 update is done (or failed). */
  add(first: number, last: number): () => void {
    let resolve!: () => void;
    const run: InFlightRun = { first, last, done: new Promise<void>((r) => (resolve = r)) };
    this.runs.add(run);
    return () => {
      this.runs.delete(run);
      resolve();
    };
  }
}

/**
 * Runs `fn` under the image lock once no write is in flight on guest clusters
 * [first, last] (all clusters when omitted). Waits outside the lock, since
 * the writes waited for need the lock to finish.
 */
export async function whenClustersIdle<T>(img: Qcow2Image, fn: () => Promise<T>, first = 0, last = Infinity): Promise<T> {
  for (;;) {
    let busy: Promise<void> | undefined;
    const result = await img.lock.run(async () => {
      busy = img.inFlight.overlapping(first, last);
      return busy ? undefined : { value: await fn() };
    });
    if (result) return result.value;
    await busy;
  }
}

/** Writes guest data at `offset`; takes the image lock itself, run by run. */
export async function writeGuest(img: Qcow2Image, offset: number, bytes: number, buf: Uint8Array): Promise<void> {
  let pos = 0;
  while (pos < bytes) pos += await writeRun(img, offset + pos, bytes - pos, buf.subarray(pos));
}

/** How one cluster of a write is done. */
interface ClusterPlan {
  /** The entry before the write and its type. */
  old: RawEntry;
  ct: ClusterType;
  /** Host cluster written (the old one in place, or the new one). */
  host: number;
  /** Byte range of the cluster written, write plus copy-on-write areas: [fs, fe). */
  fs: number;
  fe: number;
  /** Whether `host` is a newly allocated cluster. */
  alloc: boolean;
  /** The new entry (offset filled in after allocation). */
  entry: RawEntry;
  /** The old entry stays as it is (data written in place, nothing to map). */
  keep: boolean;
  /** Whether the old entry's cluster(s) lose a reference. */
  freeOld: boolean;
}

/**
 * Writes the part of [off, off+len) that lies in one L2 slice: plans each
 * cluster (in place or newly allocated, with its copy-on-write areas) and
 * allocates under the lock, writes the data outside it, then updates the L2
 * entries under the lock. Returns the bytes done.
 */
async function writeRun(img: Qcow2Image, off: number, len: number, data: Uint8Array): Promise<number> {
  const cs = img.clusterSize;
  const ci0 = Math.floor(off / cs);
  const i0 = (ci0 % img.l2Entries) % img.sliceEntries;
  const nClusters = Math.min(Math.ceil((off + len) / cs) - ci0, img.sliceEntries - i0);
  const runEnd = Math.min(off + len, (ci0 + nClusters) * cs);
  const { plans, release } = await whenClustersIdle(
    img,
    async () => {
      await beforeModify(img);
      const plans = await planRun(img, off, runEnd, ci0, nClusters);
      return { plans, release: img.inFlight.add(ci0, ci0 + nClusters - 1) };
    },
    ci0,
    ci0 + nClusters - 1,
  );
  try {
    try {
      await writeRunData(img, off, runEnd, data, ci0, plans);
    } catch (e) {
      // As QEMU's qcow2_alloc_cluster_abort: no L2 entry names the new clusters yet; free them.
      await img.lock.run(async () => {
        for (const p of plans) if (p.alloc) img.refs.queueFree(p.host, img.clusterSize);
      });
      throw e;
    }
    await img.lock.run(async () => {
      // Fetched again: the slice may have been evicted while the lock was free.
      const { sliceOff, buf, dv, i0: j0 } = await writableSlice(img, ci0);
      let changed = false;
      for (let k = 0; k < nClusters; k++) {
        const p = plans[k]!;
        const now = readEntry(dv, j0 + k, img.extendedL2);
        if (now.hi !== p.old.hi || now.lo !== p.old.lo || now.zero !== p.old.zero || now.alloc !== p.old.alloc) {
          // The in-flight registration should make this impossible.
          throw new BlockError('EIO', `qcow2: L2 entry of guest cluster ${ci0 + k} changed during a write`, { node: img.node.nodeName });
        }
        const e = p.entry;
        const ne = makeEntry(img.hasDataFile ? (ci0 + k) * cs : p.host, true);
        e.hi = ne.hi;
        e.lo = ne.lo;
        if (!p.keep && (e.hi !== now.hi || e.lo !== now.lo || e.zero !== now.zero || e.alloc !== now.alloc)) {
          writeEntry(dv, j0 + k, img.extendedL2, e);
          changed = true;
        }
        if (p.freeOld) freeEntry(img, p.old, p.ct, img.passDiscardOther);
      }
      // A write in place changes no entry: the table is not written again (as QEMU).
      if (changed) img.l2cache.setDirty(sliceOff, buf);
      if (img.refs.pendingCount > MAX_PENDING_FREES) await flushAll(img, false, true);
    });
  } finally {
    // On failure the new clusters stay allocated but unreferenced: a leak, never a corruption.
    release();
  }
  return runEnd - off;
}

/** Plans the clusters of [off, runEnd) (under the lock) and allocates the new ones. */
async function planRun(img: Qcow2Image, off: number, runEnd: number, ci0: number, nClusters: number): Promise<ClusterPlan[]> {
  const cs = img.clusterSize;
  const { l2off, dv, i0 } = await writableSlice(img, ci0);
  const sc = img.subSize;
  const plans: ClusterPlan[] = [];
  let need = 0;
  for (let k = 0; k < nClusters; k++) {
    const ci = ci0 + k;
    const cstart = ci * cs;
    const ws = Math.max(off, cstart) - cstart;
    const we = Math.min(runEnd, cstart + cs) - cstart;
    const old = readEntry(dv, i0 + k, img.extendedL2);
    const ct = clusterType(old, img.extendedL2, img.hasDataFile);
    // As QEMU's calculate_l2_meta, before anything is written: a bitmap no valid image has.
    if (img.extendedL2 && !bitmapValid(ct, old)) {
      throw await markCorrupt(img, `Invalid cluster entry found (L2 offset: ${hex(l2off)}, L2 index: ${hex(i0 + k)})`);
    }
    const oldHost = entryOffset(old.hi, old.lo);
    let inPlace = false;
    let host = 0;
    if (img.hasDataFile) {
      inPlace = true;
      host = cstart;
    } else if ((ct === ClusterType.NORMAL || ct === ClusterType.ZERO_ALLOC) && isCopied(old.hi)) {
      if (oldHost % cs !== 0) {
        const kind = ct === ClusterType.ZERO_ALLOC ? 'Preallocated zero' : 'Data';
        throw await markCorrupt(img, `${kind} cluster offset ${hex(oldHost)} unaligned (guest offset: ${hex(Math.max(off, cstart))})`);
      }
      inPlace = true;
      host = oldHost;
    }
    let fs: number;
    let fe: number;
    const entry: RawEntry = { hi: 0, lo: 0, zero: 0, alloc: 0 };
    if (!img.extendedL2) {
      // In place over data: just the bytes written. Else the whole cluster
      // (a zero cluster's or the old content around the write is copied).
      if (inPlace && ct === ClusterType.NORMAL) {
        fs = ws;
        fe = we;
      } else {
        fs = 0;
        fe = cs;
      }
    } else {
      // Subclusters: write whole subclusters. A fresh copy of a compressed
      // cluster takes the whole cluster; of a shared one, as QEMU's
      // calculate_l2_meta, from its first allocated subcluster (or the write,
      // if that comes first) to its last: zero and unallocated subclusters
      // outside stay as they are.
      if (!inPlace && ct === ClusterType.COMPRESSED) {
        fs = 0;
        fe = cs;
      } else if (!inPlace && ct === ClusterType.NORMAL) {
        const spc = cs / sc;
        fs = Math.min(Math.floor(ws / sc), ctz32(old.alloc)) * sc;
        fe = cs - Math.min(spc - Math.floor((we - 1) / sc) - 1, Math.clz32(old.alloc)) * sc;
      } else {
        fs = Math.floor(ws / sc) * sc;
        fe = Math.ceil(we / sc) * sc;
      }
    }
    const fresh = !inPlace;
    if (fresh) need++;
    if (!img.extendedL2) {
      Object.assign(entry, makeEntry(0, true));
    } else {
      // The old bitmap with what is written now allocated (QEMU's qcow2_alloc_cluster_link_l2).
      const mask = subMask(fs / sc, fe / sc);
      entry.alloc = ((ct === ClusterType.NORMAL ? old.alloc : 0) | mask) >>> 0;
      entry.zero = ct === ClusterType.COMPRESSED ? 0 : (old.zero & ~mask) >>> 0;
    }
    // Written in place over data only: QEMU leaves the entry as it is, bits it ignores included.
    const keep = inPlace && ct === ClusterType.NORMAL && (!img.extendedL2 || (old.alloc & subMask(Math.floor(ws / sc), Math.ceil(we / sc))) === subMask(Math.floor(ws / sc), Math.ceil(we / sc)));
    plans.push({ old, ct, host, fs, fe, alloc: fresh, entry, keep, freeOld: fresh && ct !== ClusterType.UNALLOC && ct !== ClusterType.ZERO_PLAIN });
  }
  if (need > 0) await placeNewClusters(img, plans);
  // Refused here, under the lock, before any data is written.
  for (const g of dataGroups(plans, ci0, cs)) await overlapCheck(img, g.hostStart, g.guestEnd - g.guestStart);
  return plans;
}

/**
 * Gives the planned new clusters their host clusters as QEMU's
 * qcow2_alloc_host_offset does, which maps a write piece by piece, each piece
 * contiguous in the file: a run of clusters to allocate goes anywhere when it
 * starts a piece, else right after the piece so far, as far as the clusters
 * there are free; a cluster written in place continues a piece only when it
 * lies right after it. Where a piece ends, the next one starts afresh.
 */
async function placeNewClusters(img: Qcow2Image, plans: ClusterPlan[]): Promise<void> {
  const cs = img.clusterSize;
  /** Host offset the current piece continues at; -1 at the start of a piece. */
  let cursor = -1;
  let k = 0;
  while (k < plans.length) {
    const p = plans[k]!;
    if (!p.alloc) {
      if (cursor >= 0 && p.host !== cursor) {
        cursor = -1;
        continue;
      }
      cursor = p.host + cs;
      k++;
      continue;
    }
    let j = k;
    while (j < plans.length && plans[j]!.alloc) j++;
    let got: number;
    let start: number;
    if (cursor < 0) {
      start = await img.refs.alloc(j - k, [], true);
      got = j - k;
    } else {
      start = cursor;
      got = await img.refs.allocContiguous(cursor / cs, j - k);
      if (got === 0) {
        cursor = -1;
        continue;
      }
    }
    for (let i = 0; i < got; i++) plans[k + i]!.host = start + i * cs;
    cursor = start + got * cs;
    k += got;
  }
}

/** One data write of a run: guest range [guestStart, guestEnd) at host offset hostStart. */
interface DataGroup {
  guestStart: number;
  guestEnd: number;
  hostStart: number;
}

/** Groups host-contiguous clusters whose written ranges join into single data writes. */
function dataGroups(plans: ClusterPlan[], ci0: number, cs: number): DataGroup[] {
  const groups: DataGroup[] = [];
  let k = 0;
  while (k < plans.length) {
    let j = k;
    while (j + 1 < plans.length && plans[j]!.fe === cs && plans[j + 1]!.fs === 0 && plans[j + 1]!.host === plans[j]!.host + cs) j++;
    const first = plans[k]!;
    const last = plans[j]!;
    groups.push({ guestStart: (ci0 + k) * cs + first.fs, guestEnd: (ci0 + j) * cs + last.fe, hostStart: first.host + first.fs });
    k = j + 1;
  }
  return groups;
}

/** Writes the data of a planned run, with the copy-on-write head and tail (no lock held). */
async function writeRunData(img: Qcow2Image, off: number, runEnd: number, data: Uint8Array, ci0: number, plans: ClusterPlan[]): Promise<void> {
  for (const { guestStart: gStart, guestEnd: gEnd, hostStart: hStart } of dataGroups(plans, ci0, img.clusterSize)) {
    let src: Uint8Array;
    let event: 'write_aio' | 'cow_write' = 'write_aio';
    if (gStart >= off && gEnd <= runEnd) {
      src = data.subarray(gStart - off, gEnd - off);
    } else {
      // Copy-on-write: the head and tail around the write come from the current
      // content (stable: the clusters are registered in flight).
      src = new Uint8Array(gEnd - gStart);
      const headEnd = Math.min(Math.max(off, gStart), gEnd);
      if (headEnd > gStart) await readGuest(img, gStart, headEnd - gStart, src.subarray(0, headEnd - gStart));
      const tailStart = Math.max(Math.min(runEnd, gEnd), gStart);
      if (gEnd > tailStart) await readGuest(img, tailStart, gEnd - tailStart, src.subarray(tailStart - gStart));
      const ds = Math.max(off, gStart);
      const de = Math.min(runEnd, gEnd);
      // QEMU allocates space for zero copy-on-write areas and writes the data alone;
      // other areas are read and written with the data.
      const zeroCow = isZeroBuffer(src.subarray(0, headEnd - gStart)) && isZeroBuffer(src.subarray(tailStart - gStart));
      await img.file.debugEvent(zeroCow ? 'cluster_alloc_space' : 'cow_read');
      if (!zeroCow) event = 'cow_write';
      if (de > ds) src.set(data.subarray(ds - off, de - off), ds - gStart);
    }
    // QEMU announces the data write on the file child even with a data file.
    await img.file.debugEvent(event);
    // The image may have been found corrupt while this request waited (a breakpoint, a slow
    // read): as QEMU's dropped driver, nothing more is written.
    if (img.dropped) throw new BlockError('ENOMEDIUM', 'No medium found', { node: img.node.nodeName });
    if (img.crypto) src = encryptHost(img, hStart, gStart, src);
    await img.dataChild.pwritev(hStart, src.length, src);
  }
}

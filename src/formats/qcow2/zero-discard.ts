/**
 * Zero writes and discard (QEMU's qcow2_cluster_zeroize / qcow2_cluster_discard):
 * whole (sub)clusters become zero clusters (keeping or releasing their host
 * cluster) or fall through to the backing file; partial ones are refused with
 * ENOTSUP so the generic layer writes zeros instead, unless the rest of the
 * subcluster already reads as zeros.
 */
import { BlockError } from '../../core/errors.js';
import { ReqFlag, Status, type BlockStatusResult, type ReqFlags } from '../../core/driver.js';
import type { BlockNode } from '../../core/node.js';
import { blockStatus } from '../../core/request-path.js';
import { ClusterType, clusterType, entryOffset, readEntry, subMask, writeEntry, type RawEntry } from './l2-entry.js';
import { lookup } from './lookup.js';
import { MAX_PENDING_FREES, beforeModify, flushAll, freeEntry, writableSlice } from './cow.js';
import type { Qcow2Image } from './qcow2.js';

/**
 * Whether [offset, offset+bytes) reads as zeros through the whole chain, by
 * block status only (QEMU's is_zero in qcow2.c): a layer that answers ZERO
 * counts, DATA does not, unallocated ranges look further down, and a lower
 * layer that ends early reads as zeros there. Clamped to the image end.
 */
async function readsZero(img: Qcow2Image, offset: number, bytes: number): Promise<boolean> {
  const end = Math.min(offset + bytes, img.header.size);
  let pos = offset;
  while (pos < end) {
    let n: BlockNode | undefined = img.node;
    let len = end - pos;
    for (;;) {
      const st: BlockStatusResult = await blockStatus(n, true, pos, len);
      if (st.pnum === 0) break; // past the end of a lower layer: zeros
      len = Math.min(len, st.pnum);
      if (st.status & Status.ZERO) break;
      if (st.status & Status.DATA) return false;
      n = n.backing?.node;
      if (!n) return false;
    }
    pos += len;
  }
  return true;
}

/**
 * Zero write as qcow2 answers it (QEMU's qcow2_co_pwrite_zeroes; the generic
 * layer sends unaligned heads and tails as pieces of one subcluster). A piece
 * that covers a subcluster only in part is done only when the rest of that
 * subcluster already reads as zeros and it is unallocated or zero: the whole
 * subcluster then becomes a zero subcluster. Anything else is ENOTSUP, for the
 * generic layer to write zero buffers.
 */
export async function writeZeroes(img: Qcow2Image, offset: number, bytes: number, flags: ReqFlags): Promise<void> {
  const sc = img.subSize;
  const end = offset + bytes;
  const head = offset % sc;
  const tail = end === img.header.size ? 0 : (sc - (end % sc)) % sc;
  if (head === 0 && tail === 0) {
    await img.whenIdle(() => zeroize(img, offset, bytes, flags), offset, bytes);
    return;
  }
  if (!((await readsZero(img, offset - head, head)) && (await readsZero(img, end, tail)))) {
    throw new BlockError('ENOTSUP', 'Partial subcluster zero write over data');
  }
  const start = offset - head;
  await img.whenIdle(
    async () => {
      // Rechecked under the lock: a write may have come in since.
      const run = await lookup(img, start, sc);
      if (run.type !== ClusterType.UNALLOC && run.type !== ClusterType.UNALLOC_ALLOC && run.type !== ClusterType.ZERO_PLAIN && run.type !== ClusterType.ZERO_ALLOC) {
        throw new BlockError('ENOTSUP', 'Partial subcluster zero write over data');
      }
      await zeroize(img, start, sc, flags);
    },
    start,
    sc,
  );
}

/**
 * Makes whole subclusters read as zeros (QEMU's qcow2_subcluster_zeroize;
 * under the image lock; `offset` subcluster-aligned, the end too unless it is
 * the image end). Version 2 images cannot mark zeros: without a backing file
 * the clusters are discarded instead, with one ENOTSUP. Whole clusters become
 * zero clusters; their host cluster is released when it is compressed, or
 * allocated and MAY_UNMAP is set. Partial clusters (extended L2) get their
 * subclusters' zero bits; a partly covered compressed cluster is ENOTSUP.
 */
export async function zeroize(img: Qcow2Image, offset: number, bytes: number, flags: ReqFlags): Promise<void> {
  // A raw data file must read the same as the image: zero it first.
  if (img.dataFileRaw) await img.dataChild.pwriteZeroes(offset, bytes, flags);
  if (img.header.version < 3) {
    if (!img.node.backing) {
      await discardRange(img, offset, bytes, false, img.passDiscardRequest);
      return;
    }
    throw new BlockError('ENOTSUP', 'qcow2 v2 images cannot store zero clusters');
  }
  const cs = img.clusterSize;
  const sc = img.subSize;
  const end = offset + bytes;
  const unmapReq = (flags & ReqFlag.MAY_UNMAP) !== 0;
  await beforeModify(img);
  let pos = offset;
  while (pos < end) {
    const ci = Math.floor(pos / cs);
    const { sliceOff, buf, dv, i0 } = await writableSlice(img, ci);
    const n = Math.min(Math.ceil(end / cs) - ci, img.sliceEntries - i0);
    let changed = false;
    for (let k = 0; k < n; k++) {
      const cstart = (ci + k) * cs;
      const zs = Math.max(pos, cstart) - cstart;
      const ze = Math.min(end, cstart + cs) - cstart;
      const old = readEntry(dv, i0 + k, img.extendedL2);
      const ct = clusterType(old, img.extendedL2, img.hasDataFile);
      const whole = zs === 0 && (ze === cs || cstart + ze >= img.header.size);
      let ne: RawEntry;
      let unmap = false;
      if (!whole) {
        // Extended L2 only: the subclusters' zero bits.
        if (ct === ClusterType.COMPRESSED) {
          if (changed) img.l2cache.setDirty(sliceOff, buf);
          throw new BlockError('ENOTSUP', 'Partial zero write to a compressed cluster');
        }
        const mask = subMask(zs / sc, Math.ceil(ze / sc));
        ne = { hi: old.hi, lo: old.lo, zero: (old.zero | mask) >>> 0, alloc: (old.alloc & ~mask) >>> 0 };
      } else {
        const allocated = ct === ClusterType.NORMAL || ct === ClusterType.ZERO_ALLOC || ct === ClusterType.COMPRESSED;
        unmap = ct === ClusterType.COMPRESSED || (unmapReq && allocated);
        const keep = unmap ? { hi: 0, lo: 0 } : old;
        ne = img.extendedL2
          ? { hi: keep.hi, lo: keep.lo, zero: 0xffffffff, alloc: 0 }
          : { hi: keep.hi, lo: (keep.lo | 1) >>> 0, zero: 0, alloc: 0 };
      }
      if (ne.hi === old.hi && ne.lo === old.lo && ne.zero === old.zero && ne.alloc === old.alloc) continue;
      writeEntry(dv, i0 + k, img.extendedL2, ne);
      changed = true;
      if (unmap) await releaseEntry(img, old, ct, img.passDiscardRequest);
    }
    if (changed) img.l2cache.setDirty(sliceOff, buf);
    pos = Math.min(end, (ci + n) * cs);
  }
  if (img.refs.pendingCount > MAX_PENDING_FREES) await flushAll(img, false, true);
}

/** Releases a host cluster (QEMU's qcow2_free_any_cluster): refcounted, or a discard in the data file. */
async function releaseEntry(img: Qcow2Image, old: RawEntry, ct: ClusterType, passDiscard: boolean): Promise<void> {
  freeEntry(img, old, ct, passDiscard);
  if (img.hasDataFile && (ct === ClusterType.NORMAL || ct === ClusterType.ZERO_ALLOC) && passDiscard && !img.dataFileRaw) {
    // Data file clusters are not refcounted; pass the discard on.
    await img.dataChild.pdiscard(entryOffset(old.hi, old.lo), img.clusterSize).catch(() => undefined);
  }
}

/**
 * Discards whole clusters in [offset, offset+bytes) (under the image lock).
 * `full` makes them fall through to the backing file (truncate, make-empty);
 * otherwise they read as zeros on v3 (or with a backing file) as QEMU's
 * discard does.
 */
export async function discardRange(img: Qcow2Image, offset: number, bytes: number, full: boolean, passDiscard: boolean): Promise<void> {
  const cs = img.clusterSize;
  const start = Math.ceil(offset / cs) * cs;
  let end = offset + bytes === img.header.size ? offset + bytes : Math.floor((offset + bytes) / cs) * cs;
  end = Math.min(end, img.l1.length * img.l2Entries * cs);
  if (end <= start) return;
  await beforeModify(img);
  let pos = start;
  while (pos < end) {
    const ci = Math.floor(pos / cs);
    // Like QEMU, this allocates a missing L2 table even when no entry changes.
    const { sliceOff, buf, dv, i0 } = await writableSlice(img, ci);
    const n = Math.min(Math.ceil(end / cs) - ci, img.sliceEntries - i0);
    let changed = false;
    for (let k = 0; k < n; k++) {
      const old = readEntry(dv, i0 + k, img.extendedL2);
      const ct = clusterType(old, img.extendedL2, img.hasDataFile);
      const allocated = ct === ClusterType.NORMAL || ct === ClusterType.ZERO_ALLOC || ct === ClusterType.COMPRESSED;
      let ne: RawEntry;
      let free = allocated;
      if (full) {
        ne = { hi: 0, lo: 0, zero: 0, alloc: 0 };
      } else if (img.node.backing || allocated) {
        if (img.discardNoUnref && (ct === ClusterType.NORMAL || ct === ClusterType.ZERO_ALLOC)) {
          free = false;
          ne = img.extendedL2 ? { hi: old.hi, lo: old.lo, zero: 0xffffffff, alloc: 0 } : { hi: old.hi, lo: (old.lo | 1) >>> 0, zero: 0, alloc: 0 };
          if (img.header.version < 3 && !img.extendedL2) ne = { ...old };
        } else if (img.extendedL2) {
          ne = { hi: 0, lo: 0, zero: 0xffffffff, alloc: 0 };
        } else {
          ne = { hi: 0, lo: img.header.version >= 3 ? 1 : 0, zero: 0, alloc: 0 };
        }
      } else {
        continue;
      }
      if (ne.hi === old.hi && ne.lo === old.lo && ne.zero === old.zero && ne.alloc === old.alloc) continue;
      writeEntry(dv, i0 + k, img.extendedL2, ne);
      changed = true;
      if (free) await releaseEntry(img, old, ct, passDiscard);
    }
    if (changed) img.l2cache.setDirty(sliceOff, buf);
    pos = Math.min(end, (ci + n) * cs);
  }
  if (img.refs.pendingCount > MAX_PENDING_FREES) await flushAll(img, false, true);
}

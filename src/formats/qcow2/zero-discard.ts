/**
 * Zero writes and discard (QEMU's qcow2_cluster_zeroize / qcow2_cluster_discard):
 * whole (sub)clusters become zero clusters (keeping or releasing their host
 * cluster) or fall through to the backing file; partial ones are refused with
 * ENOTSUP so the generic layer writes zeros instead.
 */
import { BlockError } from '../../core/errors.js';
import { ReqFlag, type ReqFlags } from '../../core/driver.js';
import { T, clusterType, entryOffset, readEntry, subMask, writeEntry, type RawEntry } from './mapping.js';
import { lookup, type Run } from './lookup.js';
import { MAX_PENDING_FREES, beforeModify, flushAll, freeEntry, writableSlice } from './cow.js';
import type { Qcow2Image } from './qcow2.js';

/** Whether the whole cluster at `ci` reads as zeros now. */
async function clusterReadsZero(img: Qcow2Image, ci: number): Promise<boolean> {
  const cs = img.cs;
  const run = await lookup(img, ci * cs, cs);
  if (run.bytes < cs) {
    // Mixed subclusters: check each run.
    let pos = 0;
    while (pos < cs) {
      const r = await lookup(img, ci * cs + pos, cs - pos);
      if (!runReadsZero(img, r, ci * cs + pos)) return false;
      pos += r.bytes;
    }
    return true;
  }
  return runReadsZero(img, run, ci * cs);
}

function runReadsZero(img: Qcow2Image, r: Run, offset: number): boolean {
  if (r.type === T.ZERO_PLAIN || r.type === T.ZERO_ALLOC) return true;
  if (r.type === T.UNALLOC || r.type === T.UNALLOC_ALLOC) {
    const b = img.node.backing;
    return !b || offset >= b.node.length;
  }
  return false;
}

/**
 * Makes [offset, offset+bytes) read as zeros (under the image lock). Throws
 * ENOTSUP for a partial (sub)cluster that does not already read as zeros.
 */
export async function zeroRange(img: Qcow2Image, offset: number, bytes: number, flags: ReqFlags): Promise<void> {
  const cs = img.cs;
  const sc = img.subSize;
  const end = offset + bytes;
  // A partial (sub)cluster that already reads as zeros needs nothing; else fall back to writing zeros.
  if (offset % sc !== 0 || (end % sc !== 0 && end !== img.header.size)) {
    const ci = Math.floor(offset / cs);
    if (Math.floor((end - 1) / cs) === ci && (await clusterReadsZero(img, ci))) return;
    throw new BlockError('ENOTSUP', 'Partial cluster zero write');
  }
  if (!img.ext && (offset % cs !== 0 || (end % cs !== 0 && end !== img.header.size))) {
    const ci = Math.floor(offset / cs);
    if (Math.floor((end - 1) / cs) === ci && (await clusterReadsZero(img, ci))) return;
    throw new BlockError('ENOTSUP', 'Partial cluster zero write');
  }
  await beforeModify(img);
  const unmapReq = (flags & ReqFlag.MAY_UNMAP) !== 0;
  let pos = offset;
  while (pos < end) {
    const ci = Math.floor(pos / cs);
    const { sliceOff, buf, dv, i0 } = await writableSlice(img, ci);
    const n = Math.min(Math.ceil(end / cs) - ci, img.sliceEntries - i0);
    for (let k = 0; k < n; k++) {
      const cstart = (ci + k) * cs;
      const zs = Math.max(pos, cstart) - cstart;
      const ze = Math.min(end, cstart + cs) - cstart;
      const old = readEntry(dv, i0 + k, img.ext);
      const ct = clusterType(old, img.ext, img.hasDataFile);
      const whole = zs === 0 && (ze === cs || cstart + ze === img.header.size);
      if (!img.ext) {
        // Compressed clusters cannot carry the zero flag and keep their data: release them.
        const unmap = unmapReq || ct === T.COMPRESSED;
        let ne: RawEntry;
        if (unmap && !img.hasDataFile) {
          ne = { hi: 0, lo: 1, zero: 0, alloc: 0 };
          freeEntry(img, old, ct, img.passDiscardRequest);
        } else {
          ne = { hi: old.hi, lo: (old.lo | 1) >>> 0, zero: 0, alloc: 0 };
        }
        writeEntry(dv, i0 + k, false, ne);
        continue;
      }
      const mask = whole ? 0xffffffff : subMask(zs / sc, Math.ceil(ze / sc));
      if (ct === T.COMPRESSED && !whole) throw new BlockError('ENOTSUP', 'Partial zero write to a compressed cluster');
      if (whole && (unmapReq || ct === T.COMPRESSED) && !img.hasDataFile) {
        freeEntry(img, old, ct, img.passDiscardRequest);
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
    img.l2cache.setDirty(sliceOff, buf);
    pos = Math.min(end, (ci + n) * cs);
  }
  if (img.refs.pendingCount > MAX_PENDING_FREES) await flushAll(img);
}

/**
 * Discards whole clusters in [offset, offset+bytes) (under the image lock).
 * `full` makes them fall through to the backing file (truncate, make-empty);
 * otherwise they read as zeros on v3 (or with a backing file) as QEMU's
 * discard does.
 */
export async function discardRange(img: Qcow2Image, offset: number, bytes: number, full: boolean, passDiscard: boolean): Promise<void> {
  const cs = img.cs;
  const start = Math.ceil(offset / cs) * cs;
  let end = offset + bytes === img.header.size ? offset + bytes : Math.floor((offset + bytes) / cs) * cs;
  end = Math.min(end, img.l1.length * img.l2Entries * cs);
  if (end <= start) return;
  await beforeModify(img);
  let pos = start;
  while (pos < end) {
    const ci = Math.floor(pos / cs);
    const l1i = Math.floor(ci / img.l2Entries);
    const tableEnd = (l1i + 1) * img.l2Entries * cs;
    if (img.l1[l1i] === 0) {
      // Nothing allocated; discarding reads zeros only where needed.
      if (full || !img.node.backing) {
        pos = Math.min(end, tableEnd);
        continue;
      }
    }
    const { sliceOff, buf, dv, i0 } = await writableSlice(img, ci);
    const n = Math.min(Math.ceil(end / cs) - ci, img.sliceEntries - i0);
    let changed = false;
    for (let k = 0; k < n; k++) {
      const old = readEntry(dv, i0 + k, img.ext);
      const ct = clusterType(old, img.ext, img.hasDataFile);
      const allocated = ct === T.NORMAL || ct === T.ZERO_ALLOC || ct === T.COMPRESSED;
      let ne: RawEntry;
      let free = allocated;
      if (full) {
        ne = { hi: 0, lo: 0, zero: 0, alloc: 0 };
      } else if (img.node.backing || allocated) {
        if (img.discardNoUnref && (ct === T.NORMAL || ct === T.ZERO_ALLOC)) {
          free = false;
          ne = img.ext ? { hi: old.hi, lo: old.lo, zero: 0xffffffff, alloc: 0 } : { hi: old.hi, lo: (old.lo | 1) >>> 0, zero: 0, alloc: 0 };
          if (img.header.version < 3 && !img.ext) ne = { ...old };
        } else if (img.ext) {
          ne = { hi: 0, lo: 0, zero: 0xffffffff, alloc: 0 };
        } else {
          ne = { hi: 0, lo: img.header.version >= 3 ? 1 : 0, zero: 0, alloc: 0 };
        }
      } else {
        continue;
      }
      if (ne.hi === old.hi && ne.lo === old.lo && ne.zero === old.zero && ne.alloc === old.alloc) continue;
      writeEntry(dv, i0 + k, img.ext, ne);
      changed = true;
      if (free) freeEntry(img, old, ct, passDiscard);
      if (img.hasDataFile && allocated && passDiscard && !img.dataFileRaw) {
        // Data file clusters are not refcounted; pass the discard on.
        const host = entryOffset(old.hi, old.lo);
        await img.dataChild.pdiscard(host, cs).catch(() => undefined);
      }
    }
    if (changed) img.l2cache.setDirty(sliceOff, buf);
    pos = Math.min(end, (ci + n) * cs);
  }
  if (img.refs.pendingCount > MAX_PENDING_FREES) await flushAll(img);
}

/**
 * falloc / full preallocation of a grown guest range in the image file, laid
 * out as QEMU's qcow2_co_truncate does: new refcount structures (a new table,
 * and the blocks the grown file needs) go at the end of the used part of the
 * file, the data clusters right after them in one run, which the file's
 * truncate preallocates; the L2 tables that map them go where the allocator
 * puts them (a hole such as the old refcount table, or after the data). The
 * guest cluster holding the old end gets a new host cluster too, its head
 * copied from the current content.
 */
import { BlockError, STRERROR, toBlockError } from '../../core/errors.js';
import type { PreallocMode } from '../../core/driver.js';
import { encryptHost } from './crypt.js';
import { clusterType, makeEntry, readEntry, writeEntry } from './l2-entry.js';
import { flushAll, freeEntry, writableSlice } from './cow.js';
import { markCorrupt } from './metadata-index.js';
import { readGuest } from './read.js';
import { refcountArea } from './refcount-area.js';
import type { Qcow2Image } from './qcow2.js';

/** error_setg_errno's form: the message, then the errno's text. */
function withErrno(e: unknown, what: string): BlockError {
  const err = toBlockError(e);
  return new BlockError(err.code, `${what}: ${STRERROR[err.code] ?? err.message}`);
}

/** First cluster after the last one in use in the image file (QEMU's qcow2_get_last_cluster + 1). */
async function usedClusters(img: Qcow2Image): Promise<number> {
  for (let c = Math.ceil(img.file.length / img.clusterSize) - 1; c >= 0; c--) {
    if ((await img.refs.get(c)) > 0) return c + 1;
  }
  throw await markCorrupt(img, 'There are no references in the refcount table.');
}

/**
 * Preallocates guest [from, to) with `mode` (falloc or full) in an image
 * without a data file (caller holds the lock; the L1 table already covers
 * `to`). `zeroWrite`: the grown area must read as zeros (a longer backing
 * file); the file's truncate gives zeros, so the new clusters are marked
 * allocated in full and false is returned: nothing is left to zero.
 */
export async function preallocateInFile(img: Qcow2Image, from: number, to: number, mode: PreallocMode, zeroWrite: boolean): Promise<boolean> {
  const cs = img.clusterSize;
  const refs = img.refs;
  await flushAll(img);
  const used = await usedClusters(img);
  const firstGuest = Math.floor(from / cs);
  const nData = Math.ceil(to / cs) - firstGuest;
  // Enough refcount blocks for the data and for every L2 table that may map it
  // (one more for an unaligned head or tail), so linking needs no new block.
  const nL2 = Math.ceil(nData / img.l2Entries) + 1;
  let start: number;
  try {
    start = await refcountArea(refs, { start: used, additional: nData + nL2, exact: true });
  } catch (e) {
    throw withErrno(e, 'Failed to resize refcount structures');
  }
  if (nData > 0) {
    let got: number;
    try {
      got = await refs.allocContiguous(start, nData);
    } catch (e) {
      throw withErrno(e, 'Failed to allocate data clusters');
    }
    if (got !== nData) throw new BlockError('EIO', `Failed to allocate data clusters: ${got} of ${nData} free at cluster ${start}`);
  }
  try {
    await img.file.truncate((start + nData) * cs, false, mode);
  } catch (e) {
    for (let c = start; c < start + nData; c++) await refs.update(c, -1);
    throw toBlockError(e).withPrefix('Failed to resize underlying file');
  }
  try {
    await linkData(img, from, start * cs, nData, zeroWrite);
  } catch (e) {
    throw withErrno(e, 'Failed to update L2 tables');
  }
  await flushAll(img);
  return false;
}

/**
 * Maps `n` guest clusters from the one holding `from` to the host run at
 * `host`, a slice at a time (QEMU's qcow2_alloc_cluster_link_l2): the head of
 * the first cluster, before `from`, is copied from the current content first;
 * entries that held clusters release them. `allocated`: subclusters of
 * extended entries become allocated; otherwise their bitmaps stay as they are.
 */
async function linkData(img: Qcow2Image, from: number, host: number, n: number, allocated: boolean): Promise<void> {
  const cs = img.clusterSize;
  const ext = img.extendedL2;
  let ci = Math.floor(from / cs);
  const head = from - ci * cs;
  if (n > 0 && head > 0) {
    let data: Uint8Array = new Uint8Array(head);
    await img.file.debugEvent('cow_read');
    await readGuest(img, ci * cs, head, data);
    await img.file.debugEvent('cow_write');
    if (img.crypto) data = encryptHost(img, host, ci * cs, data);
    await img.file.pwritev(host, head, data);
  }
  while (n > 0) {
    const { sliceOff, buf, dv, i0 } = await writableSlice(img, ci);
    const count = Math.min(n, img.sliceEntries - i0);
    for (let k = 0; k < count; k++) {
      const old = readEntry(dv, i0 + k, ext);
      if (old.hi !== 0 || old.lo !== 0) freeEntry(img, old, clusterType(old, ext, false), false);
      const e = makeEntry(host + k * cs, true);
      const bitmap = allocated ? { zero: 0, alloc: 0xffffffff } : { zero: old.zero, alloc: old.alloc };
      writeEntry(dv, i0 + k, ext, { hi: e.hi, lo: e.lo, ...bitmap });
    }
    img.l2cache.setDirty(sliceOff, buf);
    ci += count;
    n -= count;
    host += count * cs;
  }
}

/**
 * Resizing (qemu-img resize) and preallocation: growing the L1 table and the
 * size field, shrinking (data past the new end dropped, L2 tables freed, the
 * file cut after its last used cluster); a grown range is preallocated by
 * prealloc-metadata.ts or (falloc / full in the image file) prealloc-file.ts.
 */
import { BlockError, STRERROR, einval, toBlockError } from '../../core/errors.js';
import type { PreallocMode } from '../../core/driver.js';
import { HDR } from './constants.js';
import { beforeModify, flushAll, growL1, writeL1Entry } from './cow.js';
import { discardRange, zeroize } from './zero-discard.js';
import { preallocateInFile } from './prealloc-file.js';
import { preallocate } from './prealloc-metadata.js';
import type { Qcow2Image } from './qcow2.js';

export { preallocate };

/**
 * Changes the guest size to `offset` (under the image lock). With `zeroWrite`
 * a grown area is made of zero (sub)clusters from the first subcluster
 * boundary on, as QEMU's truncate with BDRV_REQ_ZERO_WRITE does; returns
 * whether the caller must still write explicit zeros before that boundary
 * (not when falloc / full preallocation got zeros from the file already).
 */
export async function resizeImage(img: Qcow2Image, offset: number, prealloc: PreallocMode, zeroWrite = false): Promise<boolean> {
  const h = img.header;
  const old = h.size;
  if (offset % 512 !== 0) throw einval('The new size must be a multiple of 512');
  // v2 snapshot entries need not record their disk size, so a v2 image with snapshots keeps its size
  // (as QEMU 7.2); a v3 one may grow or shrink: the snapshots keep their own L1 tables and sizes.
  if (img.snapshots.length > 0 && h.version < 3) throw new BlockError('ENOTSUP', "Can't resize a v2 image which has snapshots");
  if (offset < old) {
    if (prealloc !== 'off') throw einval("Preallocation can't be used for shrinking an image");
    await shrink(img, offset);
    if (img.hasDataFile) await img.dataChild.truncate(offset, false, 'off');
    return false;
  }
  // As QEMU, preallocation runs even for the same size (falloc / full then lay out the refcount structures anew).
  if (offset === old && prealloc === 'off') return false;
  // A raw data file maps every guest cluster to its own offset: grown clusters are mapped at once.
  if (img.dataFileRaw && prealloc === 'off') prealloc = 'metadata';
  const needL1 = Math.ceil(offset / (img.l2Entries * img.clusterSize));
  await beforeModify(img);
  await growL1(img, needL1);
  await flushAll(img);
  if ((prealloc === 'falloc' || prealloc === 'full') && !img.hasDataFile) {
    zeroWrite = await preallocateInFile(img, old, offset, prealloc, zeroWrite);
  } else if (prealloc !== 'off') {
    await preallocate(img, old, offset, prealloc);
  } else if (img.hasDataFile) {
    // As in QEMU, an external data file follows the image size when nothing is preallocated.
    await img.dataChild.truncate(offset, false, 'off');
  }
  const zeroStart = Math.ceil(old / img.subSize) * img.subSize;
  if (zeroWrite && offset > zeroStart) {
    try {
      await zeroize(img, zeroStart, offset - zeroStart, 0);
      await flushAll(img);
    } catch (e) {
      const err = toBlockError(e);
      throw new BlockError(err.code, `Failed to zero out new clusters: ${STRERROR[err.code] ?? err.message}`);
    }
  }
  h.size = offset;
  await writeSize(img);
  return zeroWrite;
}

async function writeSize(img: Qcow2Image): Promise<void> {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(img.header.size));
  await img.file.pwritev(HDR.SIZE, 8, b);
  await img.file.flush();
}

async function shrink(img: Qcow2Image, size: number): Promise<void> {
  const cs = img.clusterSize;
  const old = img.header.size;
  const from = Math.ceil(size / cs) * cs;
  if (from < old) await discardRange(img, from, old - from, true, true);
  // Free L2 tables wholly beyond the new end.
  const keep = Math.ceil(size / (img.l2Entries * cs));
  for (let i = keep; i < img.l1.length; i++) {
    const off = img.l1[i]!;
    if (!off) continue;
    await img.l2cache.flush();
    img.l1[i] = 0;
    img.l1Copied[i] = 0;
    await writeL1Entry(img, i);
    img.l2cache.forgetRange(off, off + cs);
    img.meta.remove(off, cs, 'active L2 table');
    img.refs.queueFree(off, cs);
  }
  await flushAll(img);
  img.header.size = size;
  await writeSize(img);
  // Cut the file after the last used cluster.
  const fileClusters = Math.ceil(img.file.length / cs);
  let last = fileClusters - 1;
  while (last > 0 && (await img.refs.get(last)) === 0) last--;
  if ((last + 1) * cs < img.file.length) {
    await img.file.truncate((last + 1) * cs, false, 'off').catch(() => undefined);
  }
  img.refs.freeHint = Math.min(img.refs.freeHint, last + 1);
}

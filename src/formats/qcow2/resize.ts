/**
 * Resizing (qemu-img resize) and preallocation: growing the L1 table and the
 * size field, shrinking (data past the new end dropped, L2 tables freed, the
 * file cut after its last used cluster), and metadata / falloc / full
 * preallocation of a range.
 */
import { BlockError, STRERROR, einval, toBlockError } from '../../core/errors.js';
import type { PreallocMode } from '../../core/driver.js';
import { HDR } from './constants.js';
import { ClusterType, clusterType, makeEntry, readEntry, writeEntry } from './l2-entry.js';
import { beforeModify, flushAll, growL1, writableSlice, writeL1Entry } from './cow.js';
import { discardRange, zeroize } from './zero-discard.js';
import type { Qcow2Image } from './qcow2.js';

/**
 * Changes the guest size to `offset` (under the image lock). With `zeroWrite`
 * a grown area is made of zero (sub)clusters from the first subcluster
 * boundary on, as QEMU's truncate with BDRV_REQ_ZERO_WRITE does; the caller
 * writes explicit zeros before that boundary.
 */
export async function resizeImage(img: Qcow2Image, offset: number, prealloc: PreallocMode, zeroWrite = false): Promise<void> {
  const h = img.header;
  const old = h.size;
  if (offset % 512 !== 0) throw einval('The new size must be a multiple of 512');
  if (offset < old) {
    if (prealloc !== 'off') throw einval("Preallocation can't be used for shrinking an image");
    if (img.snapshots.length > 0) throw new BlockError('ENOTSUP', "Can't shrink an image which has snapshots");
    await shrink(img, offset);
    if (img.hasDataFile) await img.dataChild.truncate(offset, false, 'off');
  } else if (offset > old) {
    // A raw data file maps every guest cluster to its own offset: grown clusters are mapped at once.
    if (img.dataFileRaw && prealloc === 'off') prealloc = 'metadata';
    const needL1 = Math.ceil(offset / (img.l2Entries * img.clusterSize));
    await beforeModify(img);
    await growL1(img, needL1);
    await flushAll(img);
    if (prealloc !== 'off') await preallocate(img, old, offset, prealloc);
    // As in QEMU, an external data file follows the image size when nothing is preallocated.
    else if (img.hasDataFile) await img.dataChild.truncate(offset, false, 'off');
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
  }
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

/**
 * Allocates clusters for [from, to) without writing data (metadata
 * preallocation); the file is then grown to cover them with `mode`. With
 * falloc / full, data clusters that fall inside the file (between metadata
 * written past them) get their storage too, so writing them later does not
 * grow the file's allocation (iotest 125), as with QEMU, whose data area is
 * preallocated in one piece.
 */
export async function preallocate(img: Qcow2Image, from: number, to: number, mode: PreallocMode): Promise<void> {
  const cs = img.clusterSize;
  let ci = Math.floor(from / cs);
  const endC = Math.ceil(to / cs);
  let hostEnd = 0;
  /** Host ranges of the new data clusters: [start, end). */
  const runs: Array<[number, number]> = [];
  while (ci < endC) {
    const { sliceOff, buf, dv, i0 } = await writableSlice(img, ci);
    const n = Math.min(endC - ci, img.sliceEntries - i0);
    const todo: number[] = [];
    for (let k = 0; k < n; k++) {
      const e = readEntry(dv, i0 + k, img.extendedL2);
      if (clusterType(e, img.extendedL2, img.hasDataFile) === ClusterType.UNALLOC) todo.push(k);
    }
    if (todo.length > 0) {
      let host = img.hasDataFile ? 0 : await img.refs.alloc(todo.length);
      for (const k of todo) {
        const h = img.hasDataFile ? (ci + k) * cs : host;
        const e = readEntry(dv, i0 + k, img.extendedL2);
        const ne = makeEntry(h, true);
        writeEntry(dv, i0 + k, img.extendedL2, { hi: ne.hi, lo: ne.lo, zero: e.zero, alloc: e.alloc });
        hostEnd = Math.max(hostEnd, h + cs);
        const lastRun = runs[runs.length - 1];
        if (lastRun && lastRun[1] === h) lastRun[1] = h + cs;
        else runs.push([h, h + cs]);
        host += cs;
      }
      img.l2cache.setDirty(sliceOff, buf);
    }
    ci += n;
  }
  await flushAll(img);
  if (mode === 'falloc' || mode === 'full') await reserveInside(img, runs);
  if (hostEnd > img.dataChild.length) {
    await img.dataChild.truncate(hostEnd, false, mode === 'metadata' ? 'off' : mode).catch((e: unknown) => {
      throw toBlockError(e).withPrefix('Failed to resize underlying file');
    });
  }
  await img.dataChild.flush();
}

/** Gives the parts of `runs` inside the data file storage by writing zeros there. */
async function reserveInside(img: Qcow2Image, runs: Array<[number, number]>): Promise<void> {
  const fileEnd = img.dataChild.length;
  let zeros: Uint8Array | undefined;
  for (const [start, end] of runs) {
    const stop = Math.min(end, fileEnd);
    for (let pos = start; pos < stop; ) {
      const n = Math.min(stop - pos, 1 << 20);
      zeros ??= new Uint8Array(Math.min(1 << 20, Math.max(n, img.clusterSize)));
      await img.dataChild.pwritev(pos, n, zeros.length >= n ? zeros.subarray(0, n) : new Uint8Array(n));
      pos += n;
    }
  }
}

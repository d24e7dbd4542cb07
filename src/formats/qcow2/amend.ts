/**
 * qemu-img amend for qcow2: compat up / down, lazy_refcounts, refcount_bits,
 * data file name (the backing file only as it is: rebase changes it). Runs with the image lock held and
 * all caches flushed.
 */
import type { OptionReader } from '../../core/options.js';
import type { AmendProgress } from '../../core/driver.js';
import { AmendOp, AmendProgressFolder, refcountWalkProgress, type RefcountWalkInput } from './amend-progress.js';
import { BlockError, einval } from '../../core/errors.js';
import { AUTOCLEAR, COMPAT, INCOMPAT, V3_HEADER_LENGTH } from './constants.js';
import { rebuildRefcounts } from './check.js';
import { fileLengthOf } from './check-count.js';
import { getRefcount } from './refcount.js';
import { ClusterType, clusterType, entryOffset, makeEntry, readEntry, writeEntry } from './l2-entry.js';
import type { Qcow2Image } from './qcow2.js';
import { checkRefcountBits, readRefcountBits } from './create.js';

/**
 * Applies the amend options. Returns the new virtual size when `size` asks for
 * one; the caller resizes afterwards, as QEMU truncates once the rest is done.
 */
export async function amendImage(img: Qcow2Image, o: OptionReader, _force: boolean, progress?: AmendProgress): Promise<number | undefined> {
  const h = img.header;
  const compat = o.string('compat');
  const lazy = o.bool('lazy_refcounts');
  const refcountBits = readRefcountBits(o);
  const backingFile = o.has('backing_file') ? o.string('backing_file') : undefined;
  const backingFmt = o.string('backing_fmt');
  const size = o.size('size');
  const clusterSize = o.size('cluster_size');
  const dataFile = o.string('data_file');
  const dataFileRaw = o.bool('data_file_raw');
  const ctype = o.choice('compression_type', ['zlib', 'zstd'] as const);
  const extL2 = o.bool('extended_l2');
  const prealloc = o.string('preallocation');
  o.bool('encryption');
  o.finish();
  if (clusterSize !== undefined && clusterSize !== img.clusterSize) throw new BlockError('ENOTSUP', 'Changing the cluster size is not supported');
  if (ctype !== undefined && (ctype === 'zstd' ? 1 : 0) !== h.compressionType) throw new BlockError('ENOTSUP', 'Changing the compression type is not supported');
  if (extL2 !== undefined && extL2 !== img.extendedL2) throw new BlockError('ENOTSUP', 'Changing extended_l2 is not supported');
  if (prealloc !== undefined) throw new BlockError('ENOTSUP', 'Changing the preallocation mode is not supported');
  // As in QEMU, the width is checked with the options, before anything changes.
  if (refcountBits !== undefined) checkRefcountBits(refcountBits);
  let version = h.version;
  if (compat !== undefined) {
    if (compat === '0.10' || compat === 'v2') version = 2;
    else if (compat === '1.1' || compat === 'v3') version = 3;
    else throw einval(`Unknown compatibility level ${compat}`);
  }
  if (dataFile !== undefined || dataFileRaw !== undefined) {
    if (!img.hasDataFile) throw einval('data-file can only be set for images that use an external data file');
    if (dataFileRaw === true && !img.dataFileRaw) throw new BlockError('ENOTSUP', 'data-file-raw cannot be set on existing images');
    // An empty name removes the name from the image (QEMU: image_data_file NULL).
    if (dataFile === '') delete h.dataFile;
    else if (dataFile !== undefined) h.dataFile = dataFile;
    if (dataFileRaw === false) h.autoclear &= ~AUTOCLEAR.DATA_FILE_RAW;
    img.dataFileRaw = (h.autoclear & AUTOCLEAR.DATA_FILE_RAW) !== 0n;
    await img.writeHeader();
  }
  const changesWidth = refcountBits !== undefined && refcountBits !== 1 << h.refcountOrder;
  const fold = new AmendProgressFolder(progress, (version !== h.version ? 1 : 0) + (changesWidth ? 1 : 0));
  if (version > h.version) {
    fold.begin(AmendOp.UPGRADE);
    fold.status(0, 2);
    fold.status(1, 2);
    h.version = 3;
    h.headerLength = V3_HEADER_LENGTH;
    h.refcountOrder = 4;
    await img.writeHeader();
    fold.status(2, 2);
  }
  if (refcountBits !== undefined && refcountBits !== 1 << h.refcountOrder) {
    // Going to 16 bits is allowed on the way down to compat=0.10 (the downgrade comes last).
    if (version < 3 && refcountBits !== 16) {
      throw einval('Refcount widths other than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)');
    }
    // As QEMU, the stored refcounts are carried over to the new width (a
    // wrong one stays wrong, for check to find), not recounted.
    const counts = await storedRefcounts(img);
    const max = 2 ** refcountBits - 1;
    const over = counts.findIndex((v) => v > max);
    fold.begin(AmendOp.REFCOUNT_ORDER);
    refcountWalkProgress(walkInput(img, counts, Math.log2(refcountBits)), fold.status, over >= 0 ? over : undefined);
    if (over >= 0) {
      const exact = await img.refs.getExact(over);
      throw einval(`Cannot decrease refcount entry width to ${refcountBits} bits: Cluster at offset 0x${(over * img.clusterSize).toString(16)} has a refcount of ${exact}`);
    }
    await rebuildRefcounts(img, counts, Math.log2(refcountBits));
  }
  // As QEMU 7.2: amend no longer changes the backing file; naming the current one is allowed.
  if ((backingFile !== undefined || backingFmt !== undefined) && (backingFile !== h.backingFile || backingFmt !== h.backingFormat)) {
    throw new BlockError('EINVAL', 'Cannot amend the backing file', {}, { detail: backingFile ?? backingFmt, hint: "You can use 'qemu-img rebase' instead.\n" });
  }
  if (lazy !== undefined) {
    if (h.version < 3 || version < 3) {
      if (lazy) throw einval('Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)');
    } else {
      if (lazy) h.compatible |= COMPAT.LAZY_REFCOUNTS;
      else h.compatible &= ~COMPAT.LAZY_REFCOUNTS;
      img.lazyRefcounts = lazy;
      await img.writeHeader();
    }
  }
  if (version < h.version) {
    fold.begin(AmendOp.DOWNGRADE);
    await downgrade(img, fold.status);
  }
  return size !== undefined && size !== h.size ? size : undefined;
}

/** What QEMU's walks over the old refcount table see: the used clusters, old structures included. */
function walkInput(img: Qcow2Image, counts: Float64Array, newOrder: number): RefcountWalkInput {
  const refs = img.refs;
  const cs = img.clusterSize;
  const used: number[] = [];
  counts.forEach((v, c) => {
    if (v > 0) used.push(c);
  });
  const first = Math.floor(refs.tableOffset / cs);
  for (let c = first; c < first + img.header.refcountTableClusters; c++) used.push(c);
  for (const off of refs.table) if (off) used.push(Math.floor(off / cs));
  return { clusterSize: cs, reftableEntries: (img.header.refcountTableClusters * cs) / 8, oldOrder: refs.order, newOrder, used };
}

/** The stored refcount of every cluster of the file (past 2^53 only close). */
async function storedRefcounts(img: Qcow2Image): Promise<Float64Array> {
  const refs = img.refs;
  const per = refs.perBlock;
  const nb = Math.ceil(fileLengthOf(img) / img.clusterSize);
  const out = new Float64Array(nb);
  for (let rb = 0; rb * per < nb; rb++) {
    const buf = await refs.loadBlock(rb);
    if (!buf) continue;
    for (let i = 0; i < per && rb * per + i < nb; i++) out[rb * per + i] = getRefcount(buf, i, refs.order);
  }
  // The old table and blocks are replaced (and freed) by the rebuild: they hold no reference.
  const drop = (c: number) => {
    if (c < nb && out[c]! > 0) out[c]!--;
  };
  const first = Math.floor(refs.tableOffset / img.clusterSize);
  for (let c = first; c < first + img.header.refcountTableClusters; c++) drop(c);
  for (const off of refs.table) if (off) drop(Math.floor(off / img.clusterSize));
  return out;
}

/** Downgrades to v2; `status` hears of every L1 entry done, as QEMU's zero-cluster expansion reports. */
async function downgrade(img: Qcow2Image, status: (done: number, total: number) => void): Promise<void> {
  const h = img.header;
  if (h.refcountOrder !== 4) throw einval('compat=0.10 requires refcount_bits=16');
  if (img.hasDataFile) throw einval('Cannot downgrade an image with a data file');
  if (img.extendedL2) throw einval('Cannot downgrade an image with extended L2 entries');
  if (h.compressionType !== 0) throw einval('Cannot downgrade an image with a non-zlib compression type');
  if (img.snapshots.length > 0) throw new BlockError('ENOTSUP', 'Downgrading an image with snapshots is not supported');
  if (h.compatible & COMPAT.LAZY_REFCOUNTS) {
    h.compatible &= ~COMPAT.LAZY_REFCOUNTS;
    img.lazyRefcounts = false;
  }
  // Expand zero clusters: v2 has no zero flag.
  const cs = img.clusterSize;
  const backing = img.node.backing;
  const zeros = new Uint8Array(cs);
  for (let i = 0; i < img.l1.length; i++) {
    const l2 = img.l1[i]!;
    if (!l2) {
      status(i + 1, img.l1.length);
      continue;
    }
    for (let s = 0; s < cs / img.sliceBytes; s++) {
      const sliceOff = l2 + s * img.sliceBytes;
      const buf = await img.l2cache.get(sliceOff);
      const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      let changed = false;
      for (let j = 0; j < img.sliceEntries; j++) {
        const e = readEntry(dv, j, false);
        const ct = clusterType(e, false, false);
        if (ct === ClusterType.ZERO_PLAIN) {
          if (!backing) {
            writeEntry(dv, j, false, { hi: 0, lo: 0, zero: 0, alloc: 0 });
          } else {
            const host = await img.refs.alloc(1);
            await img.file.pwritev(host, cs, zeros);
            writeEntry(dv, j, false, makeEntry(host, true));
          }
          changed = true;
        } else if (ct === ClusterType.ZERO_ALLOC) {
          const host = entryOffset(e.hi, e.lo);
          await img.file.pwritev(host, cs, zeros);
          writeEntry(dv, j, false, { hi: e.hi, lo: (e.lo & ~1) >>> 0, zero: 0, alloc: 0 });
          changed = true;
        }
      }
      if (changed) img.l2cache.setDirty(sliceOff, buf);
    }
    status(i + 1, img.l1.length);
  }
  await img.flushAll();
  await img.file.flush();
  h.incompatible &= ~INCOMPAT.DIRTY;
  if (h.incompatible !== 0n) throw einval('Cannot downgrade an image with incompatible features set');
  h.version = 2;
  h.headerLength = 72;
  h.compatible = 0n;
  h.autoclear = 0n;
  h.bitmaps = undefined;
  await img.writeHeader();
}

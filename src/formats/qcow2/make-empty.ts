/**
 * Emptying an image after `img commit` (QEMU's qcow2_make_empty): a v3 image
 * without snapshots, bitmaps, a LUKS header or a data file is reset to a fresh
 * one (header, refcount table, one refcount block, a zeroed L1 table; the file
 * cut after them), with the dirty bit covering the steps where the refcounts
 * on disk describe nothing; any other image has every cluster discarded.
 */
import { BlockError, toBlockError } from '../../core/errors.js';
import { HDR, INCOMPAT } from './constants.js';
import { flushAll } from './cow.js';
import { CRYPT_LUKS } from './crypt.js';
import { registerMetadata } from './metadata-index.js';
import type { Qcow2Image } from './qcow2.js';
import { discardRange } from './zero-discard.js';

/** Empties the image (see the file comment). The caller holds the image idle. */
export async function makeEmpty(img: Qcow2Image): Promise<void> {
  const h = img.header;
  const l1Clusters = Math.ceil(h.l1Size / (img.clusterSize / 8));
  const whole =
    h.version >= 3 && img.snapshots.length === 0 && (h.bitmaps?.nbBitmaps ?? 0) === 0 && 3 + l1Clusters <= img.refs.perBlock && !img.hasDataFile &&
    // The LUKS header's clusters must survive (legacy AES has none).
    h.cryptMethod !== CRYPT_LUKS;
  if (whole) return makeCompletelyEmpty(img, l1Clusters);
  // Discards of this kind are passed to the file by default (pass-discard-snapshot).
  await discardRange(img, 0, h.size, true, true);
  await flushAll(img, true);
}

/** Writes `bytes` at `offset` of the file and flushes (QEMU's bdrv_pwrite_sync). */
async function writeSync(img: Qcow2Image, offset: number, bytes: Uint8Array): Promise<void> {
  await img.file.pwritev(offset, bytes.length, bytes);
  await img.file.flush();
}

/** QEMU's make_completely_empty. */
async function makeCompletelyEmpty(img: Qcow2Image, l1Clusters: number): Promise<void> {
  const h = img.header;
  const cs = img.clusterSize;
  await img.l2cache.flush();
  await img.file.flush();
  img.l2cache.clear();
  await img.refs.flushCache();
  await img.file.flush();
  // The refcounts on disk are about to describe nothing: the dirty bit says so until the end.
  if (!(h.incompatible & INCOMPAT.DIRTY)) {
    const v = new Uint8Array(8);
    new DataView(v.buffer).setBigUint64(0, h.incompatible | INCOMPAT.DIRTY);
    await writeSync(img, HDR.INCOMPATIBLE_FEATURES, v);
    h.incompatible |= INCOMPAT.DIRTY;
  }
  try {
    await img.file.debugEvent('l1_update');
    await img.file.pwriteZeroes(h.l1TableOffset, l1Clusters * cs);
    img.l1.fill(0);
    img.l1Copied.fill(0);
    await img.file.debugEvent('empty_image_prepare');
    // Room for the refcount table, one refcount block and the L1 table after the header.
    await img.file.pwriteZeroes(cs, (2 + l1Clusters) * cs);
    await img.file.debugEvent('l1_update');
    await img.file.debugEvent('reftable_update');
    const ptrs = new Uint8Array(20);
    const dv = new DataView(ptrs.buffer);
    dv.setBigUint64(0, BigInt(3 * cs));
    dv.setBigUint64(8, BigInt(cs));
    dv.setUint32(16, 1);
    await writeSync(img, HDR.L1_TABLE_OFFSET, ptrs);
    h.l1TableOffset = 3 * cs;
    h.refcountTableOffset = cs;
    h.refcountTableClusters = 1;
    const table = new Float64Array(cs / 8);
    await img.file.debugEvent('refblock_alloc');
    const entry = new Uint8Array(8);
    new DataView(entry.buffer).setBigUint64(0, BigInt(2 * cs));
    await writeSync(img, cs, entry);
    table[0] = 2 * cs;
    // Fresh refcount structures: an empty cache, no queued frees, the cursor at 0.
    img.resetRefcounts(table, cs, h.refcountOrder);
    const first = await img.refs.alloc(Math.ceil((3 * cs + h.l1Size * 8) / cs), [], true);
    if (first !== 0) throw new BlockError('EIO', 'First cluster in emptied image is in use', { node: img.node.nodeName });
  } catch (e) {
    // The refcounts in memory and on disk no longer agree: QEMU ejects the node; the
    // dirty bit stays, so the next read-write open repairs the image.
    img.dropped = true;
    img.corrupt = true;
    throw toBlockError(e);
  }
  // In memory and on disk agree again: clean, then the file cut after the new tables.
  h.incompatible &= ~INCOMPAT.DIRTY;
  await img.refs.flushCache();
  await img.file.flush();
  await img.writeHeader();
  img.markedDirty = false;
  img.metadataPreallocation = undefined;
  registerMetadata(img);
  await img.file.truncate((3 + l1Clusters) * cs, false, 'off');
}

/**
 * `amend -o compat=0.10`: a v3 image made readable by v2 programs, as QEMU's
 * qcow2_downgrade does it. Refused for what v2 cannot say (refcount widths
 * other than 16, a data file, snapshots of another size, incompatible
 * features, zstd-compressed clusters); otherwise every zero cluster of the
 * active table and of every snapshot becomes data or unallocated, since v2
 * has no zero flag.
 */
import { BlockError, STRERROR, toBlockError } from '../../core/errors.js';
import { INCOMPAT } from './constants.js';
import { flushAll } from './cow.js';
import { ClusterType, clusterType, decodeL1, entryOffset, makeEntry, readEntry, writeEntry } from './l2-entry.js';
import { markCorrupt, metadataWriteCheck, overlapCheck } from './metadata-index.js';
import type { Qcow2Image } from './qcow2.js';
import { validateSnapshotL1 } from './snapshot.js';
import { cHex as hex } from '../../core/c-hex.js';


/** Downgrades to v2; `status` hears of every L1 entry done (the active table's, then each snapshot's). */
export async function downgrade(img: Qcow2Image, status: (done: number, total: number) => void): Promise<void> {
  const h = img.header;
  if (h.refcountOrder !== 4) throw new BlockError('ENOTSUP', 'compat=0.10 requires refcount_bits=16');
  if (img.hasDataFile) throw new BlockError('ENOTSUP', 'Cannot downgrade an image with a data file');
  // v2 programs would not know that a snapshot's size or a large VM state matters.
  const size = Math.ceil(h.size / 512) * 512;
  for (const sn of img.snapshots) {
    if (sn.vmStateSize > 0xffffffff || (sn.diskSize ?? size) !== size) {
      throw new BlockError('ENOTSUP', 'Internal snapshots prevent downgrade of image');
    }
  }
  if (h.incompatible & INCOMPAT.DIRTY) {
    await flushAll(img, true);
    await img.file.flush();
    h.incompatible &= ~INCOMPAT.DIRTY;
    await img.writeHeader();
    img.markedDirty = false;
  }
  const rest = h.incompatible & ~INCOMPAT.COMPRESSION;
  if (rest) throw new BlockError('ENOTSUP', `Cannot downgrade an image with incompatible features ${hex(rest)} set`);
  try {
    await expandZeroClusters(img, status);
  } catch (e) {
    const err = toBlockError(e);
    throw new BlockError(err.code, `Failed to turn zero into data clusters: ${STRERROR[err.code] ?? err.message}`, {}, { cause: err });
  }
  if (h.incompatible & INCOMPAT.COMPRESSION) {
    if (await hasCompressedClusters(img)) {
      throw new BlockError('ENOTSUP', 'Cannot downgrade an image with zstd compression type and existing compressed clusters');
    }
    h.incompatible &= ~INCOMPAT.COMPRESSION;
    h.compressionType = 0;
  }
  // Compatible and autoclear features can simply be dropped (lazy refcounts were made clean above).
  h.compatible = 0n;
  h.autoclear = 0n;
  img.lazyRefcounts = false;
  h.version = 2;
  h.headerLength = 72;
  await img.writeHeader();
}

/**
 * QEMU's qcow2_expand_zero_clusters: the active L2 tables through the cache,
 * which is then written and emptied (snapshot tables may be the same tables),
 * then each snapshot's tables read and written directly. A snapshot whose L1
 * table is invalid is reported and ends the walk with its errno.
 */
async function expandZeroClusters(img: Qcow2Image, status: (done: number, total: number) => void): Promise<void> {
  const total = img.l1.length + img.snapshots.reduce((n, sn) => n + sn.l1Size, 0);
  let done = 0;
  const step = () => status(++done, total);
  await expandL1(img, img.l1, true, step);
  await img.l2cache.flush();
  await img.file.flush();
  img.l2cache.clear();
  for (const sn of img.snapshots) {
    try {
      validateSnapshotL1(sn, img.clusterSize);
    } catch (e) {
      img.node.graph.report(toBlockError(e).text);
      throw e;
    }
    const raw = new Uint8Array(sn.l1Size * 8);
    if (raw.length > 0) await img.file.preadv(sn.l1TableOffset, raw.length, raw);
    await expandL1(img, decodeL1(raw, sn.l1Size).offsets, false, step);
  }
}

/** Expands the zero clusters of the L2 tables one L1 table names. */
async function expandL1(img: Qcow2Image, l1: Float64Array, active: boolean, step: () => void): Promise<void> {
  const cs = img.clusterSize;
  const sliceBytes = img.sliceBytes;
  for (let i = 0; i < l1.length; i++) {
    const l2 = l1[i]!;
    if (l2 && l2 % cs !== 0) {
      throw await markCorrupt(img, `L2 table offset ${hex(l2)} unaligned (L1 index: ${hex(i)})`);
    }
    if (l2) {
      const l2Refcount = await img.refs.get(Math.floor(l2 / cs));
      for (let s = 0; s < cs / sliceBytes; s++) {
        const sliceOff = l2 + s * sliceBytes;
        let buf: Uint8Array;
        if (active) buf = await img.l2cache.get(sliceOff);
        else {
          buf = new Uint8Array(sliceBytes);
          await img.file.preadv(sliceOff, sliceBytes, buf);
        }
        const changed = await expandSlice(img, buf, l2, s, l2Refcount);
        if (!changed) continue;
        if (active) img.l2cache.setDirty(sliceOff, buf);
        else {
          await metadataWriteCheck(img, sliceOff, sliceBytes, 'inactive L2 table', 'active L2 table');
          await img.file.pwritev(sliceOff, sliceBytes, buf);
        }
      }
    }
    step();
  }
}

/** Expands the zero clusters of one slice in place; true if it changed. */
async function expandSlice(img: Qcow2Image, buf: Uint8Array, l2: number, slice: number, l2Refcount: number): Promise<boolean> {
  const cs = img.clusterSize;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let changed = false;
  for (let j = 0; j < img.sliceEntries; j++) {
    const e = readEntry(dv, j, false);
    const ct = clusterType(e, false, false);
    if (ct !== ClusterType.ZERO_PLAIN && ct !== ClusterType.ZERO_ALLOC) continue;
    let host = entryOffset(e.hi, e.lo);
    const fresh = ct === ClusterType.ZERO_PLAIN;
    if (fresh) {
      if (!img.node.backing) {
        // Nothing below shows through: the cluster can simply be unallocated.
        writeEntry(dv, j, false, { hi: 0, lo: 0, zero: 0, alloc: 0 });
        changed = true;
        continue;
      }
      host = await img.refs.alloc(1);
      // A table shared with snapshots: the new cluster is as shared as the table.
      if (l2Refcount > 1) await freeOnError(img, host, () => img.refs.update(host / cs, l2Refcount - 1));
    }
    if (host % cs !== 0) {
      const err = await markCorrupt(img, `Cluster allocation offset ${hex(host)} unaligned (L2 offset: ${hex(l2)}, L2 index: ${hex(slice * img.sliceEntries + j)})`);
      throw err;
    }
    const zero = async () => {
      await overlapCheck(img, host, cs);
      await img.file.pwritev(host, cs, new Uint8Array(cs));
    };
    if (fresh) await freeOnError(img, host, zero);
    else await zero();
    writeEntry(dv, j, false, makeEntry(host, l2Refcount === 1));
    changed = true;
  }
  return changed;
}

/** Runs `fn`; on failure gives the just allocated cluster at `host` back before rethrowing. */
async function freeOnError(img: Qcow2Image, host: number, fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    await img.refs.update(host / img.clusterSize, -1).catch(() => undefined);
    throw e;
  }
}

/** Whether the active tables name a compressed cluster (QEMU asks block status the same). */
async function hasCompressedClusters(img: Qcow2Image): Promise<boolean> {
  const cs = img.clusterSize;
  for (const l2 of img.l1) {
    if (!l2) continue;
    for (let s = 0; s < cs / img.sliceBytes; s++) {
      const buf = await img.l2cache.get(l2 + s * img.sliceBytes);
      const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      for (let j = 0; j < img.sliceEntries; j++) {
        if (clusterType(readEntry(dv, j, false), false, false) === ClusterType.COMPRESSED) return true;
      }
    }
  }
  return false;
}

/**
 * qemu-img amend for qcow2: compat up / down, lazy_refcounts, refcount_bits,
 * data file name (the backing file only as it is: rebase changes it). Runs with the image lock held and
 * all caches flushed.
 */
import { OptionReader } from '../../core/options.js';
import { amendEncryption } from './crypt.js';
import type { AmendProgress } from '../../core/driver.js';
import { AmendOp, AmendProgressFolder, refcountWalkProgress, type RefcountWalkInput } from './amend-progress.js';
import { BlockError, STRERROR, einval, toBlockError } from '../../core/errors.js';
import { writeSnapshotTable } from './snapshot-write.js';
import { AUTOCLEAR, COMPAT, V3_HEADER_LENGTH } from './constants.js';
import { rebuildRefcounts } from './check.js';
import { downgrade } from './downgrade.js';
import { fileLengthOf } from './check-count.js';
import { getRefcount } from './refcount.js';
import type { Qcow2Image } from './qcow2.js';
import { checkRefcountBits, readRefcountBits } from './create.js';

/** What is left of an amend once {@link amendImage} returns: QEMU resizes, then downgrades last. */
export interface AmendRest {
  /** The new virtual size, when `size` asks for another one. */
  size?: number;
  /** The downgrade to compat=0.10, when asked for: run after the resize (under the image lock). */
  downgrade?: () => Promise<void>;
}

/**
 * Applies the amend options but the resize and the downgrade, which it hands
 * back: the caller resizes, then downgrades, in QEMU's order (a downgrade
 * refused for the snapshots' sizes leaves the image resized).
 */
export async function amendImage(img: Qcow2Image, o: OptionReader, force: boolean, progress?: AmendProgress): Promise<AmendRest> {
  const h = img.header;
  // An amended image stores every bitmap anew at close, as QEMU's: its layout (the clusters a
  // downgrade leaks, say) then matches qemu-img's.
  img.storedBitmapBits = new WeakMap();
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
  // The LUKS key slot options, handed to the crypto layer without their prefix.
  const cryptoOpts: Record<string, string | number | boolean> = {};
  for (const k of ['state', 'keyslot', 'old-secret', 'new-secret', 'iter-time']) {
    const v = o.raw(`encrypt.${k}`);
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') cryptoOpts[k] = v;
  }
  const encryptionUpdate = Object.keys(cryptoOpts).length > 0;
  o.finish();
  if (encryptionUpdate) {
    if (!img.crypto) throw einval("Can't amend encryption options - encryption not present");
    if (h.cryptMethod !== 2) throw new BlockError('ENOTSUP', 'Only LUKS encryption options can be amended');
  }
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
    // v3 wants every snapshot's large VM state and disk size: the table is rewritten with them.
    if (img.snapshots.some((sn) => sn.extraDataSize < 16)) {
      try {
        await writeSnapshotTable(img);
      } catch (e) {
        const err = toBlockError(e);
        throw new BlockError(err.code, `Failed to update the snapshot table: ${STRERROR[err.code] ?? err.message}`, {}, { cause: err });
      }
    }
    fold.status(1, 2);
    h.version = 3;
    h.headerLength = V3_HEADER_LENGTH;
    h.refcountOrder = 4;
    await img.writeHeader();
    fold.status(2, 2);
  }
  if (encryptionUpdate) await amendEncryption(img, new OptionReader(cryptoOpts, "Block format 'qcow2'"), force);
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
  const rest: AmendRest = {};
  if (size !== undefined && size !== h.size) rest.size = size;
  if (version < h.version) {
    rest.downgrade = async () => {
      fold.begin(AmendOp.DOWNGRADE);
      await downgrade(img, fold.status);
    };
  }
  return rest;
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

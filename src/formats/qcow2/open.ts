/**
 * Opening a qcow2 image: the header, the runtime options (cache sizes,
 * discard and lazy refcount settings), the external data file, the L1 and
 * refcount tables, snapshots and bitmaps, and the repairs QEMU makes on a
 * read-write open (dirty lazy-refcount images, unknown autoclear bits,
 * bitmaps marked in use).
 */
import type { BdrvChild } from '../../core/child.js';
import { OptionReader, type BlockOptions } from '../../core/options.js';
import { BlockError, einval } from '../../core/errors.js';
import { ROLE_DATA_FILE } from '../../core/permissions.js';
import { MetaCache } from './cache.js';
import { AUTOCLEAR, AUTOCLEAR_KNOWN, COMPAT, INCOMPAT, MAX_HOST_OFFSET, MAX_SNAPSHOTS, SUBCLUSTERS } from './constants.js';
import { parseHeader, peekClusterBits } from './header.js';
import { entryOffset, isCopied } from './l2-entry.js';
import { Refcounts, type RefcountHost } from './refcount.js';
import { readSnapshotTable } from './snapshot.js';
import { markAllInUse, readBitmapDirectory } from './bitmap.js';
import { loadPersistentBitmaps } from './bitmap-store.js';
import { checkImage } from './check.js';
import { MetadataIndex, OVERLAP_SWITCHES, OVERLAP_TEMPLATES, markCorrupt, metadataWriteCheck, overlapCheck, registerMetadata, withKind } from './metadata-index.js';
import type { Qcow2Image } from './qcow2.js';
import { initL2Mapper } from './lookup.js';
import { flushAll } from './cow.js';
import { openEncryption } from './crypt.js';

/** Default L2 cache: enough for 8 GiB of a 64 KiB-cluster image (1 MiB). */
const DEFAULT_L2_CACHE_BYTES = 1 << 20;

/** Reads and validates the image behind `img.file` and fills in `img`'s state. */
export async function openImage(img: Qcow2Image, options: OptionReader): Promise<void> {
  await initL2Mapper();
  const file = img.file;
  const fileLen = file.length;
  // QEMU reads past the end of the file as zeros: a truncated header is parsed
  // (and refused) with zeros in place of the missing bytes.
  const first = new Uint8Array(512);
  await file.preadv(0, Math.min(512, fileLen), first);
  const cbits = peekClusterBits(first);
  const hbuf = new Uint8Array(2 ** cbits);
  await file.preadv(0, Math.min(hbuf.length, fileLen), hbuf);
  // `x-check`: an internal option for opening an image to check (and repair)
  // it, QEMU's BDRV_O_CHECK: a corrupt image may be opened read-write, and a
  // dirty one is left as it is for the check to report and repair.
  const forCheck = options.bool('x-check', false);
  // QEMU reads its runtime options after the table checks and before the
  // header extensions; the option errors show in that order.
  let l2EntrySize = 0;
  const h = parseHeader(hbuf, forCheck, () => {
    const cs = 2 ** cbits;
    l2EntrySize = options.size('l2-cache-entry-size', cs);
    if (l2EntrySize < 512 || l2EntrySize > cs || (l2EntrySize & (l2EntrySize - 1)) !== 0) {
      throw einval(`L2 cache entry size must be a power of two between 512 and the cluster size (${cs})`, {}, `got ${l2EntrySize}`);
    }
  }, !img.readOnly);
  img.header = h;
  img.clusterBits = cbits;
  img.clusterSize = 2 ** cbits;
  img.meta = new MetadataIndex(img.clusterSize);
  img.extendedL2 = (h.incompatible & INCOMPAT.EXTL2) !== 0n;
  img.l2EntryBytes = img.extendedL2 ? 16 : 8;
  img.l2Entries = img.clusterSize / img.l2EntryBytes;
  img.subSize = img.extendedL2 ? img.clusterSize / SUBCLUSTERS : img.clusterSize;

  if (h.incompatible & INCOMPAT.CORRUPT) {
    if (!img.readOnly && !forCheck) {
      throw new BlockError('EACCES', 'qcow2: Image is corrupt; cannot be opened read/write');
    }
    if (img.readOnly) img.warnings.push('qcow2: Image is corrupt; opened read-only');
  }

  // Options (QEMU's qcow2 runtime options).
  const l2CacheSize = options.size('l2-cache-size');
  const refCacheSize = options.size('refcount-cache-size');
  const cacheSize = options.size('cache-size');
  const cleanInterval = readCleanInterval(options);
  const lazyOpt = options.bool('lazy-refcounts');
  // As in QEMU, guest discards reach the file by default only when the node was opened with discard=unmap.
  img.passDiscardRequest = options.bool('pass-discard-request', img.node.discardUnmap);
  img.passDiscardSnapshot = options.bool('pass-discard-snapshot', true);
  img.passDiscardOther = options.bool('pass-discard-other', false);
  img.discardNoUnref = options.bool('discard-no-unref', false);
  img.meta.checked = overlapMask(options.raw('overlap-check'));
  const rawEncrypt = options.raw('encrypt');
  // Internal: open an encrypted image without its key, for info (QEMU's BDRV_O_NO_IO).
  await openEncryption(img, rawEncrypt, options.bool('x-no-io', false));
  img.sliceBytes = l2EntrySize;
  img.sliceEntries = l2EntrySize / img.l2EntryBytes;
  const { l2Bytes, refBytes } = cacheSizes(img, l2CacheSize, refCacheSize, cacheSize);
  img.l2cache = new MetaCache('L2 table', () => img.file, img.sliceBytes, Math.max(2, Math.floor(l2Bytes / img.sliceBytes)));
  img.l2cache.checkWrite = (off, bytes) => metadataWriteCheck(img, off, bytes, 'active L2 table');
  [img.l2cache.loadEvent, img.l2cache.writeEvent] = ['l2_load', 'l2_update'];

  // Data file.
  if (h.incompatible & INCOMPAT.DATA_FILE) {
    img.hasDataFile = true;
    img.dataFileRaw = (h.autoclear & AUTOCLEAR.DATA_FILE_RAW) !== 0n;
    img.dataChild = await openDataFile(img, options);
  } else {
    if (options.has('data-file')) {
      // As in qcow2_do_open, the child is opened first: its own open error wins
      // (a failed open releases the children it attached).
      await img.node.openChild(options, 'data-file', ROLE_DATA_FILE);
      throw einval("'data-file' can only be set for images with an external data file");
    }
    img.dataChild = file;
  }

  await readL1Table(img);
  const table = await readRefcountTable(img);
  const refEntries = Math.max(4, Math.floor(refBytes / img.clusterSize));
  img.refs = new Refcounts(refcountHost(img), cbits, h.refcountOrder, table, h.refcountTableOffset, refEntries);
  img.refs.cache.validate = () => undefined;

  // Snapshots and bitmaps.
  // Opened for check, the table is checked (and read) by the check itself, as QEMU does.
  const invalid = forCheck ? snapshotTableCheck(h.snapshotsOffset, h.nbSnapshots, img.clusterSize) : undefined;
  if (invalid) {
    img.snapshotTableError = invalid;
    img.snapshotTableInvalid = true;
  } else if (h.nbSnapshots > 0) {
    try {
      const r = await readSnapshotTable(file, h.snapshotsOffset, h.nbSnapshots, img.clusterSize);
      img.snapshots = r.snapshots;
      img.snapshotTableBytes = r.bytes;
    } catch (e) {
      // An image opened for check opens without its snapshots; check reports the table's error.
      if (!forCheck) throw e;
      img.snapshotTableError = e;
    }
  }
  let bitmapRaw: Uint8Array | null = null;
  // An open for check loads the bitmaps too, as QEMU's (BDRV_O_CHECK is not
  // BDRV_O_INACTIVE): a read-write one marks them in use and its close stores them.
  img.bitmapsLoaded = true;
  if (h.bitmaps) {
    const r = await readBitmapDirectory(file, h.bitmaps.directoryOffset, h.bitmaps.directorySize, h.bitmaps.nbBitmaps, img.clusterSize, h.size);
    img.bitmaps = r.bitmaps;
    bitmapRaw = r.raw;
    // Before the in-use flags are set below: a bitmap found in use is inconsistent.
    await loadPersistentBitmaps(img, r.bitmaps, !forCheck);
  }
  registerMetadata(img);

  img.lazyRefcounts = lazyOpt ?? (h.compatible & COMPAT.LAZY_REFCOUNTS) !== 0n;
  if (img.lazyRefcounts && h.version < 3) {
    throw einval('Lazy refcounts require a qcow2 image with at least qemu 1.1 compatibility level');
  }
  // L2 entries may only reach the disk after the refcounts of the clusters they
  // point to; lazy refcounts drop that rule (the dirty bit covers it).
  img.l2cache.before = async () => {
    if (!img.lazyRefcounts) {
      await img.refs.flushCache();
      await img.file.flush();
    }
  };

  if (!img.readOnly) {
    if (h.incompatible & INCOMPAT.DIRTY && forCheck) {
      // Like QEMU, closing the image marks it clean even when the check did not
      // repair it.
      img.markedDirty = true;
    } else if (h.incompatible & INCOMPAT.DIRTY) {
      // Lazy refcounts left the refcounts stale: rebuild them, as QEMU does
      // (the repair marks the image clean).
      const res = await checkImage(img, { leaks: true, errors: true });
      img.repairMessages.push(...res.messages);
      if (res.corruptions > 0) {
        throw new BlockError('EIO', `Could not repair dirty image: ${res.corruptions} corruptions remain`);
      }
    }
    if (h.autoclear & ~AUTOCLEAR_KNOWN) {
      // Autoclear bits we do not know describe state we will not keep up to date.
      h.autoclear &= AUTOCLEAR_KNOWN;
      await img.writeHeader();
    }
    if (bitmapRaw && h.bitmaps && markAllInUse(bitmapRaw, img.bitmaps)) {
      // QEMU 7.2 rewrites the whole header here, and opened for check its state
      // has not read the snapshot table yet: the header then says there are no
      // snapshots and check -r leaks frees their clusters. That loses data; we
      // write only the directory, so the snapshots stay (check-diff.test.ts).
      await file.pwritev(h.bitmaps.directoryOffset, bitmapRaw.length, bitmapRaw);
      await file.flush();
    }
  } else if (h.incompatible & INCOMPAT.DIRTY) {
    img.warnings.push('qcow2: Image is dirty (lazy refcounts); refcounts may be stale until a read-write open repairs them');
  }
  if (cleanInterval > 0) img.startCacheCleaner(cleanInterval);
}

/**
 * QEMU's check of the snapshot table's place and size before the check reads
 * it (qcow2_check_read_snapshot_table), with its messages; undefined if fine.
 */
function snapshotTableCheck(offset: number, count: number, clusterSize: number): BlockError | undefined {
  if (count > MAX_SNAPSHOTS) {
    const hint = `You can force-remove all ${count - MAX_SNAPSHOTS} overhanging snapshots with qemu-img check -r all\n`;
    return new BlockError('EFBIG', 'snapshot table too large', {}, { detail: `${count} entries`, hint });
  }
  // Its end cannot pass INT64_MAX: the header refused offsets past 2^53.
  if (offset % clusterSize !== 0) {
    return new BlockError('EINVAL', 'snapshot table offset invalid', {}, { detail: `0x${offset.toString(16)}` });
  }
  return undefined;
}

/** The callbacks the refcount structures use to reach the image. */
export function refcountHost(img: Qcow2Image): RefcountHost {
  return {
    file: () => img.file,
    setReftable: (off, clusters) => img.setReftable(off, clusters),
    addMeta: (off, bytes, kind) => img.meta.add(off, bytes, kind),
    removeMeta: (off, bytes, kind) => img.meta.remove(off, bytes, kind),
    corrupt: (msg) => markCorrupt(img, msg),
    checkOverlap: (off, bytes) => overlapCheck(img, off, bytes),
    checkMetaWrite: (off, bytes, own) => metadataWriteCheck(img, off, bytes, own),
    notice: (message) => img.node.graph.notice(message),
    passDiscard: img.passDiscardRequest,
    reclaim: () => flushAll(img, false, true),
  };
}

/** Reads the active L1 table: L2 table offsets and their COPIED flags. */
async function readL1Table(img: Qcow2Image): Promise<void> {
  const h = img.header;
  img.l1 = new Float64Array(h.l1Size);
  img.l1Copied = new Uint8Array(h.l1Size);
  if (h.l1Size === 0) return;
  // Entries past the end of the file read as zeros (as in QEMU): only the part inside is read.
  const inFile = Math.max(0, Math.min(h.l1Size, Math.floor((img.file.length - h.l1TableOffset) / 8)));
  if (inFile === 0) return;
  const raw = new Uint8Array(inFile * 8);
  await img.file.preadv(h.l1TableOffset, raw.length, raw);
  const dv = new DataView(raw.buffer);
  for (let i = 0; i < inFile; i++) {
    const hi = dv.getUint32(i * 8);
    const lo = dv.getUint32(i * 8 + 4);
    img.l1[i] = entryOffset(hi, lo);
    img.l1Copied[i] = isCopied(hi) ? 1 : 0;
  }
}

/** Reads the refcount table: refcount block offsets, 0 for none. */
async function readRefcountTable(img: Qcow2Image): Promise<Float64Array> {
  const h = img.header;
  const rtBytes = h.refcountTableClusters * img.clusterSize;
  const rtRaw = new Uint8Array(rtBytes);
  const have = Math.max(0, Math.min(rtBytes, img.file.length - h.refcountTableOffset));
  await img.file.debugEvent('reftable_load');
  if (have > 0) await img.file.preadv(h.refcountTableOffset, have, rtRaw);
  const rtdv = new DataView(rtRaw.buffer);
  const table = new Float64Array(rtBytes / 8);
  for (let i = 0; i < table.length; i++) {
    const hi = rtdv.getUint32(i * 8);
    const lo = rtdv.getUint32(i * 8 + 4);
    table[i] = hi * 4294967296 + ((lo & 0xfffffe00) >>> 0);
    if (lo & 0x1ff && !img.readOnly) img.warnings.push(`Refcount table entry ${i} has reserved bits set`);
    // Beyond what a file can hold: QEMU opens such an image (check reports the
    // block as outside the image); a value past any file length stands for it.
    if (table[i]! > MAX_HOST_OFFSET) table[i] = MAX_HOST_OFFSET;
  }
  return table;
}

/**
 * L2 and refcount cache sizes from l2-cache-size / refcount-cache-size /
 * cache-size, with QEMU's defaults: the L2 cache covers the whole image up to
 * 1 MiB, the refcount cache is a quarter of it (at least 4 clusters).
 */
export function cacheSizes(img: Qcow2Image, l2?: number, ref?: number, total?: number): { l2Bytes: number; refBytes: number } {
  const cs = img.clusterSize;
  // What the whole image needs: one L2 slice per slice of guest space.
  const maxL2 = Math.max(Math.ceil(img.header.size / cs) * img.l2EntryBytes, 2 * img.sliceBytes);
  const minRef = 4 * cs;
  if (total !== undefined) {
    if (l2 !== undefined && ref !== undefined) {
      throw einval('cache-size, l2-cache-size and refcount-cache-size may not be set at the same time');
    }
    if (l2 !== undefined && l2 > total) throw einval('l2-cache-size may not exceed cache-size');
    if (ref !== undefined && ref > total) throw einval('refcount-cache-size may not exceed cache-size');
    if (l2 !== undefined) return { l2Bytes: l2, refBytes: Math.max(minRef, total - l2) };
    if (ref !== undefined) return { l2Bytes: Math.max(2 * cs, total - ref), refBytes: ref };
    const l2b = Math.min(maxL2, Math.floor(total * 4 / 5));
    return { l2Bytes: l2b, refBytes: Math.max(minRef, total - l2b) };
  }
  const l2Bytes = l2 ?? Math.min(maxL2, DEFAULT_L2_CACHE_BYTES);
  const refBytes = ref ?? Math.max(minRef, Math.floor(l2Bytes / 4));
  return { l2Bytes, refBytes };
}

/** cache-clean-interval in seconds (default 600); QEMU takes up to 2^32 - 1. */
export function readCleanInterval(options: OptionReader): number {
  const v = options.raw('cache-clean-interval');
  if (v === undefined || v === null) return 600;
  const n = typeof v === 'string' && /^\s*-?[0-9]+\s*$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n)) {
    throw einval("Parameter 'cache-clean-interval' expects a number", {}, `got '${String(v)}'`);
  }
  // A negative number reads as a huge unsigned one in QEMU: too big as well.
  if (n < 0 || n > 0xffffffff) throw einval('Cache clean interval too big');
  return n;
}

/**
 * The overlap-check option as a mask of the kinds checked: a template name
 * (none, constant, cached, all), or an object with `template` and one on/off
 * per metadata kind, each switch overriding the template. `base`: the mask the
 * switches apply to when no template is named (a reopen keeps the old one).
 */
export function overlapMask(v: unknown, base: number = OVERLAP_TEMPLATES.cached!): number {
  if (v === undefined || v === null) return base;
  const names = Object.keys(OVERLAP_TEMPLATES);
  const bad = (x: unknown) =>
    einval(`Unsupported value '${String(x)}' for qcow2 option 'overlap-check'. Allowed are any of the following: ${names.join(', ')}`);
  const template = (name: unknown) => {
    const m = OVERLAP_TEMPLATES[String(name)];
    if (m === undefined || !names.includes(String(name))) throw bad(name);
    return m;
  };
  if (typeof v === 'string') return template(v);
  if (typeof v !== 'object' || Array.isArray(v)) throw bad(JSON.stringify(v));
  const sub = new OptionReader(v as Record<string, never>, "Block format 'qcow2'", 'overlap-check.', 'overlap-check.');
  const t = sub.raw('template');
  let mask = t === undefined ? base : template(t);
  for (const [name, kind] of Object.entries(OVERLAP_SWITCHES)) {
    const on = sub.bool(name);
    if (on !== undefined) mask = withKind(mask, kind, on);
  }
  sub.finish();
  return mask;
}

/** Opens the external data file: the `data-file` option, else the name stored in the header. */
async function openDataFile(img: Qcow2Image, options: OptionReader): Promise<BdrvChild> {
  const node = img.node;
  if (options.has('data-file')) {
    return (await node.openChild(options, 'data-file', ROLE_DATA_FILE))!;
  }
  options.consume('data-file');
  const name = img.header.dataFile;
  if (!name) throw einval("'data-file' is required for this image");
  const resolved = node.graph.resolveBacking(node, name, undefined);
  const proto = (resolved.file ?? resolved) as BlockOptions;
  const child = await node.graph.openNode(proto, {
    inheritFrom: node,
    readOnly: node.readOnly,
    relativeTo: node,
    childKey: 'data-file',
  } as never);
  try {
    return await node.graph.attachChild(node, child, 'data-file', ROLE_DATA_FILE);
  } catch (e) {
    await child.unref();
    throw e;
  }
}

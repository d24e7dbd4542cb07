/**
 * Persistent dirty bitmaps of a qcow2 image (docs/interop/qcow2.txt,
 * "Bitmaps"): loaded into the node's bitmaps at open, stored back on close.
 *
 * Load: every directory entry becomes a persistent bitmap of the node. One
 * found with the in-use flag was not stored after its last use: it is
 * inconsistent (no bits loaded; only removal is allowed). The others get
 * their bits from the bitmap table: an entry of 0 is a cluster of clear bits,
 * 1 a cluster of set bits, anything else the host offset of the bits. On a
 * read-only image the bitmaps are readonly.
 *
 * Store (close of a writable image): a bitmap whose bits did not change
 * since they were loaded or last stored keeps its table and data clusters;
 * the bits of each other persistent bitmap go to fresh clusters (all-zero clusters are not written: entry 0), then its
 * table, then a new directory in which the in-use flags are clear; only when
 * all of that is durable does the header point at the new directory (with
 * the bitmaps autoclear bit). The old directory, tables and data clusters
 * are freed afterwards. Inconsistent bitmaps keep their entry and clusters
 * as they were.
 *
 * Remove (QEMU's qcow2_co_remove_persistent_dirty_bitmap): a bitmap stored
 * in the image leaves it at once, not at close: a new directory without it
 * (the other entries as they are on disk, in use), the header, then its old
 * directory and the bitmap's table and data clusters are freed, so that the
 * store at close reuses them as QEMU's does.
 */
import { BdrvDirtyBitmap } from '../../core/dirty-bitmap.js';
import { BlockError } from '../../core/errors.js';
import type { Qcow2Bitmap } from './bitmap.js';
import { AUTOCLEAR, BME, BME_FLAG_AUTO, BME_FLAG_IN_USE, BMT_OFFSET_MASK, MAX_BITMAPS, MAX_BITMAP_DIRECTORY } from './constants.js';
import { flushAll } from './cow.js';
import { registerMetadata } from './metadata-index.js';
import type { Qcow2Image } from './qcow2.js';

/** QEMU's limits on one bitmap: table entries and bytes of bits. */
const MAX_TABLE_ENTRIES = 0x8000000;
const MAX_PHYS_BYTES = 0x20000000;
const MIN_GRANULARITY_BITS = 9;
const MAX_GRANULARITY_BITS = 31;

/** Bytes of bits of a bitmap over `size` bytes at `granularity`, and its table entries. */
function bitmapGeometry(size: number, granularity: number, cs: number): { nbits: number; bytes: number; entries: number } {
  const nbits = Math.max(1, Math.ceil(size / granularity));
  const bytes = Math.ceil(nbits / 8);
  return { nbits, bytes, entries: Math.ceil(bytes / cs) };
}

async function readTable(img: Qcow2Image, b: Qcow2Bitmap): Promise<bigint[]> {
  const raw = new Uint8Array(b.tableSize * 8);
  const have = Math.min(raw.length, Math.max(0, img.file.length - b.tableOffset));
  if (have > 0) await img.file.preadv(b.tableOffset, have, raw);
  const dv = new DataView(raw.buffer);
  const out: bigint[] = [];
  for (let i = 0; i < b.tableSize; i++) out.push(dv.getBigUint64(i * 8));
  return out;
}

function checkTableEntry(img: Qcow2Image, b: Qcow2Bitmap, i: number, e: bigint): void {
  const off = e & BMT_OFFSET_MASK;
  const bad = (e & ~BMT_OFFSET_MASK & ~1n) !== 0n || (off !== 0n && (e & 1n) !== 0n) || Number(off) % img.clusterSize !== 0;
  // QEMU's message names only the bitmap; the entry is in the context.
  if (bad) throw new BlockError('EINVAL', `Could not read bitmap '${b.name}' from image: Invalid argument`, { offset: b.tableOffset + i * 8, expected: `a valid bitmap table entry, not 0x${e.toString(16)}` });
}

/**
 * Loads the directory's bitmaps into the node (called by open before the
 * in-use flags are set). With `keepStored` false (an open for check) every
 * bitmap is written anew at close, as QEMU does, even when unchanged: a
 * repaired image then matches qemu-img's byte for byte.
 */
export async function loadPersistentBitmaps(img: Qcow2Image, bitmaps: readonly Qcow2Bitmap[], keepStored = true): Promise<void> {
  const node = img.node;
  const size = img.header.size;
  for (const b of bitmaps) {
    const g = 2 ** b.granularityBits;
    const bm = new BdrvDirtyBitmap(node, b.name, g, size);
    node.dirtyBitmaps.push(bm);
    bm.persistent = true;
    bm.readonly = img.readOnly;
    bm.disabled = !(b.flags & BME_FLAG_AUTO);
    if (b.flags & BME_FLAG_IN_USE) {
      bm.inconsistent = true;
      bm.disabled = true;
      continue;
    }
    const { nbits, entries } = bitmapGeometry(size, g, img.clusterSize);
    if (b.tableSize < entries) throw new BlockError('EINVAL', `Bitmap '${b.name}' doesn't satisfy the constraints`);
    const table = await readTable(img, b);
    const perCluster = img.clusterSize * 8;
    const buf = new Uint8Array(img.clusterSize);
    for (let i = 0; i < entries; i++) {
      const e = table[i]!;
      checkTableEntry(img, b, i, e);
      const start = i * perCluster;
      const n = Math.min(perCluster, nbits - start);
      const off = Number(e & BMT_OFFSET_MASK);
      if (off === 0) {
        if (e & 1n) bm.setBits(start, n);
        continue;
      }
      buf.fill(0);
      const have = Math.min(img.clusterSize, Math.max(0, img.file.length - off));
      if (have > 0) await img.file.preadv(off, have, buf.subarray(0, have));
      bm.deserialize(start, n, buf);
    }
    if (keepStored) img.storedBitmapBits.set(bm, { generation: bm.generation, tableOffset: b.tableOffset, tableSize: b.tableSize });
  }
}

/**
 * Refuses a new persistent bitmap that the image could not store (QEMU's
 * qcow2_co_can_store_new_dirty_bitmap), with its message.
 */
export function checkCanStoreBitmap(img: Qcow2Image, name: string, granularity: number): void {
  const fail = (why: string) => {
    throw new BlockError('EINVAL', `Can't make bitmap '${name}' persistent in '${img.node.nodeName}': ${why}`);
  };
  if (img.header.version < 3) fail('Cannot store dirty bitmaps in qcow2 v2 files');
  const stored = img.node.dirtyBitmaps.filter((b) => b.persistent);
  if (new TextEncoder().encode(name).length > 1023) fail('Name length exceeds maximum (1023 characters)');
  const bits = Math.log2(granularity);
  if (bits > MAX_GRANULARITY_BITS) fail(`Granularity exceeds maximum (${2 ** MAX_GRANULARITY_BITS} bytes)`);
  if (bits < MIN_GRANULARITY_BITS) fail(`Granularity is under minimum (${2 ** MIN_GRANULARITY_BITS} bytes)`);
  const { bytes, entries } = bitmapGeometry(img.header.size, granularity, img.clusterSize);
  if (entries > MAX_TABLE_ENTRIES || bytes > MAX_PHYS_BYTES) fail('Too much space will be occupied by the bitmap. Use larger granularity');
  if (stored.length >= MAX_BITMAPS) fail('Maximum number of persistent bitmaps is already reached');
  const dirBytes = stored.reduce((s, b) => s + entryLength(b.name), 0) + entryLength(name);
  if (dirBytes > MAX_BITMAP_DIRECTORY) fail('No space left in the bitmap directory');
}

function entryLength(name: string): number {
  return (BME.FIXED + new TextEncoder().encode(name).length + 7) & ~7;
}

interface NewEntry {
  name: string;
  flags: number;
  granularityBits: number;
  tableOffset: number;
  tableSize: number;
}

async function writeClusters(img: Qcow2Image, off: number, data: Uint8Array): Promise<void> {
  await img.file.pwritev(off, data.length, data);
}

/** Writes one bitmap's bits and table to new clusters; returns its directory entry. */
async function storeBitmap(img: Qcow2Image, bm: BdrvDirtyBitmap): Promise<NewEntry> {
  const cs = img.clusterSize;
  const { nbits, entries } = bitmapGeometry(bm.size, bm.granularity, cs);
  const table = new Uint8Array(Math.ceil((entries * 8) / cs) * cs);
  const tdv = new DataView(table.buffer);
  const perCluster = cs * 8;
  const buf = new Uint8Array(cs);
  for (let i = 0; i < entries; i++) {
    const start = i * perCluster;
    const n = Math.min(perCluster, nbits - start);
    if (!bm.hasDirtyBits(start, n)) continue;
    buf.fill(0);
    bm.serialize(start, n, buf);
    const off = await img.refs.alloc(1);
    await writeClusters(img, off, buf);
    tdv.setBigUint64(i * 8, BigInt(off));
  }
  const tableOffset = await img.refs.alloc(table.length / cs);
  // The entries only, as QEMU writes them: the rest of the clusters keeps what it held.
  await writeClusters(img, tableOffset, table.subarray(0, entries * 8));
  return {
    name: bm.name,
    flags: bm.disabled ? 0 : BME_FLAG_AUTO,
    granularityBits: Math.log2(bm.granularity),
    tableOffset,
    tableSize: entries,
  };
}

function serializeDirectory(entries: readonly NewEntry[]): Uint8Array {
  const enc = new TextEncoder();
  const names = entries.map((e) => enc.encode(e.name));
  const size = names.reduce((s, n) => s + ((BME.FIXED + n.length + 7) & ~7), 0);
  const raw = new Uint8Array(size);
  const dv = new DataView(raw.buffer);
  let pos = 0;
  entries.forEach((e, i) => {
    const name = names[i]!;
    dv.setBigUint64(pos + BME.TABLE_OFFSET, BigInt(e.tableOffset));
    dv.setUint32(pos + BME.TABLE_SIZE, e.tableSize);
    dv.setUint32(pos + BME.FLAGS, e.flags);
    raw[pos + BME.TYPE] = 1;
    raw[pos + BME.GRANULARITY_BITS] = e.granularityBits;
    dv.setUint16(pos + BME.NAME_SIZE, name.length);
    dv.setUint32(pos + BME.EXTRA_DATA_SIZE, 0);
    raw.set(name, pos + BME.FIXED);
    pos += (BME.FIXED + name.length + 7) & ~7;
  });
  return raw;
}

/** Queues the frees of an on-disk bitmap's table and data clusters. */
async function freeBitmapClusters(img: Qcow2Image, b: Qcow2Bitmap): Promise<void> {
  const table = await readTable(img, b);
  for (const e of table) {
    const off = Number(e & BMT_OFFSET_MASK);
    if (!off) continue;
    img.refs.queueFree(off, img.clusterSize);
    // QEMU frees bitmap data with QCOW2_DISCARD_ALWAYS: the file forgets it.
    img.discardAfterFree.add(off / img.clusterSize);
  }
  img.refs.queueFree(b.tableOffset, b.tableSize * 8);
}

/** Writes `entries` as a new directory (or none) and points the header at it; frees the old one. */
async function replaceDirectory(img: Qcow2Image, entries: readonly NewEntry[]): Promise<void> {
  const h = img.header;
  const oldDir = h.bitmaps;
  if (entries.length > 0) {
    const raw = serializeDirectory(entries);
    const dirOff = await img.refs.alloc(Math.ceil(raw.length / img.clusterSize));
    await img.file.pwritev(dirOff, raw.length, raw);
    await img.refs.flushCache();
    await img.file.flush();
    h.bitmaps = { nbBitmaps: entries.length, directorySize: raw.length, directoryOffset: dirOff };
    h.autoclear |= AUTOCLEAR.BITMAPS;
  } else {
    h.bitmaps = undefined;
    h.autoclear &= ~AUTOCLEAR.BITMAPS;
  }
  await img.writeHeader();
  if (oldDir) img.refs.queueFree(oldDir.directoryOffset, oldDir.directorySize);
}

/** img.bitmaps as the directory `entries` now on disk describe them. */
function adoptDirectory(img: Qcow2Image, entries: readonly NewEntry[]): void {
  let pos = 0;
  img.bitmaps = entries.map((e) => {
    const q: Qcow2Bitmap = { ...e, type: 1, entryOffset: pos };
    pos += entryLength(e.name);
    return q;
  });
  registerMetadata(img);
}

/**
 * Removes bitmap `name` from the image now (see the file comment); nothing
 * to do when the image does not store it. The caller holds the image idle.
 */
export async function removeStoredBitmap(img: Qcow2Image, name: string): Promise<void> {
  const gone = img.bitmaps.find((b) => b.name === name);
  if (!gone || !img.header.bitmaps) return;
  const entries: NewEntry[] = img.bitmaps.filter((b) => b !== gone).map(({ name, flags, granularityBits, tableOffset, tableSize }) => ({ name, flags, granularityBits, tableOffset, tableSize }));
  await replaceDirectory(img, entries);
  adoptDirectory(img, entries);
  await freeBitmapClusters(img, gone);
  await flushAll(img, true);
}

/**
 * Stores the node's persistent bitmaps (close of a writable image; the
 * caller holds the image idle). Nothing happens when the image has no
 * bitmaps on disk and none to store.
 */
export async function storePersistentBitmaps(img: Qcow2Image): Promise<void> {
  const h = img.header;
  const node = img.node;
  const persistent = node.dirtyBitmaps.filter((b) => b.persistent);
  if (persistent.length === 0 && !h.bitmaps) return;
  const onDisk = new Map(img.bitmaps.map((b) => [b.name, b]));
  const entries: NewEntry[] = [];
  const kept = new Set<Qcow2Bitmap>();
  let lost = false;
  for (const bm of persistent) {
    const old = onDisk.get(bm.name);
    if (bm.inconsistent) {
      // Left as found: its entry (in use) and clusters stay.
      if (old) {
        entries.push({ ...old, flags: old.flags | BME_FLAG_IN_USE });
        kept.add(old);
      }
      continue;
    }
    // A bitmap of an empty image has no bits to store: QEMU's store fails (its table
    // allocation of zero entries reports ENOMEM) and says the bitmaps are lost.
    if (bm.size === 0) {
      lost = true;
      continue;
    }
    const stored = img.storedBitmapBits.get(bm);
    if (old && stored && stored.generation === bm.generation && stored.tableOffset === old.tableOffset && stored.tableSize === old.tableSize && old.granularityBits === Math.log2(bm.granularity)) {
      // The bits did not change since they were loaded or stored: that copy stays (QEMU
      // rewrites every bitmap; keeping it saves writing and freeing the same bits).
      entries.push({ name: bm.name, flags: bm.disabled ? 0 : BME_FLAG_AUTO, granularityBits: old.granularityBits, tableOffset: old.tableOffset, tableSize: old.tableSize });
      kept.add(old);
      continue;
    }
    const entry = await storeBitmap(img, bm);
    entries.push(entry);
    img.storedBitmapBits.set(bm, { generation: bm.generation, tableOffset: entry.tableOffset, tableSize: entry.tableSize });
  }
  if (lost) img.closeLines.push(`Lost persistent bitmaps during inactivation of node '${node.nodeName}': No memory`);
  // Data and tables durable (with their refcounts) before any directory names them.
  await img.refs.flushCache();
  await img.file.flush();
  const old = img.bitmaps;
  await replaceDirectory(img, entries);
  // The old structures are unreferenced now.
  for (const b of old) if (!kept.has(b)) await freeBitmapClusters(img, b);
  adoptDirectory(img, entries);
  await flushAll(img, true);
  await img.file.flush();
}

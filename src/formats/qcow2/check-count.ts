/**
 * The counting pass of qemu-img check (QEMU's calculate_refcounts with
 * inc_refcounts, check_refcounts_l1/l2 and check_refblocks): every reference
 * to a host cluster is counted into an in-memory table, and what is wrong
 * with the entries on the way is reported with QEMU's lines and counters.
 * Tables are read as QEMU reads them: what lies past the end of the file is
 * zeros, and a reference past the end by a cluster or more is an error.
 */
import { STRERROR, toBlockError } from '../../core/errors.js';
import { CHECK_REPORT_LINE } from '../../core/driver.js';
import { BMT_OFFSET_MASK, MAX_L1_BYTES } from './constants.js';
import { ClusterType, clusterType, readEntry, writeEntry, type RawEntry } from './l2-entry.js';
import type { Qcow2Image } from './qcow2.js';
import { maxRefcount } from './refcount.js';

const hex = (n: number) => n.toString(16);
/** A 64-bit entry as PRIx64 prints it. */
export const hex64 = (hi: number, lo: number) => (hi ? hi.toString(16) + (lo >>> 0).toString(16).padStart(8, '0') : (lo >>> 0).toString(16));

const TWO32 = 4294967296;
/** L1E_RESERVED_MASK: bits 0-8 and 56-62. */
const L1_RESERVED = { hi: 0x7f000000, lo: 0x1ff };
/** L2E_STD_RESERVED_MASK: bits 1-8 and 56-61. */
const L2_RESERVED = { hi: 0x3f000000, lo: 0x1fe };
/** Offset bits 9-55 of L1 / L2 entries. */
const offsetOf = (hi: number, lo: number) => (hi & 0x00ffffff) * TWO32 + ((lo & 0xfffffe00) >>> 0);

/** What the counting pass found, as QEMU's BdrvCheckResult has it. */
export interface Tally {
  /** Progress reports of the L1 walk (see CheckFix.progress). */
  progress?: ((done: number, total: number) => void) | undefined;
  /**
   * Counted references per host cluster; `nb` entries are in use. As wide as the
   * image's refcounts (a count stops at their maximum: one more is an overflow), so
   * a 16-bit image needs 2 bytes per cluster, not 8.
   */
  ref: Counts;
  nb: number;
  corruptions: number;
  corruptionsFixed: number;
  checkErrors: number;
  messages: string[];
  allocated: number;
  fragmented: number;
  compressed: number;
}

/** Per-cluster counts, in the narrowest array that holds the refcount maximum. */
export type Counts = Uint8Array | Uint16Array | Uint32Array | Float64Array;

/** Most bytes the counts of one check may take (QEMU's array is as wide as the refcounts, 64 bits at most). */
export const MAX_COUNT_BYTES = 2 ** 31;

/** A zeroed array of `n` counts for refcounts of 2^order bits. */
export function newCounts(order: number, n: number): Counts {
  if (order <= 3) return new Uint8Array(n);
  if (order === 4) return new Uint16Array(n);
  if (order === 5) return new Uint32Array(n);
  return new Float64Array(n);
}

/** `counts` grown to hold at least `n` entries (doubling), the values kept. */
export function growCounts(counts: Counts, n: number): Counts {
  if (n <= counts.length) return counts;
  const bigger = new (counts.constructor as new (n: number) => Counts)(Math.max(n, counts.length * 2));
  bigger.set(counts);
  return bigger;
}

export function newTally(nb: number, order: number): Tally {
  return { ref: newCounts(order, Math.max(nb, 1)), nb, corruptions: 0, corruptionsFixed: 0, checkErrors: 0, messages: [], allocated: 0, fragmented: 0, compressed: 0 };
}

/** The file's length as the block layer reports it: whole 512-byte sectors. */
export function fileLengthOf(img: Qcow2Image): number {
  return Math.ceil(img.file.length / 512) * 512;
}

/** Reads `bytes` at `offset` as QEMU does: zeros past the end of the file. */
export async function readPadded(img: Qcow2Image, offset: number, bytes: number): Promise<Uint8Array> {
  const buf = new Uint8Array(bytes);
  const have = Math.min(bytes, Math.max(0, img.file.length - offset));
  if (have > 0) await img.file.preadv(offset, have, buf);
  return buf;
}

/** QEMU's inc_refcounts: counts one reference to every cluster of a region. */
export function countRegion(img: Qcow2Image, t: Tally, offset: number, size: number, exact?: bigint): void {
  if (size <= 0) return;
  const cs = img.clusterSize;
  // The last cluster may be partly past the end of the file, not more.
  if (offset + size - fileLengthOf(img) >= cs) {
    const at = exact !== undefined ? exact.toString(16) : hex(offset);
    t.messages.push(`ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${at} size 0x${hex(size)}`);
    t.corruptions++;
    return;
  }
  const max = maxRefcount(img.refs.order);
  const first = Math.floor(offset / cs);
  const last = Math.floor((offset + size - 1) / cs);
  for (let k = first; k <= last; k++) {
    if (k >= t.nb) grow(t, k + 1);
    if (t.ref[k] === max) {
      t.messages.push(`ERROR: overflow cluster offset=0x${hex(k * cs)}`);
      t.messages.push('Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing');
      t.corruptions++;
      continue;
    }
    t.ref[k]!++;
  }
}

function grow(t: Tally, nb: number): void {
  t.ref = growCounts(t.ref, nb);
  t.nb = nb;
}

/**
 * QEMU's calculate_refcounts. `fixErrors`: repair what can be repaired on the
 * way; `withRefcounts`: count the refcount table and blocks too.
 */
export async function calculateRefcounts(img: Qcow2Image, t: Tally, fixErrors: boolean, withRefcounts = true): Promise<{ rebuild: boolean }> {
  const cs = img.clusterSize;
  const h = img.header;
  countRegion(img, t, 0, cs);
  await checkL1(img, t, h.l1TableOffset, h.l1Size, true, fixErrors);
  if (img.hasDataFile && img.snapshots.length) {
    t.messages.push(`ERROR ${img.snapshots.length} snapshots in image with data file`);
    t.corruptions++;
  }
  for (const s of img.snapshots) {
    if (s.l1TableOffset % cs !== 0) {
      t.messages.push(`ERROR snapshot ${s.id} (${s.name}) l1_offset=0x${hex(s.l1TableOffset)}: L1 table is not cluster aligned; snapshot table entry corrupted`);
      t.corruptions++;
      continue;
    }
    if (s.l1Size > MAX_L1_BYTES / 8) {
      t.messages.push(`ERROR snapshot ${s.id} (${s.name}) l1_size=0x${hex(s.l1Size)}: L1 table is too large; snapshot table entry corrupted`);
      t.corruptions++;
      continue;
    }
    await checkL1(img, t, s.l1TableOffset, s.l1Size, false, fixErrors);
  }
  if (h.nbSnapshots > 0) countRegion(img, t, h.snapshotsOffset, img.snapshotTableBytes);
  // Without the refcount structures: the counts for new ones that replace them (amend).
  if (withRefcounts) countRegion(img, t, h.refcountTableOffset, h.refcountTableClusters * cs);
  // The LUKS header's clusters (encrypted images).
  if (h.cryptoHeader && h.cryptoHeader.length > 0) countRegion(img, t, h.cryptoHeader.offset, h.cryptoHeader.length);
  if (h.bitmaps) {
    countRegion(img, t, h.bitmaps.directoryOffset, h.bitmaps.directorySize);
    for (const b of img.bitmaps) {
      countRegion(img, t, b.tableOffset, b.tableSize * 8);
      if (b.tableSize === 0) continue;
      const raw = await readPadded(img, b.tableOffset, b.tableSize * 8);
      const dv = new DataView(raw.buffer);
      for (let i = 0; i < b.tableSize; i++) {
        const off = Number(dv.getBigUint64(i * 8) & BMT_OFFSET_MASK);
        if (off) countRegion(img, t, off, cs);
      }
    }
  }
  return { rebuild: withRefcounts ? await checkRefblocks(img, t, fixErrors) : false };
}

/** QEMU's check_refcounts_l1: the L1 table, its L2 tables and what they point to. */
async function checkL1(img: Qcow2Image, t: Tally, l1Offset: number, l1Size: number, active: boolean, fixErrors: boolean): Promise<void> {
  if (l1Size === 0) return;
  countRegion(img, t, l1Offset, l1Size * 8);
  // Entries past the end of the file are zeros: only those inside are looked at.
  const inFile = Math.max(0, Math.min(l1Size, Math.ceil((img.file.length - l1Offset) / 8)));
  const raw = await readPadded(img, l1Offset, inFile * 8);
  const dv = new DataView(raw.buffer);
  for (let i = 0; i < inFile; i++) {
    const hi = dv.getUint32(i * 8);
    const lo = dv.getUint32(i * 8 + 4);
    if (!hi && !lo) continue;
    if (hi & L1_RESERVED.hi || lo & L1_RESERVED.lo) {
      t.messages.push(`ERROR found L1 entry with reserved bits set: ${hex64(hi, lo)}`);
      t.corruptions++;
    }
    const l2 = offsetOf(hi, lo);
    countRegion(img, t, l2, img.clusterSize);
    if (l2 % img.clusterSize !== 0) {
      t.messages.push(`ERROR l2_offset=${hex(l2)}: Table is not cluster aligned; L1 entry corrupted`);
      t.corruptions++;
    }
    if (active && (i & 15) === 15) t.progress?.(i + 1, l1Size);
    await checkL2(img, t, l2, active, fixErrors);
  }
}

/** QEMU's check_refcounts_l2. */
async function checkL2(img: Qcow2Image, t: Tally, l2Offset: number, active: boolean, fixErrors: boolean): Promise<void> {
  const cs = img.clusterSize;
  // Past the end of the file a table reads as zeros: nothing in it to count or report.
  if (l2Offset >= img.file.length) return;
  const table = await readPadded(img, l2Offset, cs);
  const dv = new DataView(table.buffer);
  const stride = img.l2EntryBytes / 4;
  // Fragmentation is counted within one L2 table, as QEMU does.
  let nextContiguous = 0;
  for (let i = 0; i < img.l2Entries; i++) {
    if (isZeroEntry(dv, i * stride, stride)) continue;
    const e = readEntry(dv, i, img.extendedL2);
    const bitmap = { alloc: e.alloc >>> 0, zero: e.zero >>> 0 };
    const ct = clusterType(e, img.extendedL2, img.hasDataFile);
    if (ct !== ClusterType.COMPRESSED && (e.hi & L2_RESERVED.hi || e.lo & L2_RESERVED.lo)) {
      t.messages.push(`ERROR found l2 entry with reserved bits set: ${hex64(e.hi, e.lo)}`);
      t.corruptions++;
    }
    if (ct === ClusterType.COMPRESSED) {
      const x = 62 - (img.clusterBits - 8);
      const hiBits = x - 32;
      if (e.hi & 0x80000000) {
        // hex64: the offset may pass 2^53, where a number would round it.
        t.messages.push(`ERROR: coffset=0x${hex64(e.hi & ((1 << hiBits) - 1), e.lo)}: copied flag must never be set for compressed clusters`);
        e.hi = (e.hi & 0x7fffffff) >>> 0;
        t.corruptions++;
      }
      if (img.hasDataFile) {
        t.messages.push(`ERROR compressed cluster ${i} with data file, entry=0x${hex64(e.hi, e.lo)}`);
        t.corruptions++;
        continue;
      }
      if (bitmap.alloc || bitmap.zero) {
        t.messages.push(`ERROR compressed cluster ${i} with non-zero subcluster allocation bitmap, entry=0x${hex64(e.hi, e.lo)}`);
        t.corruptions++;
        continue;
      }
      const coff = (e.hi & ((1 << hiBits) - 1)) * TWO32 + (e.lo >>> 0);
      // Offsets past 2^53 lose their low bits as numbers: the message and the size use the exact value.
      const exact = (BigInt(e.hi & ((1 << hiBits) - 1)) << 32n) | BigInt(e.lo >>> 0);
      const sectors = ((e.hi & 0x3fffffff) >>> hiBits) + 1;
      countRegion(img, t, coff, sectors * 512 - Number(exact % 512n), exact);
      if (active) {
        t.allocated++;
        t.compressed++;
        t.fragmented++;
      }
      continue;
    }
    if (ct === ClusterType.NORMAL || ct === ClusterType.ZERO_ALLOC) {
      const host = offsetOf(e.hi, e.lo);
      if (img.extendedL2 && (bitmap.alloc & bitmap.zero) !== 0) {
        t.corruptions++;
        t.messages.push(`ERROR offset=${hex(host)}: Allocated cluster has corrupted subcluster allocation bitmap`);
      }
      if (host % cs !== 0) {
        t.corruptions++;
        const hasData = img.extendedL2 ? bitmap.alloc !== 0 : !(e.lo & 1);
        if (!hasData) {
          t.messages.push(`${fixErrors ? 'Repairing' : 'ERROR'} offset=${hex(host)}: Preallocated cluster is not properly aligned; L2 entry corrupted.`);
          if (fixErrors && !img.readOnly && (await zeroEntry(img, t, l2Offset, dv, i, e))) continue;
        } else {
          t.messages.push(`ERROR offset=${hex(host)}: Data cluster is not properly aligned; L2 entry corrupted.`);
        }
      }
      if (active) {
        t.allocated++;
        if (nextContiguous && host !== nextContiguous) t.fragmented++;
        nextContiguous = host + cs;
      }
      if (!img.hasDataFile) countRegion(img, t, host, cs);
      continue;
    }
    if (ct === ClusterType.UNALLOC && img.extendedL2 && bitmap.alloc !== 0) {
      t.corruptions++;
      t.messages.push('ERROR: Unallocated cluster has non-zero subcluster allocation map');
    }
  }
}

/** Whether the L2 entry at word `w` (of `stride` words) is all zeros: nothing to count or report. */
export function isZeroEntry(dv: DataView, w: number, stride: number): boolean {
  for (let k = 0; k < stride; k++) if (dv.getUint32((w + k) * 4) !== 0) return false;
  return true;
}

/** QEMU's fix_l2_entry_by_zero: a preallocated entry that cannot be used becomes a zero entry. */
async function zeroEntry(img: Qcow2Image, t: Tally, l2Offset: number, dv: DataView, i: number, e: RawEntry): Promise<boolean> {
  const z: RawEntry = img.extendedL2 ? { hi: 0, lo: 0, alloc: 0, zero: ((e.alloc | e.zero) >>> 0) } : { hi: 0, lo: 1, alloc: 0, zero: 0 };
  writeEntry(dv, i, img.extendedL2, z);
  const at = l2Offset + i * img.l2EntryBytes;
  const bytes = new Uint8Array(dv.buffer, i * img.l2EntryBytes, img.l2EntryBytes);
  const hit = img.meta.firstOverlap(at, img.l2EntryBytes, 'active L2 table');
  if (hit) {
    t.messages.push('ERROR: Overlap check failed');
    t.checkErrors++;
    return false;
  }
  await img.file.pwritev(at, img.l2EntryBytes, bytes);
  await img.file.flush();
  img.l2cache.forgetRange(l2Offset, l2Offset + img.clusterSize);
  t.corruptions--;
  t.corruptionsFixed++;
  return true;
}

/** QEMU's check_refblocks: the refcount table's entries and the blocks they name. */
async function checkRefblocks(img: Qcow2Image, t: Tally, fixErrors: boolean): Promise<boolean> {
  const cs = img.clusterSize;
  const h = img.header;
  let rebuild = false;
  const raw = await readPadded(img, h.refcountTableOffset, h.refcountTableClusters * cs);
  const dv = new DataView(raw.buffer);
  for (let i = 0; i < raw.length / 8; i++) {
    const hi = dv.getUint32(i * 8);
    const lo = dv.getUint32(i * 8 + 4);
    if (lo & 0x1ff) {
      t.messages.push(`ERROR refcount table entry ${i} has reserved bits set`);
      t.corruptions++;
      rebuild = true;
      continue;
    }
    const off = hi * TWO32 + lo;
    if (off % cs !== 0) {
      t.messages.push(`ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`);
      t.corruptions++;
      rebuild = true;
      continue;
    }
    if (off / cs >= t.nb) {
      t.corruptions++;
      t.messages.push(`${fixErrors ? 'Repairing' : 'ERROR'} refcount block ${i} is outside image`);
      if (fixErrors && !img.readOnly) {
        // Grow the file to hold the block, as QEMU does; its zeros count nothing.
        const end = (BigInt(hi) << 32n) + BigInt(lo) + BigInt(cs);
        let failure = end > 0x7fffffffffffffffn ? 'Invalid argument' : '';
        if (!failure) {
          try {
            await img.file.truncate(off + cs, false);
          } catch (e) {
            // QEMU reports the file driver's error, then its own line.
            t.messages.push(CHECK_REPORT_LINE + toBlockError(e).text);
            failure = STRERROR[toBlockError(e).code] ?? String(e);
          }
        }
        if (failure) {
          t.messages.push(`ERROR could not resize image: ${failure}`);
          rebuild = true;
          continue;
        }
        grow(t, Math.max(t.nb, Math.ceil(fileLengthOf(img) / cs)));
        t.corruptions--;
        t.corruptionsFixed++;
        countRegion(img, t, off, cs);
      }
      continue;
    }
    if (off !== 0) {
      countRegion(img, t, off, cs);
      const n = t.ref[off / cs]!;
      if (n !== 1) {
        t.messages.push(`ERROR refcount block ${i} refcount=${n}`);
        t.corruptions++;
        rebuild = true;
      }
    }
  }
  return rebuild;
}

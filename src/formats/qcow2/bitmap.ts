/**
 * Persistent dirty bitmaps: the directory is read (for listing, overlap
 * checks and refcount checks). A read-write open marks every bitmap in use,
 * as QEMU does, until the close stores them again (bitmap-store.ts loads
 * and stores the bits).
 */
import type { BdrvChild } from '../../core/child.js';
import { BlockError } from '../../core/errors.js';
import type { BitmapsExtension } from './header.js';
import { BME, BME_FLAG_AUTO, BME_FLAG_IN_USE } from './constants.js';

export interface Qcow2Bitmap {
  name: string;
  flags: number;
  granularityBits: number;
  type: number;
  tableOffset: number;
  tableSize: number;
  /** Byte offset of this entry in the directory. */
  entryOffset: number;
}

export async function readBitmapDirectory(
  file: BdrvChild,
  offset: number,
  size: number,
  count: number,
  clusterSize: number,
  virtualSize: number,
): Promise<{ bitmaps: Qcow2Bitmap[]; raw: Uint8Array }> {
  // Past the end of the file the directory reads as zeros, as in QEMU.
  const raw = new Uint8Array(size);
  const have = Math.min(size, Math.max(0, file.length - offset));
  if (have > 0) await file.preadv(offset, have, raw);
  const dv = new DataView(raw.buffer);
  const out: Qcow2Bitmap[] = [];
  let pos = 0;
  for (let i = 0; i < count; i++) {
    if (pos + BME.FIXED > size) throw new BlockError('EINVAL', `Bitmap directory is truncated (entry ${i})`);
    const nameSize = dv.getUint16(pos + BME.NAME_SIZE);
    const extra = dv.getUint32(pos + BME.EXTRA_DATA_SIZE);
    const len = BME.FIXED + extra + nameSize;
    if (pos + len > size) throw new BlockError('EINVAL', `Bitmap directory entry ${i} exceeds the directory`);
    const tableOffset = Number(dv.getBigUint64(pos + BME.TABLE_OFFSET));
    const tableSize = dv.getUint32(pos + BME.TABLE_SIZE);
    const name = new TextDecoder().decode(raw.subarray(pos + BME.FIXED + extra, pos + len));
    const flags = dv.getUint32(pos + BME.FLAGS);
    const gran = raw[pos + BME.GRANULARITY_BITS]!;
    // QEMU's check_dir_entry: an entry outside these bounds fails the open.
    const physBytes = tableSize * clusterSize;
    const bad =
      tableSize === 0 ||
      tableOffset === 0 ||
      tableOffset % clusterSize !== 0 ||
      tableSize > 0x8000000 ||
      gran > 31 ||
      gran < 9 ||
      (flags & ~7) !== 0 ||
      nameSize > 1023 ||
      raw[pos + BME.TYPE] !== 1 ||
      physBytes > 0x20000000 ||
      (!(flags & BME_FLAG_IN_USE) && virtualSize > physBytes * 8 * 2 ** gran);
    if (bad) throw new BlockError('EINVAL', `Bitmap '${name}' doesn't satisfy the constraints`);
    out.push({
      name,
      flags: dv.getUint32(pos + BME.FLAGS),
      type: raw[pos + BME.TYPE]!,
      granularityBits: raw[pos + BME.GRANULARITY_BITS]!,
      tableOffset,
      tableSize,
      entryOffset: pos,
    });
    pos += (len + 7) & ~7;
  }
  return { bitmaps: out, raw };
}

/** Sets the in-use flag of every bitmap in the raw directory. Returns whether anything changed. */
export function markAllInUse(raw: Uint8Array, bitmaps: Qcow2Bitmap[]): boolean {
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  let changed = false;
  for (const b of bitmaps) {
    if (b.flags & BME_FLAG_IN_USE) continue;
    b.flags |= BME_FLAG_IN_USE;
    dv.setUint32(b.entryOffset + BME.FLAGS, b.flags);
    changed = true;
  }
  return changed;
}

/**
 * Re-reads the directory and marks every bitmap in use on disk (durable when
 * it returns), for an image that becomes writable by a reopen (QEMU's
 * reopen_bitmaps_rw). Returns the directory as now on disk.
 */
export async function markInUseOnDisk(file: BdrvChild, ext: BitmapsExtension, clusterSize: number, virtualSize: number): Promise<Qcow2Bitmap[]> {
  const { bitmaps, raw } = await readBitmapDirectory(file, ext.directoryOffset, ext.directorySize, ext.nbBitmaps, clusterSize, virtualSize);
  if (markAllInUse(raw, bitmaps)) {
    await file.pwritev(ext.directoryOffset, raw.length, raw);
    await file.flush();
  }
  return bitmaps;
}

/** Bitmap description for qemu-img info. */
export function describeBitmap(b: Qcow2Bitmap): Record<string, unknown> {
  const flags: string[] = [];
  if (b.flags & BME_FLAG_IN_USE) flags.push('in-use');
  if (b.flags & BME_FLAG_AUTO) flags.push('auto');
  return { flags, name: b.name, granularity: 2 ** b.granularityBits };
}

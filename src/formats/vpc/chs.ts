/**
 * VHD's CHS geometry and the rules QEMU 7.2 follows for a VHD's size:
 * which of the geometry and the footer's current size is the virtual size
 * when opening, and how create rounds a requested size up to a geometry.
 */
import { BlockError } from '../../core/errors.js';

/** Largest cylinder, head and sectors-per-track values of a VHD geometry. */
export const CHS_MAX_C = 65535;
export const CHS_MAX_H = 16;
export const CHS_MAX_S = 255;
/** The largest geometry's sector count: a footer with it holds its size in current_size. */
export const MAX_GEOMETRY = CHS_MAX_C * CHS_MAX_H * CHS_MAX_S;
/** Largest virtual size in sectors QEMU accepts (2040 GiB). */
export const MAX_SECTORS = 0xff000000;
const SECTOR = 512;

/** A disk geometry. */
export interface Chs {
  cyls: number;
  heads: number;
  secsPerCyl: number;
}

/**
 * The geometry the VHD specification derives from a sector count (heads
 * allowed up to 16 with 255 sectors per track for large disks, as QEMU). It
 * may cover fewer sectors than asked for.
 */
export function calculateGeometry(totalSectors: number): Chs {
  const total = Math.min(totalSectors, MAX_GEOMETRY);
  let secsPerCyl: number;
  let heads: number;
  let cylsTimesHeads: number;
  if (total >= 65535 * 16 * 63) {
    secsPerCyl = 255;
    heads = 16;
    cylsTimesHeads = Math.floor(total / secsPerCyl);
  } else {
    secsPerCyl = 17;
    cylsTimesHeads = Math.floor(total / secsPerCyl);
    heads = Math.max(4, Math.ceil(cylsTimesHeads / 1024));
    if (cylsTimesHeads >= heads * 1024 || heads > 16) {
      secsPerCyl = 31;
      heads = 16;
      cylsTimesHeads = Math.floor(total / secsPerCyl);
    }
    if (cylsTimesHeads >= heads * 1024) {
      secsPerCyl = 63;
      heads = 16;
      cylsTimesHeads = Math.floor(total / secsPerCyl);
    }
  }
  // The footer's cylinder field is 16 bits wide (QEMU's uint16_t).
  return { cyls: Math.floor(cylsTimesHeads / heads) & 0xffff, heads, secsPerCyl };
}

const sectorsOf = (g: Chs) => g.cyls * g.heads * g.secsPerCyl;

/**
 * The geometry and sector count an image of `size` bytes (a multiple of 512)
 * gets: the smallest geometry that covers the size, or with `forceSize` (or
 * a size beyond what a geometry can describe) the largest geometry and the
 * exact size. EFBIG past 2040 GiB.
 */
export function roundedImageSize(size: number, forceSize: boolean): Chs & { totalSectors: number } {
  let g: Chs = { cyls: 0, heads: 0, secsPerCyl: 0 };
  if (forceSize) {
    g = { cyls: CHS_MAX_C, heads: CHS_MAX_H, secsPerCyl: CHS_MAX_S };
  } else {
    const wanted = Math.min(MAX_GEOMETRY, Math.floor(size / SECTOR));
    // Ask for one more sector until the geometry covers the size: rounding up, never down.
    for (let i = 0; wanted > sectorsOf(g); i++) g = calculateGeometry(wanted + i);
  }
  if (sectorsOf(g) !== MAX_GEOMETRY) return { ...g, totalSectors: sectorsOf(g) };
  const totalSectors = Math.floor(size / SECTOR);
  if (totalSectors > MAX_SECTORS) {
    throw new BlockError('EFBIG', 'Disk size is too large, max size is 2040 GiB', {}, { detail: `${size} bytes` });
  }
  return { ...g, totalSectors };
}

/**
 * Creator applications whose images take their size from current_size, not
 * the geometry: Hyper-V, QEMU with force_size, Disk2vhd, XenConverter,
 * XenServer (whose field is "tap" and a NUL).
 */
const SIZE_FROM_FOOTER = new Set(['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0']);

/** How the size is chosen: by creator application, or forced (the force_size_calc open option). */
export type SizeCalc = 'auto' | 'chs' | 'current_size';

/**
 * The virtual size in sectors of an image with this footer: the geometry's
 * sector count for Virtual PC and QEMU images, the footer's current_size
 * for the creators above, for the largest geometry (which cannot describe a
 * larger disk) and when forced.
 */
export function virtualSectors(
  footer: { creatorApp: string; cyls: number; heads: number; secsPerCyl: number; currentSize: bigint },
  calc: SizeCalc,
): bigint {
  const chs = footer.cyls * footer.heads * footer.secsPerCyl;
  const useChs = !SIZE_FROM_FOOTER.has(footer.creatorApp) || calc === 'chs';
  if (!useChs || chs === MAX_GEOMETRY || calc === 'current_size') return footer.currentSize / BigInt(SECTOR);
  return BigInt(chs);
}

/**
 * An NBD export: a BlockBackend under a name, with the transmission flags,
 * size and metadata contexts qemu-nbd gives it (QEMU's nbd_export_create).
 */
import type { BlockBackend } from '../../core/backend.js';
import { BitmapCheck, type BdrvDirtyBitmap, findDirtyBitmap } from '../../core/dirty-bitmap.js';
import { BlockError } from '../../core/errors.js';
import type { BlockNode } from '../../core/node.js';
import { ExportFlag, NBD_MAX_STRING_SIZE } from './constants.js';

/** What the caller of {@link createExport} chooses. */
export interface NbdExportOptions {
  /** The name clients ask for ('' is the default export). */
  name: string;
  description?: string;
  /** Refuse WRITE, WRITE_ZEROES and TRIM (NBD_FLAG_READ_ONLY). */
  readOnly: boolean;
  /**
   * Dirty bitmaps offered as `qemu:dirty-bitmap:<name>`: a name is looked up
   * down the chain as qemu-nbd's -B; a bitmap given as such (QMP's node and
   * name form) is taken as it is.
   */
  bitmaps?: readonly (string | BdrvDirtyBitmap)[];
  /** Offer `qemu:allocation-depth` (qemu-nbd -A). */
  allocationDepth?: boolean;
  /** Advertise NBD_FLAG_CAN_MULTI_CONN (qemu-nbd: when more than one client may connect). */
  multiConn?: boolean;
}

/** A ready export; shared by every connection that selects it. */
export interface NbdExport {
  readonly name: string;
  readonly description: string | undefined;
  readonly backend: BlockBackend;
  /** Transmission flags before the per-client SEND_DF. */
  readonly flags: number;
  /** Export size: the device length rounded down to 512 bytes, as QEMU does. */
  readonly size: number;
  readonly allocationDepth: boolean;
  readonly bitmaps: readonly BdrvDirtyBitmap[];
}

/** The next node down for a bitmap search: filtered child, then backing (bdrv_filter_or_cow_bs). */
function filterOrCow(n: BlockNode): BlockNode | undefined {
  return n.filtered?.node ?? n.backing?.node;
}

/**
 * Checks the options and builds the export; the bitmaps are marked busy until
 * {@link releaseExport}. Errors carry qemu-nbd's wording ("Bitmap 'x' is not
 * found", "Enabled bitmap 'x' incompatible with readonly export").
 */
export function createExport(backend: BlockBackend, o: NbdExportOptions): NbdExport {
  if (new TextEncoder().encode(o.name).length > NBD_MAX_STRING_SIZE) {
    throw new BlockError('EINVAL', `export name '${o.name}' too long`);
  }
  if (o.description !== undefined && new TextEncoder().encode(o.description).length > NBD_MAX_STRING_SIZE) {
    throw new BlockError('EINVAL', `description '${o.description}' too long`);
  }
  let flags = ExportFlag.HAS_FLAGS | ExportFlag.SEND_FLUSH | ExportFlag.SEND_FUA | ExportFlag.SEND_CACHE;
  if (o.multiConn) flags |= ExportFlag.CAN_MULTI_CONN;
  if (o.readOnly) flags |= ExportFlag.READ_ONLY;
  else flags |= ExportFlag.SEND_TRIM | ExportFlag.SEND_WRITE_ZEROES | ExportFlag.SEND_FAST_ZERO;

  const bitmaps: BdrvDirtyBitmap[] = [];
  for (const given of o.bitmaps ?? []) {
    if (typeof given !== 'string') {
      given.check(BitmapCheck.ALLOW_RO);
      bitmaps.push(given);
      continue;
    }
    const name = given;
    let n: BlockNode | undefined = backend.node;
    let bm: BdrvDirtyBitmap | undefined;
    while (n && !bm) {
      bm = findDirtyBitmap(n, name);
      if (!bm) n = filterOrCow(n);
    }
    if (!bm || !n) throw new BlockError('ENOENT', `Bitmap '${name}' is not found`);
    if (o.readOnly && !n.readOnly && bm.enabled) {
      throw new BlockError('EINVAL', `Enabled bitmap '${name}' incompatible with readonly export`);
    }
    bm.check(BitmapCheck.ALLOW_RO);
    bitmaps.push(bm);
  }
  for (const bm of bitmaps) bm.busy = true;
  return {
    name: o.name,
    description: o.description,
    backend,
    flags,
    size: Math.floor(backend.length / 512) * 512,
    allocationDepth: o.allocationDepth ?? false,
    bitmaps,
  };
}

/** Gives the export's bitmaps back (not busy any more). */
export function releaseExport(exp: NbdExport): void {
  for (const bm of exp.bitmaps) bm.busy = false;
}

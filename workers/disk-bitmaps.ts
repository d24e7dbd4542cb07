/**
 * The dirty-bitmap operations of one open disk (the worker side of the
 * page's `disk.bitmaps`): QEMU's block-dirty-bitmap-* commands on the disk's
 * top node, with their checks and messages (core/dirty-bitmap.ts). Persistent
 * bitmaps are stored by the format when the disk closes.
 */
import type { BlockBackend } from '../src/core/backend.js';
import {
  addDirtyBitmap,
  BitmapCheck,
  checkpointDirtyBitmaps,
  checkWritableForPersistent,
  clearDirtyBitmap,
  disableDirtyBitmap,
  enableDirtyBitmap,
  lookupDirtyBitmap,
  removeDirtyBitmapWithStorage,
} from '../src/core/dirty-bitmap.js';
import { BlockError } from '../src/core/errors.js';
import type { AddBitmapOptions, BitmapExtentsPage, BitmapInfo } from '../src/client/protocol.js';

/** Most extents one page may ask for (bounds the reply). */
export const MAX_EXTENTS_PER_PAGE = 65536;

function checkName(name: unknown): string {
  if (typeof name !== 'string') throw new BlockError('EINVAL', `Bitmap name must be a string, got ${typeof name}`);
  return name;
}

/** block-dirty-bitmap-add. */
export function bitmapAdd(bb: BlockBackend, name: string, opts: AddBitmapOptions = {}): void {
  const o: AddBitmapOptions = {};
  if (opts.granularity !== undefined) o.granularity = opts.granularity;
  if (opts.persistent !== undefined) o.persistent = !!opts.persistent;
  if (opts.disabled !== undefined) o.disabled = !!opts.disabled;
  if (o.persistent) checkWritableForPersistent(bb.node, checkName(name));
  addDirtyBitmap(bb.node, checkName(name), o);
}

/** block-dirty-bitmap-remove (a persistent one leaves the image at once). */
export function bitmapRemove(bb: BlockBackend, name: string): Promise<void> {
  return removeDirtyBitmapWithStorage(bb.node, checkName(name));
}

export function bitmapClear(bb: BlockBackend, name: string): void {
  clearDirtyBitmap(bb.node, checkName(name));
}

export function bitmapEnable(bb: BlockBackend, name: string): void {
  enableDirtyBitmap(bb.node, checkName(name));
}

export function bitmapDisable(bb: BlockBackend, name: string): void {
  disableDirtyBitmap(bb.node, checkName(name));
}

/** Stores the persistent bitmaps now (valid in the image until the next write). */
export function bitmapStore(bb: BlockBackend): Promise<void> {
  return checkpointDirtyBitmaps(bb.node);
}

/** block-dirty-bitmap-merge of bitmaps of this disk. */
export function bitmapMerge(bb: BlockBackend, target: string, sources: string[]): void {
  if (!Array.isArray(sources)) throw new BlockError('EINVAL', `Bitmap merge sources must be a list of names, got ${typeof sources}`);
  const dst = lookupDirtyBitmap(bb.node, checkName(target));
  dst.merge(sources.map((s) => lookupDirtyBitmap(bb.node, checkName(s))));
}

/** The disk's bitmaps, as query-block's dirty-bitmaps. */
export function bitmapList(bb: BlockBackend): BitmapInfo[] {
  return bb.node.dirtyBitmaps.map((b) => ({
    name: b.name,
    granularity: b.granularity,
    count: b.count,
    recording: b.enabled,
    busy: b.busy,
    persistent: b.persistent,
    inconsistent: b.inconsistent,
  }));
}

/** One page of dirty extents of `name` in [offset, offset + bytes). */
export function bitmapExtents(bb: BlockBackend, name: string, offset: number, bytes: number, maxExtents: number, maxLength?: number): BitmapExtentsPage {
  const bm = lookupDirtyBitmap(bb.node, checkName(name));
  if (!Number.isSafeInteger(maxExtents) || maxExtents < 1 || maxExtents > MAX_EXTENTS_PER_PAGE) {
    throw new BlockError('EINVAL', `Bitmap '${name}': extents per page must be 1..${MAX_EXTENTS_PER_PAGE}, got ${maxExtents}`);
  }
  if (maxLength !== undefined && (!Number.isSafeInteger(maxLength) || maxLength < 1)) {
    throw new BlockError('EINVAL', `Bitmap '${name}': maximum extent length must be a positive integer, got ${maxLength}`);
  }
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(bytes) || offset < 0 || bytes < 0 || offset + bytes > bm.size) {
    throw new BlockError('EINVAL', `Bitmap '${name}': range ${offset}+${bytes} is outside its ${bm.size} bytes`);
  }
  // The bits of an inconsistent bitmap mean nothing.
  bm.check(BitmapCheck.INCONSISTENT);
  const end = offset + bytes;
  const extents: Array<[number, number]> = [];
  let pos = offset;
  while (extents.length < maxExtents) {
    const a = bm.nextDirtyArea(pos, end, maxLength);
    if (!a) return { extents, next: -1 };
    extents.push(a);
    pos = a[0] + a[1];
  }
  return { extents, next: pos < end && bm.nextDirty(pos, end - pos) >= 0 ? pos : -1 };
}

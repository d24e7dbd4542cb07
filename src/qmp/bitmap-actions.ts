/**
 * The dirty bitmap actions of a transaction (QEMU 7.2's blockdev.c
 * block_dirty_bitmap_*_prepare / commit / abort): each does its work in
 * prepare and can undo it: an added bitmap is removed, a clear or merge gets
 * its old bits back, enable / disable return to the old state, and a removal
 * only hides the bitmap (busy) until the transaction commits.
 */
import { BitmapCheck, removeDirtyBitmap, removeDirtyBitmapWithStorage, type BdrvDirtyBitmap, type BitmapUndo } from '../core/dirty-bitmap.js';
import type { BlockNode } from '../core/node.js';
import type { BlockQmp } from './block-qmp.js';
import { addBitmap, lookupBitmap, mergeOperands } from './commands-bitmaps.js';
import { requireIndividual, type TxnAction, type TxnContext } from './transaction.js';

type Args = Record<string, unknown>;

/** block-dirty-bitmap-add: removed again on abort. */
function addAction(q: BlockQmp, args: Args, ctx: TxnContext): TxnAction {
  let added = false;
  return {
    prepare() {
      requireIndividual(ctx);
      addBitmap(q, args);
      added = true;
    },
    async abort() {
      if (!added) return;
      const { node } = lookupBitmap(q, args.node as string, args.name as string);
      await removeDirtyBitmapWithStorage(node, args.name as string);
    },
  };
}

/** Clear and merge: the bitmap's old bits are kept until commit, put back on abort. */
function bitsAction(q: BlockQmp, args: Args, ctx: TxnContext, op: 'clear' | 'merge'): TxnAction {
  let undo: BitmapUndo | undefined;
  return {
    prepare() {
      requireIndividual(ctx);
      if (op === 'merge') {
        const { target, sources } = mergeOperands(q, args);
        undo = target.merge(sources, true);
        return;
      }
      const { bitmap } = lookupBitmap(q, args.node as string, args.name as string);
      bitmap.check(BitmapCheck.DEFAULT);
      undo = bitmap.clear(true);
    },
    commit: () => undo?.commit(),
    abort: () => undo?.undo(),
  };
}

/** Enable and disable: the old state comes back on abort. */
function switchAction(q: BlockQmp, args: Args, ctx: TxnContext, enable: boolean): TxnAction {
  let bitmap: BdrvDirtyBitmap | undefined;
  let wasDisabled = false;
  return {
    prepare() {
      requireIndividual(ctx);
      const bm = lookupBitmap(q, args.node as string, args.name as string).bitmap;
      bm.check(BitmapCheck.ALLOW_RO);
      bitmap = bm;
      wasDisabled = bm.disabled;
      bm.disabled = !enable;
    },
    abort() {
      if (bitmap) bitmap.disabled = wasDisabled;
    },
  };
}

/**
 * block-dirty-bitmap-remove: the stored copy leaves the image in prepare
 * (as in QEMU), the bitmap stays on the node, busy, until commit drops it.
 * On abort it is usable again (and stored again when the image closes).
 */
function removeAction(q: BlockQmp, args: Args, ctx: TxnContext): TxnAction {
  let target: { node: BlockNode; bitmap: BdrvDirtyBitmap } | undefined;
  return {
    async prepare() {
      requireIndividual(ctx);
      const found = lookupBitmap(q, args.node as string, args.name as string);
      found.bitmap.check(BitmapCheck.BUSY | BitmapCheck.RO);
      if (found.bitmap.persistent) await found.node.instance?.removePersistentDirtyBitmap?.(found.bitmap.name);
      found.bitmap.busy = true;
      target = found;
    },
    commit() {
      if (!target) return;
      target.bitmap.busy = false;
      removeDirtyBitmap(target.node, target.bitmap.name);
    },
    abort() {
      if (target) target.bitmap.busy = false;
    },
  };
}

/** The bitmap action of a transaction's `type`, or undefined for other types. */
export function bitmapAction(q: BlockQmp, type: string, args: Args, ctx: TxnContext): TxnAction | undefined {
  switch (type) {
    case 'block-dirty-bitmap-add':
      return addAction(q, args, ctx);
    case 'block-dirty-bitmap-remove':
      return removeAction(q, args, ctx);
    case 'block-dirty-bitmap-clear':
      return bitsAction(q, args, ctx, 'clear');
    case 'block-dirty-bitmap-merge':
      return bitsAction(q, args, ctx, 'merge');
    case 'block-dirty-bitmap-enable':
      return switchAction(q, args, ctx, true);
    case 'block-dirty-bitmap-disable':
      return switchAction(q, args, ctx, false);
    default:
      return undefined;
  }
}

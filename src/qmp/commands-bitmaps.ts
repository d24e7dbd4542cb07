/**
 * The dirty bitmap commands (QEMU 7.2's block/monitor/bitmap-qmp-cmds.c):
 * block-dirty-bitmap-add / -remove / -clear / -enable / -disable / -merge on
 * the bitmaps of core/dirty-bitmap.ts.
 */
import {
  addDirtyBitmap,
  BitmapCheck,
  clearDirtyBitmap,
  disableDirtyBitmap,
  enableDirtyBitmap,
  lookupDirtyBitmap,
  removeDirtyBitmapWithStorage,
  type BdrvDirtyBitmap,
} from '../core/dirty-bitmap.js';
import type { BlockNode } from '../core/node.js';
import type { BlockQmp } from './block-qmp.js';
import type { QmpCommand } from './dispatcher.js';
import { genericError } from './errors.js';
import { m, struct, type QapiType } from './schema.js';

const nodeAndName = (command: string) => struct(command, [m('node', 'str'), m('name', 'str')]);

/** A bitmap source of merge: a name on the target's node, or a node and a name. */
const bitmapOrStr: QapiType = {
  alternate: 'BlockDirtyBitmapOrStr',
  str: 'str',
  object: struct('BlockDirtyBitmap', [m('node', 'str'), m('name', 'str')]),
};

/** QEMU's block_dirty_bitmap_lookup: the node (by device or node-name), then the bitmap. */
export function lookupBitmap(q: BlockQmp, nodeName: string, name: string): { node: BlockNode; bitmap: BdrvDirtyBitmap } {
  let node: BlockNode;
  try {
    node = q.lookupNode(nodeName, nodeName);
  } catch {
    throw genericError(`Node '${nodeName}' not found`);
  }
  return { node, bitmap: lookupDirtyBitmap(node, name) };
}

/** QEMU's qmp_block_dirty_bitmap_add with checked arguments. */
export function addBitmap(q: BlockQmp, args: Record<string, unknown>): void {
  const name = args.name as string;
  // QEMU checks the name before it looks the node up.
  if (name === '') throw genericError('Bitmap name cannot be empty');
  const node = q.lookupNode(args.node as string, args.node as string);
  addDirtyBitmap(node, name, {
    ...(args.granularity !== undefined ? { granularity: args.granularity as number } : {}),
    ...(args.persistent !== undefined ? { persistent: args.persistent as boolean } : {}),
    ...(args.disabled !== undefined ? { disabled: args.disabled as boolean } : {}),
  });
}

/** BlockDirtyBitmapAdd. */
export const bitmapAddType = struct('BlockDirtyBitmapAdd', [m('node', 'str'), m('name', 'str'), m('*granularity', 'uint32'), m('*persistent', 'bool'), m('*disabled', 'bool')]);
/** BlockDirtyBitmap. */
export const bitmapType = struct('BlockDirtyBitmap', [m('node', 'str'), m('name', 'str')]);
/** BlockDirtyBitmapMerge. */
export const bitmapMergeType = struct('BlockDirtyBitmapMerge', [m('node', 'str'), m('target', 'str'), m('bitmaps', { list: bitmapOrStr })]);

/** The merge's target and sources, looked up and checked as QEMU's block_dirty_bitmap_merge does. */
export function mergeOperands(q: BlockQmp, args: Record<string, unknown>): { target: BdrvDirtyBitmap; sources: BdrvDirtyBitmap[] } {
  const { node, bitmap: target } = lookupBitmap(q, args.node as string, args.target as string);
  target.check(BitmapCheck.DEFAULT);
  const sources = (args.bitmaps as Array<string | { node: string; name: string }>).map((s) =>
    typeof s === 'string' ? lookupDirtyBitmap(node, s) : lookupBitmap(q, s.node, s.name).bitmap,
  );
  return { target, sources };
}

/** The bitmap commands of `q`. */
export function bitmapCommands(q: BlockQmp): QmpCommand[] {
  return [
    {
      name: 'block-dirty-bitmap-add',
      args: { ...bitmapAddType, struct: 'block-dirty-bitmap-add' },
      run: (args) => addBitmap(q, args),
    },
    {
      name: 'block-dirty-bitmap-remove',
      args: nodeAndName('block-dirty-bitmap-remove'),
      run: async (args) => {
        const { node } = lookupBitmap(q, args.node as string, args.name as string);
        await removeDirtyBitmapWithStorage(node, args.name as string);
      },
    },
    {
      name: 'block-dirty-bitmap-clear',
      args: nodeAndName('block-dirty-bitmap-clear'),
      run: (args) => {
        const { node, bitmap } = lookupBitmap(q, args.node as string, args.name as string);
        bitmap.check(BitmapCheck.DEFAULT);
        clearDirtyBitmap(node, args.name as string);
      },
    },
    {
      name: 'block-dirty-bitmap-enable',
      args: nodeAndName('block-dirty-bitmap-enable'),
      run: (args) => {
        const { node } = lookupBitmap(q, args.node as string, args.name as string);
        enableDirtyBitmap(node, args.name as string);
      },
    },
    {
      name: 'block-dirty-bitmap-disable',
      args: nodeAndName('block-dirty-bitmap-disable'),
      run: (args) => {
        const { node } = lookupBitmap(q, args.node as string, args.name as string);
        disableDirtyBitmap(node, args.name as string);
      },
    },
    {
      name: 'block-dirty-bitmap-merge',
      args: { ...bitmapMergeType, struct: 'block-dirty-bitmap-merge' },
      run: (args) => {
        const { target, sources } = mergeOperands(q, args);
        target.merge(sources);
      },
    },
  ];
}

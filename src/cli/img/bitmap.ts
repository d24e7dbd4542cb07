/**
 * `img bitmap`: qemu-img 7.2's persistent-bitmap editor. The operations run
 * in the order given, on one read-write open of the image (backing chain not
 * opened); the first that fails ends the command with "Operation OP on
 * bitmap NAME failed: ..." and exit code 1. The format stores the result
 * when the image closes; a removal leaves the image at once (see
 * formats/qcow2/bitmap-store.ts).
 */
import {
  addDirtyBitmap,
  BitmapCheck,
  checkBitmapName,
  checkGranularity,
  defaultGranularity,
  disableDirtyBitmap,
  enableDirtyBitmap,
  findDirtyBitmap,
  lookupDirtyBitmap,
  removeDirtyBitmapWithStorage,
} from '../../core/dirty-bitmap.js';
import { BlockError } from '../../core/errors.js';
import type { BlockNode } from '../../core/node.js';
import { checkCanStoreBitmap } from '../../formats/qcow2/bitmap-store.js';
import { Qcow2Image } from '../../formats/qcow2/qcow2.js';
import { errHint, errText } from '../common.js';
import { COMMON_LONGS, Ctx, cvtnum, fail, parseOpts } from './context.js';
import { help } from './help.js';

type Action = { op: 'add' | 'remove' | 'clear' | 'enable' | 'disable' } | { op: 'merge'; source: string };

/** bdrv_can_store_new_dirty_bitmap: only qcow2 stores bitmaps. */
function checkCanStore(node: BlockNode, name: string, granularity: number): void {
  const inst = node.instance;
  if (!(inst instanceof Qcow2Image)) {
    throw new BlockError('ENOTSUP', `Can't store persistent bitmaps to ${node.nodeName}: Operation not supported`);
  }
  checkCanStoreBitmap(inst, name, granularity);
}

/** qmp_block_dirty_bitmap_add with persistent=on, as qemu-img calls it. */
export function addPersistent(node: BlockNode, name: string, granularity: number | undefined, disabled: boolean): void {
  if (name === '') throw new BlockError('EINVAL', 'Bitmap name cannot be empty');
  if (granularity !== undefined) checkGranularity(granularity);
  const g = granularity ?? defaultGranularity(node);
  checkCanStore(node, name, g);
  checkBitmapName(name);
  addDirtyBitmap(node, name, { granularity: g, disabled, persistent: true });
}

export async function cmdBitmap(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'b:f:F:g:h', [
    { name: 'add', hasArg: 0, val: 'add' },
    { name: 'remove', hasArg: 0, val: 'remove' },
    { name: 'clear', hasArg: 0, val: 'clear' },
    { name: 'enable', hasArg: 0, val: 'enable' },
    { name: 'disable', hasArg: 0, val: 'disable' },
    { name: 'merge', hasArg: 1, val: 'merge' },
    { name: 'granularity', hasArg: 1, val: 'g' },
    { name: 'source-file', hasArg: 1, val: 'b' },
    { name: 'source-format', hasArg: 1, val: 'F' },
    ...COMMON_LONGS,
  ], ctx);
  const actions: Action[] = [];
  let fmt: string | undefined;
  let srcFile: string | undefined;
  let srcFmt: string | undefined;
  let granularity = 0;
  let add = false;
  let addDisabled = false;
  let merge = false;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'b': srcFile = o.arg; break;
      case 'f': fmt = o.arg; break;
      case 'F': srcFmt = o.arg; break;
      case 'g': granularity = cvtnum('granularity', o.arg!, 0, Number.MAX_SAFE_INTEGER); break;
      case 'add': actions.push({ op: 'add' }); add = true; break;
      case 'remove': actions.push({ op: 'remove' }); break;
      case 'clear': actions.push({ op: 'clear' }); break;
      case 'enable': actions.push({ op: 'enable' }); break;
      case 'disable': actions.push({ op: 'disable' }); addDisabled = true; break;
      case 'merge': actions.push({ op: 'merge', source: o.arg! }); merge = true; break;
      default: break;
    }
  }
  if (actions.length === 0) fail('Need at least one of --add, --remove, --clear, --enable, --disable, or --merge');
  if (granularity && !add) fail('granularity only supported with --add');
  if (srcFmt !== undefined && srcFile === undefined) fail('-F only supported with -b');
  if (srcFile !== undefined && !merge) fail('Merge bitmap source file only supported with --merge');
  if (operands.length !== 2) fail('Expecting filename and bitmap name');
  const [filename, name] = operands as [string, string];
  const bb = await ctx.open(filename, fmt, { readOnly: false, noBacking: true });
  const node = bb.node;
  const srcNode = srcFile !== undefined ? (await ctx.open(srcFile, srcFmt, { readOnly: true, noBacking: true })).node : node;
  // qemu-img passes the granularity as a uint32 (0: none given).
  const g = granularity ? granularity % 2 ** 32 : undefined;
  for (const a of actions) {
    try {
      switch (a.op) {
        case 'add':
          addPersistent(node, name, g, addDisabled);
          break;
        case 'remove':
          await removeDirtyBitmapWithStorage(node, name);
          break;
        case 'clear':
          lookupDirtyBitmap(node, name).clear();
          break;
        case 'enable':
          enableDirtyBitmap(node, name);
          break;
        case 'disable':
          disableDirtyBitmap(node, name);
          break;
        case 'merge': {
          const dst = lookupDirtyBitmap(node, name);
          const src = findDirtyBitmap(srcNode, a.source);
          if (!src) throw new BlockError('ENOENT', `Dirty bitmap '${a.source}' not found`);
          src.check(BitmapCheck.ALLOW_RO);
          dst.merge([src]);
          break;
        }
      }
    } catch (e) {
      fail(`Operation ${a.op} on bitmap ${name} failed: ${errText(e)}`, 1, errHint(e));
    }
  }
  return 0;
}

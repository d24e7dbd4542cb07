/**
 * The blkdebug filter (QEMU 7.2's block/blkdebug.c): passes requests to its
 * `image` child, injects errors after debug events as its rules say, moves
 * between states, suspends requests at breakpoints, and can impose request
 * limits (align, max-transfer, ...) to exercise the generic layer.
 *
 * Opened as `blkdebug:CONFIG:IMAGE` (CONFIG may be empty), or with options
 * `config`, `image`, `inject-error`, `set-state`, `align`, `max-transfer`,
 * `opt-write-zero`, `max-write-zero`, `opt-discard`, `max-discard`,
 * `take-child-perms`, `unshare-child-perms`.
 */
import type { BlockDriver, BlockStatusResult, DriverInstance, ReqFlags } from '../core/driver.js';
import { ReqFlag, Status } from '../core/driver.js';
import type { BlockNode } from '../core/node.js';
import type { BdrvChild } from '../core/child.js';
import { BlockError, STRERROR, einval, toBlockError } from '../core/errors.js';
import { OptionReader, type BlockOptions, type OptionValue } from '../core/options.js';
import { Perm, ROLE_FILTERED_PRIMARY, defaultChildPerms, type PermMask } from '../core/permissions.js';
import { buildRules, parseConfigText } from './blkdebug-config.js';
import { BlkdebugState } from './blkdebug-events.js';

/** What blkdebug needs from its environment. */
export interface BlkdebugHost {
  /**
   * Reads a config file's text; throws a BlockError (ENOENT, EACCES) when
   * it cannot. Absent: config files cannot be read (the page has none).
   */
  readConfig?(path: string): Promise<string>;
}

const PERM_NAMES: Record<string, PermMask> = {
  'consistent-read': Perm.CONSISTENT_READ,
  write: Perm.WRITE,
  'write-unchanged': Perm.WRITE_UNCHANGED,
  resize: Perm.RESIZE,
  'graph-mod': Perm.GRAPH_MOD,
};

/** A BlockPermission list option (take-child-perms / unshare-child-perms). */
function permList(key: string, value: OptionValue): PermMask {
  if (value === undefined || value === null) return 0;
  const items = Array.isArray(value) ? value : typeof value === 'object' ? Object.values(value) : [value];
  let mask = 0;
  for (const item of items) {
    const bit = typeof item === 'string' ? PERM_NAMES[item] : undefined;
    if (bit === undefined) throw einval(`Parameter '${key}' does not accept value '${String(item)}'`);
    mask |= bit;
  }
  return mask;
}

/** QEMU's check of a limit option: below INT_MAX and a multiple of `align`. */
function checkLimit(name: string, value: number, align: number, powerOfTwo = false): void {
  if (!value) return;
  const bad = value >= 0x7fffffff || (powerOfTwo ? (value & (value - 1)) !== 0 : value % align !== 0);
  if (bad) throw einval(`Cannot meet constraints with ${name} ${value}`);
}

async function readConfigFile(host: BlkdebugHost, path: string): Promise<string> {
  try {
    if (!host.readConfig) throw new BlockError('ENOTSUP', STRERROR.ENOTSUP);
    return await host.readConfig(path);
  } catch (e) {
    const err = toBlockError(e);
    throw new BlockError(err.code, `Could not read blkdebug config file: ${STRERROR[err.code]}`, {}, { detail: path });
  }
}

/** The blkdebug driver, reading config files through `host`. */
export function createBlkdebugDriver(host: BlkdebugHost = {}): BlockDriver {
  return {
    name: 'blkdebug',
    kind: 'filter',
    protocolPrefixes: ['blkdebug:'],
    strongOptions: ['config', 'inject-error.', 'set-state.', 'align', 'max-transfer', 'opt-write-zero', 'max-write-zero', 'opt-discard', 'max-discard'],
    // blkdebug:CONFIG:IMAGE while nothing but the config file and the image shape the node.
    refreshFilename(node, fullOptions) {
      const image = node.children.find((c) => c.name === 'image')?.node;
      if (!image || image.exactFilename === '') return '';
      if (!fullOptions.every(([k]) => ['config', 'image', 'x-image', 'driver'].includes(k))) return '';
      const config = typeof node.options.config === 'string' ? node.options.config : '';
      return `blkdebug:${config}:${image.exactFilename}`;
    },
    parseFilename(filename: string): Record<string, unknown> {
      if (!filename.startsWith('blkdebug:')) return { 'x-image': filename };
      const rest = filename.slice('blkdebug:'.length);
      const colon = rest.indexOf(':');
      if (colon < 0) throw einval('blkdebug requires both config file and image path', {}, filename);
      return { ...(colon > 0 ? { config: rest.slice(0, colon) } : {}), 'x-image': rest.slice(colon + 1) };
    },
    open: (node, options) => openBlkdebug(host, node, options),
  };
}

/** blkdebug without config files (the browser's graph): rules come as options. */
export const blkdebugDriver: BlockDriver = createBlkdebugDriver();

async function openBlkdebug(host: BlkdebugHost, node: BlockNode, options: OptionReader): Promise<DriverInstance> {
  const config = options.string('config');
  const xImage = options.string('x-image');
  const align = options.size('align', 0);
  const maxTransfer = options.size('max-transfer', 0);
  const optWriteZero = options.size('opt-write-zero', 0);
  const maxWriteZero = options.size('max-write-zero', 0);
  const optDiscard = options.size('opt-discard', 0);
  const maxDiscard = options.size('max-discard', 0);
  const fileSections = config !== undefined ? parseConfigText(await readConfigFile(host, config)) : [];
  const state = new BlkdebugState(buildRules(fileSections, { inject: options.raw('inject-error'), setState: options.raw('set-state') }));
  const takePerms = permList('take-child-perms', options.raw('take-child-perms'));
  const unsharePerms = permList('unshare-child-perms', options.raw('unshare-child-perms'));

  // A filename (from blkdebug:CONFIG:IMAGE) names the image's file; image.* options add to it.
  let imageRef = options.child('image');
  if (xImage !== undefined && typeof imageRef !== 'string') imageRef = { ...(imageRef ?? {}), filename: xImage } as BlockOptions;
  // QEMU names a missing child by its own key ("image"), whatever the path to this node.
  const childOptions = new OptionReader(imageRef === undefined ? {} : { image: imageRef }, options.owner);
  const file = (await node.openChild(childOptions, 'image', ROLE_FILTERED_PRIMARY))!;
  try {
    const childAlign = file.node.limits.requestAlignment;
    checkLimit('align', align, 1, true);
    const base = Math.max(align, childAlign);
    checkLimit('max-transfer', maxTransfer, base);
    checkLimit('opt-write-zero', optWriteZero, base);
    checkLimit('max-write-zero', maxWriteZero, Math.max(optWriteZero, base));
    checkLimit('opt-discard', optDiscard, base);
    checkLimit('max-discard', maxDiscard, Math.max(optDiscard, base));
  } catch (e) {
    await node.graph.detachChild(file);
    throw e;
  }
  const inst = blkdebugInstance(node, file, state, {
    refreshLimits(l) {
      if (align) l.requestAlignment = align;
      if (maxTransfer) l.maxTransfer = maxTransfer;
      if (optWriteZero) l.pwriteZeroesAlignment = optWriteZero;
      if (maxWriteZero) l.maxPwriteZeroes = maxWriteZero;
      if (optDiscard) l.pdiscardAlignment = optDiscard;
      if (maxDiscard) l.maxPdiscard = maxDiscard;
    },
    childPerm(_child, role, perm, shared) {
      const p = defaultChildPerms(role, perm, shared, !node.readOnly);
      return { perm: p.perm | takePerms, shared: p.shared & ~unsharePerms };
    },
  });
  // Rules on the `none` event act once, at open (QEMU announces BLKDBG_NONE there).
  state.event('none');
  return inst;
}

function blkdebugInstance(node: BlockNode, file: BdrvChild, state: BlkdebugState, extra: Pick<DriverInstance, 'refreshLimits' | 'childPerm'>): DriverInstance {
  const childWriteFlags = () => file.node.instance.supportedWriteFlags ?? 0;
  const childZeroFlags = () => file.node.instance.supportedZeroFlags ?? 0;
  return {
    ...extra,
    debug: state,
    getLength: () => file.length,
    get supportedWriteFlags(): ReqFlags {
      return ReqFlag.WRITE_UNCHANGED | (childWriteFlags() & ReqFlag.FUA);
    },
    get supportedZeroFlags(): ReqFlags {
      return ReqFlag.WRITE_UNCHANGED | (childZeroFlags() & (ReqFlag.FUA | ReqFlag.MAY_UNMAP | ReqFlag.NO_FALLBACK));
    },
    preadv(offset, bytes, buf, flags) {
      const err = state.check(offset, bytes, 'read');
      return err ?? file.preadv(offset, bytes, buf, flags);
    },
    pwritev(offset, bytes, buf, flags) {
      const err = state.check(offset, bytes, 'write');
      return err ?? file.pwritev(offset, bytes, buf, flags);
    },
    async pwriteZeroes(offset, bytes, flags) {
      // Zero writes smaller than the preferred alignment fall back to buffers, to exercise that path.
      const align = Math.max(node.limits.requestAlignment, node.limits.pwriteZeroesAlignment);
      if (bytes < align) throw new BlockError('ENOTSUP', STRERROR.ENOTSUP);
      await state.check(offset, bytes, 'write-zeroes');
      await file.pwriteZeroes(offset, bytes, flags);
    },
    async pdiscard(offset, bytes) {
      if (bytes < node.limits.requestAlignment) throw new BlockError('ENOTSUP', STRERROR.ENOTSUP);
      await state.check(offset, bytes, 'discard');
      await file.pdiscard(offset, bytes);
    },
    async flushToDisk() {
      await state.check(0, 0, 'flush');
    },
    async blockStatus(wantZero, offset, bytes): Promise<BlockStatusResult> {
      await state.check(offset, bytes, 'block-status');
      const below = await file.blockStatus(wantZero, offset, bytes);
      return { ...below, status: below.status & ~Status.EOF };
    },
    // QEMU does not look through a driver with a protocol name: "disk size: unavailable".
    async getAllocatedFileSize(): Promise<number> {
      throw new BlockError('ENOTSUP', STRERROR.ENOTSUP);
    },
    async reopenPrepare() {},
    async close() {
      state.close();
    },
  };
}

/**
 * `img info`: image details, human and JSON.
 */
import { BlockBackend } from '../../core/backend.js';
import { allocatedSize, fullBackingFilename, snapshotJson } from '../../core/image-facts.js';
import type { BlockNode } from '../../core/node.js';
import { toQemuJson, type JsonValue } from '../format.js';
import { refreshedFilename } from '../../core/filename.js';
import { driverInfo, formatNode } from '../common.js';
import { dumpImageInfo, type ImageInfo } from '../info-dump.js';
import { errorExit, fail, Ctx, parseOpts, outputFormat, COMMON_LONGS } from './context.js';
import { help } from './help.js';

/**
 * The generic info of a node as QEMU's bdrv_get_info finds it: its driver's,
 * or through a filter without any, the filtered node's; null when the driver
 * has none to give (ENOTSUP: no cluster size, no dirty flag).
 */
function genericInfo(node: BlockNode): ReturnType<typeof driverInfo> {
  let n = node;
  while (!n.instance.getInfo && n.driver.kind === 'filter' && n.filtered) n = n.filtered.node;
  return driverInfo(n);
}

/**
 * Info of the top node as QEMU's bdrv_query_image_info gives it: the top
 * node's refreshed name and driver name (a filter's own, e.g. blkdebug), its
 * allocated size, generic info (through filters), backing file and format
 * specific part; snapshots from the node that holds them below filters.
 */
async function imageInfo(bb: BlockBackend, filename: string): Promise<ImageInfo> {
  const top = bb.node;
  const inst = top.instance;
  const info: ImageInfo = { 'virtual-size': top.length, filename: refreshedFilename(top) || filename, format: top.driver.name };
  const gi = genericInfo(top);
  if (gi?.clusterSize) info['cluster-size'] = gi.clusterSize;
  if (inst.isEncrypted?.()) info.encrypted = true;
  const actual = await allocatedSize(top);
  if (actual !== undefined) info['actual-size'] = actual;
  if (gi !== null) info['dirty-flag'] = gi?.dirty ?? false;
  const bf = inst.backingFile?.();
  if (bf) {
    info['backing-filename'] = bf.filename;
    const full = fullBackingFilename(top, bf.filename);
    if (full !== undefined) info['full-backing-filename'] = full;
    if (bf.format) info['backing-filename-format'] = bf.format;
  }
  // bdrv_snapshot_list falls back to the filtered node.
  const snaps = formatNode(top).instance.snapshotList?.() ?? [];
  if (snaps.length > 0) {
    info.snapshots = snaps.map(snapshotJson);
  }
  const spec = inst.getSpecificInfo?.();
  if (spec) info['format-specific'] = { type: spec.type, data: spec.data };
  return info;
}

/** Orders ImageInfo keys as QEMU's QAPI visitor inserts them, for JSON. */
function infoJson(info: ImageInfo): JsonValue {
  const order = ['filename', 'format', 'dirty-flag', 'actual-size', 'virtual-size', 'cluster-size', 'encrypted', 'compressed', 'backing-filename', 'full-backing-filename', 'backing-filename-format', 'snapshots', 'backing-image', 'format-specific'];
  const o: Record<string, JsonValue> = {};
  for (const k of order) {
    const v = (info as unknown as Record<string, JsonValue | undefined>)[k];
    if (v !== undefined) o[k] = v;
  }
  return o;
}

// ---------------------------------------------------------------------------
// info

export async function cmdInfo(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'f:hU', [
    { name: 'format', hasArg: 1, val: 'f' },
    { name: 'output', hasArg: 1, val: 'output' },
    { name: 'backing-chain', hasArg: 0, val: 'chain' },
    ...COMMON_LONGS,
  ], ctx);
  let fmt: string | undefined;
  let output = 'human';
  let chain = false;
  let forceShare = false;
  for (const o of opts) {
    if (o.opt === 'h') return help(ctx);
    if (o.opt === 'f') fmt = o.arg;
    else if (o.opt === 'output') output = o.arg!;
    else if (o.opt === 'chain') chain = true;
    else if (o.opt === 'U') forceShare = true;
  }
  if (operands.length !== 1) errorExit('Expecting one image file name');
  const of = outputFormat(output);
  const list: ImageInfo[] = [];
  const seen = new Set<string>();
  let filename: string | undefined = operands[0]!;
  const imageOpts = ctx.imageOpts;
  try {
    while (filename !== undefined) {
      if (seen.has(filename)) fail(`Backing file '${filename}' creates an infinite loop.`);
      seen.add(filename);
      const bb = await ctx.open(filename, fmt, { readOnly: true, noBacking: true, forceShare, noIo: true });
      const info = await imageInfo(bb, filename);
      list.push(info);
      await bb.close();
      if (!chain) break;
      filename = info['full-backing-filename'];
      fmt = info['backing-filename-format'];
      // Only the first image is an option string; backing files are plain names.
      ctx.imageOpts = false;
    }
  } finally {
    ctx.imageOpts = imageOpts;
  }
  if (of === 'json') {
    ctx.out(toQemuJson(chain ? list.map(infoJson) : infoJson(list[0]!)) + '\n');
  } else {
    ctx.out(list.map(dumpImageInfo).join('\n'));
  }
  return 0;
}

/**
 * `img info`: image details, human and JSON.
 */
import { BlockBackend } from '../../core/backend.js';
import { allocatedSize, fullBackingFilename, snapshotJson } from '../../core/image-facts.js';
import type { BlockNode } from '../../core/node.js';
import { toQemuJson, type JsonValue } from '../format.js';
import { qdictJsonNested, type QdictValue } from '../../core/qemu-json.js';
import { driverInfo, formatNode } from '../common.js';
import { dumpImageInfo, type ImageInfo } from '../info-dump.js';
import { errorExit, fail, Ctx, parseOpts, outputFormat, COMMON_LONGS, imageFilename } from './context.js';
import { help } from './help.js';

/** Options that name what a node is, by driver (QEMU's strong runtime options), besides driver and filename. */
const STRONG_OPTIONS: Record<string, readonly string[]> = {
  throttle: ['throttle-group'],
  'copy-on-read': ['bottom'],
  raw: ['offset', 'size'],
  qcow2: ['encrypt.key-secret'],
  luks: ['key-secret'],
};

/** A node option by dotted key, flat (`encrypt.key-secret`) or nested (`encrypt: {key-secret}`). */
function optionAt(options: Record<string, unknown>, key: string): unknown {
  if (key in options) return options[key];
  const dot = key.indexOf('.');
  if (dot < 0) return undefined;
  const sub = options[key.slice(0, dot)];
  return sub !== null && typeof sub === 'object' ? optionAt(sub as Record<string, unknown>, key.slice(dot + 1)) : undefined;
}

/** Whether a format node was opened with a strong option its file name cannot say (an encryption key secret). */
function hasStrongOption(node: BlockNode): boolean {
  return node.driver.name !== 'raw' && (STRONG_OPTIONS[node.driver.name] ?? []).some((k) => optionAt(node.options, k) !== undefined);
}

/**
 * A node's options as QEMU rebuilds them for a `json:` filename
 * (bdrv_refresh_filename's full_open_options): driver, a protocol's
 * filename, the driver's strong options as given, and every child but the
 * backing file, each the same way.
 */
function fullOpenOptions(node: BlockNode): QdictValue {
  const entries: Array<[string, QdictValue]> = [['driver', node.driver.name]];
  for (const key of [...(node.driver.kind === 'protocol' ? ['filename'] : []), ...(STRONG_OPTIONS[node.driver.name] ?? [])]) {
    const v = optionAt(node.options, key);
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') entries.push([key, v]);
  }
  for (const c of node.children) if (c.name !== 'backing') entries.push([c.name, fullOpenOptions(c.node)]);
  return { entries };
}

/**
 * Info of a filter without generic info of its own (throttle, compress,
 * copy-on-read), as QEMU gives it: a `json:` filename of the filter's
 * options, the filter's name as format, the cluster size and dirty flag of
 * the first node below with generic info, no format-specific part.
 */
async function filterImageInfo(top: BlockNode): Promise<ImageInfo> {
  const opts = fullOpenOptions(top) as { entries: ReadonlyArray<readonly [string, QdictValue]> };
  const info: ImageInfo = { 'virtual-size': top.length, filename: `json:${qdictJsonNested(opts.entries)}`, format: top.driver.name };
  let n = top;
  while (!n.instance.getInfo && n.driver.kind === 'filter' && n.filtered) n = n.filtered.node;
  const gi = driverInfo(n);
  if (gi?.clusterSize) info['cluster-size'] = gi.clusterSize;
  const actual = await allocatedSize(top);
  if (actual !== undefined) info['actual-size'] = actual;
  if (gi !== null) info['dirty-flag'] = gi?.dirty ?? false;
  return info;
}

async function imageInfo(ctx: Ctx, bb: BlockBackend, filename: string): Promise<ImageInfo> {
  if (bb.node.driver.kind === 'filter' && !bb.node.instance.getInfo) return filterImageInfo(bb.node);
  const node = formatNode(bb.node);
  const inst = node.instance;
  // QEMU's bdrv_refresh_filename: a key secret makes the name a json: one.
  const name = hasStrongOption(node) ? `json:${qdictJsonNested((fullOpenOptions(node) as { entries: ReadonlyArray<readonly [string, QdictValue]> }).entries)}` : imageFilename(ctx, node, filename);
  const info: ImageInfo = { 'virtual-size': node.length, filename: name, format: node.driver.name };
  const gi = driverInfo(node);
  if (gi?.clusterSize) info['cluster-size'] = gi.clusterSize;
  if (inst.isEncrypted?.()) info.encrypted = true;
  const actual = await allocatedSize(node);
  if (actual !== undefined) info['actual-size'] = actual;
  if (gi !== null) info['dirty-flag'] = gi?.dirty ?? false;
  const bf = inst.backingFile?.();
  if (bf) {
    info['backing-filename'] = bf.filename;
    const full = fullBackingFilename(node, bf.filename);
    if (full !== undefined) info['full-backing-filename'] = full;
    if (bf.format) info['backing-filename-format'] = bf.format;
  }
  const snaps = inst.snapshotList?.() ?? [];
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
      const info = await imageInfo(ctx, bb, filename);
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

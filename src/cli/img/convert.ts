/**
 * `img convert`.
 */
import { Perm } from '../../core/permissions.js';
import { BlockBackend } from '../../core/backend.js';
import { createImage } from '../../core/create.js';
import { isValidOptionList } from '../qemu-opts.js';
import { loadSnapshotParam, parseSnapshotParam, type SnapshotParam } from './snapshot-param.js';
import { CliExit, driverInfo, errHint, errText, formatNode, parseCacheMode, supportsCompressed } from '../common.js';
import { IO_BUF_SIZE, fail, Ctx, parseOpts, cvtnum, COMMON_LONGS, Progress } from './context.js';
import { creatableDriver, printOptionHelp, hasHelp, buildCreateOpts, toCreateRecord } from './create-options.js';
import { help } from './help.js';
import { zeroModuleWithPoolSync } from '../../wasm/hot-paths.js';
import { convertCopy, READ_AHEAD, WRITE_DEPTH } from './convert-tasks.js';
import { copyWithoutOptimizer } from './convert-jit.js';
import { addPersistent } from './bitmap.js';
import { lookupDirtyBitmap, removeDirtyBitmap, type BdrvDirtyBitmap } from '../../core/dirty-bitmap.js';
import type { BlockNode } from '../../core/node.js';

// convert

/** qemu-img's convert_check_bitmaps: one source that stores bitmaps, none of them inconsistent unless skipped. */
function checkBitmaps(srcs: readonly BlockBackend[], skipBroken: boolean): BdrvDirtyBitmap[] {
  if (srcs.length > 1) fail('Copying bitmaps only possible with single source');
  const node = formatNode(srcs[0]!.node);
  if (!node.instance.supportsPersistentBitmaps?.()) fail('Source lacks bitmap support');
  const persistent = node.dirtyBitmaps.filter((bm) => bm.persistent);
  // QEMU lists a node's bitmaps newest first.
  for (const bm of [...persistent].reverse()) {
    if (!skipBroken && bm.inconsistent) {
      fail(`Cannot copy inconsistent bitmap '${bm.name}'`, 1, "Try --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to delete it\n");
    }
  }
  return persistent;
}

/** qemu-img's convert_copy_bitmaps: each persistent bitmap added to the target (same granularity and state) and merged in. */
function copyBitmaps(ctx: Ctx, list: readonly BdrvDirtyBitmap[], target: BlockNode, skipBroken: boolean): void {
  // Warnings in QEMU's order (newest first); the bitmaps are added oldest first, which
  // leaves the target's bitmap directory in the order QEMU's head insertions give.
  if (skipBroken) for (const bm of [...list].reverse()) if (bm.inconsistent) ctx.warn(`Skipping inconsistent bitmap '${bm.name}'`);
  for (const bm of list) {
    if (skipBroken && bm.inconsistent) continue;
    try {
      addPersistent(target, bm.name, bm.granularity, !bm.enabled);
    } catch (e) {
      fail(`Failed to create bitmap ${bm.name}: ${errText(e)}`);
    }
    try {
      lookupDirtyBitmap(target, bm.name).merge([bm]);
    } catch (e) {
      removeDirtyBitmap(target, bm.name);
      fail(`Failed to populate bitmap ${bm.name}: ${errText(e)}`);
    }
  }
}

const CONCAT_BACKING = 'Having a backing file for the target makes no sense when concatenating multiple input images';

export async function cmdConvert(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:', [
    { name: 'target-image-opts', hasArg: 0, val: 'tio' },
    { name: 'salvage', hasArg: 0, val: 'salvage' },
    { name: 'target-is-zero', hasArg: 0, val: 'tiz' },
    { name: 'bitmaps', hasArg: 0, val: 'bitmaps' },
    { name: 'skip-broken-bitmaps', hasArg: 0, val: 'skipbb' },
    ...COMMON_LONGS,
  ], ctx);
  let fmt: string | undefined;
  let outFmt: string | undefined;
  let outBase: string | undefined;
  let backingFmt: string | undefined;
  let compress = false;
  const options: string[] = [];
  let minSparse = 8 * 512;
  let progress = false;
  let quiet = false;
  let skipCreate = false;
  let targetIsZero = false;
  let forceShare = false;
  let explicitMinSparse = false;
  let copyRange = false;
  let salvage = false;
  let bitmaps = false;
  let skipBrokenBitmaps = false;
  let snapshot: SnapshotParam | undefined;
  let srcCache = 'writeback';
  let targetImageOpts = false;
  let rateLimit = 0;
  // qemu-img convert writes with cache=unsafe unless told otherwise (no flushes).
  let targetCache = 'unsafe';
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'O': outFmt = o.arg; break;
      case 'B': outBase = o.arg; break;
      case 'F': backingFmt = o.arg; break;
      case 'c': compress = true; break;
      case 'o':
        if (!isValidOptionList(o.arg!)) fail(`Invalid option list: ${o.arg}`);
        options.push(o.arg!);
        break;
      case 'l': snapshot = parseSnapshotParam(ctx, o.arg!); break;
      case 'S': {
        const v = cvtnum('buffer size for sparse output', o.arg!);
        if (v % 512 || v / 512 > 32768) {
          fail('Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to 16777216. Select 0 to disable sparse detection (fully allocates output).');
        }
        minSparse = v;
        explicitMinSparse = true;
        break;
      }
      case 'C': copyRange = true; break;
      case 'salvage': salvage = true; break;
      case 'p': progress = true; break;
      case 'q': quiet = true; break;
      case 'n': skipCreate = true; break;
      case 'm': {
        const n = Number(o.arg);
        if (!/^[0-9]+$/.test(o.arg!) || n < 1 || n > 16) fail('Invalid number of coroutines. Allowed number of coroutines is between 1 and 16');
        break;
      }
      case 'r': rateLimit = cvtnum('rate limit', o.arg!); break;
      case 't': targetCache = o.arg!; break;
      case 'T': srcCache = o.arg!; break;
      case 'U': forceShare = true; break;
      case 'tiz': targetIsZero = true; break;
      case 'bitmaps': bitmaps = true; break;
      case 'tio': targetImageOpts = true; break;
      case 'skipbb': skipBrokenBitmaps = true; break;
      default: break;
    }
  }
  // qemu-img's checks of the option combinations, in its order.
  if (skipBrokenBitmaps && !bitmaps) fail('Use of --skip-broken-bitmaps requires --bitmaps');
  if (compress && copyRange) fail('Cannot enable copy offloading when -c is used');
  if (explicitMinSparse && copyRange) fail('Cannot enable copy offloading when -S is used');
  if (copyRange && salvage) fail('Cannot use copy offloading in salvaging mode');
  if (targetImageOpts && !skipCreate) fail('--target-image-opts requires use of -n flag');
  if (quiet) progress = false;
  // Convert's read buffers in flight at most: READ_AHEAD reads queued + WRITE_DEPTH writes + one.
  const wz = zeroModuleWithPoolSync(READ_AHEAD + WRITE_DEPTH + 1, IO_BUF_SIZE);
  if (skipCreate && options.length > 0) fail('-o has no effect when skipping image creation');
  if (targetIsZero && !skipCreate) fail('--target-is-zero requires use of -n flag');
  const srcNames = operands.slice(0, -1);
  const outFilename = operands.length >= 2 ? operands[operands.length - 1]! : undefined;
  if (options.some(hasHelp)) return printOptionHelp(ctx, outFmt ?? 'raw', outFilename);
  if (!outFilename) fail('Must specify image file name');
  if (!parseCacheMode(srcCache)) fail(`Invalid source cache option: ${srcCache}`);
  const prog = new Progress(ctx, progress, 1.0);

  const srcs: BlockBackend[] = [];
  // Sources share only reads (QEMU's BDRV_O_NO_SHARE): nobody may write them during the copy.
  const srcShared = Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED;
  for (const name of srcNames) srcs.push(await ctx.open(name, fmt, { readOnly: true, forceShare, cache: srcCache, shared: srcShared }));
  const sizes = srcs.map((b) => b.length);
  const total = sizes.reduce((a, b) => a + b, 0);
  if (snapshot) {
    if (snapshot.byIdOrName !== undefined && srcs.length > 1) fail('No support for concatenating multiple snapshot');
    await loadSnapshotParam(srcs[0]!.node, snapshot);
  }
  const srcBitmaps = bitmaps ? checkBitmaps(srcs, skipBrokenBitmaps) : undefined;

  const targetFmt = outFmt ?? 'raw';
  // The new target opens with the key secrets it was created with (QEMU's img_add_key_secrets).
  const keySecrets: Record<string, string> = {};
  if (!skipCreate) {
    creatableDriver(ctx, targetFmt);
    let built;
    try {
      built = buildCreateOpts(ctx, targetFmt, outFilename, options);
    } catch (e) {
      // convert prints option errors without the file name (create prefixes it).
      const lead = `${outFilename}: `;
      if (e instanceof CliExit && e.message.startsWith(lead)) fail(e.message.slice(lead.length), e.exitCode, e.hint);
      throw e;
    }
    const { specs, values } = built;
    values.set('size', String(total));
    if (outBase !== undefined) {
      if (!specs.some((s) => s.name === 'backing_file')) fail(`Backing file not supported for file format '${targetFmt}'`);
      values.set('backing_file', outBase);
      if (backingFmt) values.set('backing_fmt', backingFmt);
    }
    if (srcs.length > 1 && values.has('backing_file')) fail(CONCAT_BACKING);
    // -B or -o backing_file: the format must be given too (-F or -o backing_fmt), as in QEMU 7.2.
    if (values.has('backing_file') && !values.has('backing_fmt')) fail('Use of backing file requires explicit backing format');
    if (values.has('backing_file') && outBase === undefined) {
      outBase = values.get('backing_file');
    }
    for (const k of ['key-secret', 'encrypt.key-secret']) {
      const v = values.get(k);
      if (v !== undefined) keySecrets[k] = v;
    }
    const rec = toCreateRecord(values);
    rec['size'] = total;
    try {
      await createImage(ctx.graph, targetFmt, outFilename, rec);
    } catch (e) {
      fail(`${outFilename}: error while converting ${targetFmt}: ${errText(e)}`, 1, errHint(e));
    }
  }
  if (skipCreate && srcs.length > 1 && outBase !== undefined) fail(CONCAT_BACKING);
  // As qemu-img, the target's cache mode is read only now (a new target exists already).
  if (!parseCacheMode(targetCache)) fail(`Invalid cache option: ${targetCache}`);
  // --target-image-opts: the target name is an option string (sources keep --image-opts).
  const sourceImageOpts = ctx.imageOpts;
  ctx.imageOpts = targetImageOpts;
  let target: BlockBackend;
  try {
    target = await ctx.open(outFilename, skipCreate ? outFmt : targetFmt, { readOnly: false, cache: targetCache, extra: keySecrets });
  } finally {
    ctx.imageOpts = sourceImageOpts;
  }
  const tnode = formatNode(target.node);
  if (srcBitmaps && !tnode.instance.supportsPersistentBitmaps?.()) fail(`Format driver '${tnode.driver.name}' does not support bitmaps`);
  // A target that takes only compressed data (a streamOptimized vmdk) is written compressed, as qemu-img does.
  if (!compress && driverInfo(tnode)?.needsCompressedWrites) compress = true;
  if (compress && !supportsCompressed(tnode)) {
    fail('Compression not supported for this file format');
  }
  // qemu-img compares whole sectors, in its words.
  if (skipCreate && Math.ceil(target.length / 512) < Math.ceil(total / 512)) {
    fail('output file is smaller than input file');
  }
  // As in QEMU, only -B / -o backing_file count: a -n target's own backing file does not.
  const targetHasBacking = outBase !== undefined;
  const zeroInit = targetIsZero || (minSparse !== 0 && !skipCreate && !targetHasBacking && (tnode.instance.hasZeroInit?.() ?? false));
  const clusterSize = driverInfo(tnode)?.clusterSize ?? 0;
  const chunkSize = compress && clusterSize ? clusterSize : IO_BUF_SIZE;

  prog.print(0, 100);
  const optimizerBack = copyWithoutOptimizer(ctx.graph.listNodes());
  try {
    await convertCopy({
      srcs, sizes, target, chunkSize, compress, compressCluster: compress ? clusterSize : 0, minSparse, zeroInit, targetHasBacking, wz, prog: progress ? prog : null, rateLimit,
      inOrder: tnode.driver.placesInWriteOrder === true, copyRange,
    });
  } finally {
    optimizerBack();
  }
  if (srcBitmaps) copyBitmaps(ctx, srcBitmaps, tnode, skipBrokenBitmaps);
  prog.print(100, 0);
  prog.end();
  return 0;
}

/**
 * `img convert`.
 */
import { BlockBackend } from '../../core/backend.js';
import { createImage } from '../../core/create.js';
import { isValidOptionList } from '../qemu-opts.js';
import { CliExit, driverInfo, errText, formatNode, parseCacheMode, supportsCompressed } from '../common.js';
import { IO_BUF_SIZE, fail, Ctx, parseOpts, cvtnum, COMMON_LONGS, Progress } from './context.js';
import { printOptionHelp, hasHelp, buildCreateOpts, toCreateRecord } from './create-options.js';
import { help } from './help.js';
import { zeroModuleWithPoolSync } from '../../wasm/hot-paths.js';
import { convertCopy } from './convert-tasks.js';

// convert

const CONCAT_BACKING = 'Having a backing file for the target makes no sense when concatenating multiple input images';

export async function cmdConvert(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:', [
    { name: 'target-image-opts', hasArg: 0, val: 'tio' },
    { name: 'salvage', hasArg: 0, val: 'salvage' },
    { name: 'target-is-zero', hasArg: 0, val: 'tiz' },
    { name: 'bitmaps', hasArg: 0, val: 'bitmaps' },
    { name: 'skip-broken-bitmaps', hasArg: 0, val: 'skipbb' },
    ...COMMON_LONGS,
  ]);
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
      case 'l': fail('Snapshots are not supported yet');
      case 'S': {
        const v = cvtnum('buffer size for sparse output', o.arg!);
        if (v % 512 || v / 512 > 32768) {
          fail('Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to 16777216. Select 0 to disable sparse detection (fully allocates output).');
        }
        minSparse = v;
        break;
      }
      case 'p': progress = true; break;
      case 'q': quiet = true; break;
      case 'n': skipCreate = true; break;
      case 'm': {
        const n = Number(o.arg);
        if (!/^[0-9]+$/.test(o.arg!) || n < 1 || n > 16) fail('Invalid number of coroutines. Allowed number of coroutines is between 1 and 16');
        break;
      }
      case 'r': cvtnum('rate limit', o.arg!); break;
      case 't':
        if (!parseCacheMode(o.arg!)) fail(`Invalid cache option: ${o.arg}`);
        targetCache = o.arg!;
        break;
      case 'T':
        if (!parseCacheMode(o.arg!)) fail(`Invalid source cache option: ${o.arg}`);
        break;
      case 'U': forceShare = true; break;
      case 'tiz': targetIsZero = true; break;
      case 'bitmaps': fail('Converting bitmaps is not supported yet');
      default: break;
    }
  }
  if (quiet) progress = false;
  // Convert's read buffers in flight at most: WINDOW reads queued + WRITE_DEPTH writes + one.
  const wz = zeroModuleWithPoolSync(8 + 4 + 1, IO_BUF_SIZE);
  if (targetIsZero && !skipCreate) fail('--target-is-zero requires use of -n flag');
  const srcNames = operands.slice(0, -1);
  const outFilename = operands.length >= 2 ? operands[operands.length - 1]! : undefined;
  if (options.some(hasHelp)) return printOptionHelp(ctx, outFmt ?? 'raw', outFilename);
  if (!outFilename) fail('Must specify image file name');
  if (skipCreate && options.length > 0) fail('-o has no effect when skipping image creation');
  const prog = new Progress(ctx, progress, 1.0);

  const srcs: BlockBackend[] = [];
  for (const name of srcNames) srcs.push(await ctx.open(name, fmt, { readOnly: true, forceShare }));
  const sizes = srcs.map((b) => b.length);
  const total = sizes.reduce((a, b) => a + b, 0);

  const targetFmt = outFmt ?? 'raw';
  if (!skipCreate) {
    let drv;
    try {
      drv = ctx.graph.getDriver(targetFmt);
    } catch {
      fail(`Unknown file format '${targetFmt}'`);
    }
    if (!drv.create) fail(`Format driver '${targetFmt}' does not support image creation`);
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
    const rec = toCreateRecord(values);
    rec['size'] = total;
    try {
      await createImage(ctx.graph, targetFmt, outFilename, rec);
    } catch (e) {
      fail(`${outFilename}: error while converting ${targetFmt}: ${errText(e)}`);
    }
  }
  if (skipCreate && srcs.length > 1 && outBase !== undefined) fail(CONCAT_BACKING);
  const target = await ctx.open(outFilename, skipCreate ? outFmt : targetFmt, { readOnly: false, cache: targetCache });
  const tnode = formatNode(target.node);
  if (compress && !supportsCompressed(tnode)) {
    fail('Compression not supported for this file format');
  }
  if (skipCreate && target.length < total) {
    fail(`Image is too small for the given data (${target.length} < ${total})`);
  }
  // As in QEMU, only -B / -o backing_file count: a -n target's own backing file does not.
  const targetHasBacking = outBase !== undefined;
  const zeroInit = targetIsZero || (minSparse !== 0 && !skipCreate && !targetHasBacking && (tnode.instance.hasZeroInit?.() ?? false));
  const clusterSize = driverInfo(tnode)?.clusterSize ?? 0;
  const chunkSize = compress && clusterSize ? clusterSize : IO_BUF_SIZE;

  prog.print(0, 100);
  await convertCopy({
    srcs, sizes, target, chunkSize, compress, compressCluster: compress ? clusterSize : 0, minSparse, zeroInit, targetHasBacking, wz, prog: progress ? prog : null,
  });
  prog.print(100, 0);
  prog.end();
  return 0;
}

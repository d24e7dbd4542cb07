/**
 * `img convert`.
 */
import { Buffer } from 'node:buffer';
import { BlockBackend } from '../../core/backend.js';
import { BlockError } from '../../core/errors.js';
import { ReqFlag } from '../../core/driver.js';
import { createImage } from '../../core/create.js';
import { isZeroBuffer, zeroRunLength } from '../../core/zero-detect.js';
import { isValidOptionList } from '../qemu-opts.js';
import { CliExit, driverInfo, errHint, errText, formatNode, strerror, parseCacheMode, supportsCompressed } from '../common.js';
import { IO_BUF_SIZE, fail, Ctx, parseOpts, cvtnum, COMMON_LONGS, Progress } from './context.js';
import { creatableDriver, printOptionHelp, hasHelp, buildCreateOpts, toCreateRecord } from './create-options.js';
import { help } from './help.js';
import { zeroModuleWithPoolSync } from '../../wasm/hot-paths.js';
import { convertTasks, readSources, type ConvertTask } from './convert-tasks.js';

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
  let explicitMinSparse = false;
  let copyRange = false;
  let salvage = false;
  let bitmaps = false;
  let skipBrokenBitmaps = false;
  let srcCache = 'writeback';
  let targetImageOpts = false;
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
      case 'r': cvtnum('rate limit', o.arg!); break;
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
  // Convert's read buffers in flight at most: WINDOW reads queued + WRITE_DEPTH writes + one.
  const wz = zeroModuleWithPoolSync(8 + 4 + 1, IO_BUF_SIZE);
  if (skipCreate && options.length > 0) fail('-o has no effect when skipping image creation');
  if (targetIsZero && !skipCreate) fail('--target-is-zero requires use of -n flag');
  const srcNames = operands.slice(0, -1);
  const outFilename = operands.length >= 2 ? operands[operands.length - 1]! : undefined;
  if (options.some(hasHelp)) return printOptionHelp(ctx, outFmt ?? 'raw', outFilename);
  if (!outFilename) fail('Must specify image file name');
  if (!parseCacheMode(srcCache)) fail(`Invalid source cache option: ${srcCache}`);
  if (bitmaps) fail('Converting bitmaps is not supported yet');
  const prog = new Progress(ctx, progress, 1.0);

  const srcs: BlockBackend[] = [];
  for (const name of srcNames) srcs.push(await ctx.open(name, fmt, { readOnly: true, forceShare, cache: srcCache }));
  const sizes = srcs.map((b) => b.length);
  const total = sizes.reduce((a, b) => a + b, 0);

  const targetFmt = outFmt ?? 'raw';
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
    target = await ctx.open(outFilename, skipCreate ? outFmt : targetFmt, { readOnly: false, cache: targetCache });
  } finally {
    ctx.imageOpts = sourceImageOpts;
  }
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

  const tasks = () => convertTasks({ srcs, sizes, chunkSize, compressCluster: compress ? clusterSize : 0, fullyAllocate: minSparse === 0, targetHasBacking });
  // Progress counts the bytes that will be copied as data (QEMU's allocated_sectors).
  let allocatedTotal = 0;
  if (progress) {
    for await (const t of tasks()) if (t.kind === 'data' || (minSparse === 0 && t.kind === 'zero')) allocatedTotal += t.length;
  }

  let done = 0;
  prog.print(0, 100);
  const writeRange = async (t: ConvertTask, buf: Uint8Array | null) => {
    if (t.kind === 'backing') return;
    if (t.kind === 'zero') {
      // -S 0 asks for a fully allocated target: zeros are written as data (compressed with -c).
      if (minSparse === 0) await target.write(t.dstOffset, new Uint8Array(t.length), compress ? ReqFlag.COMPRESSED : 0);
      else if (!zeroInit) await target.writeZeroes(t.dstOffset, t.length, ReqFlag.MAY_UNMAP);
      return;
    }
    if (compress) {
      // The installed detector checks buffers in the module's memory in place.
      // -S 0 writes zero clusters compressed too.
      if (minSparse !== 0 && isZeroBuffer(buf!)) {
        if (!zeroInit) await target.writeZeroes(t.dstOffset, t.length, ReqFlag.MAY_UNMAP);
        return;
      }
      await target.write(t.dstOffset, buf!, ReqFlag.COMPRESSED);
      return;
    }
    if (minSparse === 0) {
      await target.write(t.dstOffset, buf!);
      return;
    }
    // Split like qemu's is_allocated_sectors_min: runs of zero sectors of at least
    // minSparse bytes are not written, shorter ones inside data are.
    const b = buf!;
    const len = t.length;
    let pos = 0;
    while (pos < len) {
      const [n, data] = allocatedRunMin(b, pos, t.dstOffset + pos);
      if (data) await target.write(t.dstOffset + pos, b.subarray(pos, pos + n));
      else if (!zeroInit) await target.writeZeroes(t.dstOffset + pos, n, ReqFlag.MAY_UNMAP);
      pos += n;
    }
  };

  // Sparse detection works in 512-byte sectors. Runs are found by the WASM module when the
  // buffer lives in its memory (no copy), else by the plain-JS scan.
  const SECTOR = 512;
  const minSectors = minSparse / SECTOR;
  // qemu: MAX(pow2floor(min_sparse), request_alignment in sectors); a file target's
  // request_alignment is 1 byte, so this is pow2floor(min_sparse).
  const alignSectors = minSectors > 0 ? 2 ** Math.floor(Math.log2(minSectors)) : 1;
  const sectorRun = (b: Uint8Array, from: number, zero: boolean): number => {
    const rest = b.subarray(from);
    return wz?.zero.owns(rest) ? wz.zero.runLength(rest, SECTOR, zero) : zeroRunLength(rest, SECTOR, zero);
  };
  const sectors = (bytes: number): number => Math.ceil(bytes / SECTOR);
  /** qemu's is_allocated_sectors: [bytes, is data] of the run at `from`, end aligned. */
  const allocatedRun = (b: Uint8Array, from: number, dstOffset: number): [number, boolean] => {
    const left = b.length - from;
    let i = sectorRun(b, from, true);
    let zero = i > 0;
    if (!zero) i = sectorRun(b, from, false);
    // The whole rest is the same: no reason to split it.
    if (i >= left) return [left, !zero];
    let iSec = i / SECTOR;
    const tail = (Math.floor(dstOffset / SECTOR) + iSec) % alignSectors;
    if (tail) {
      // A zero run that is only the tail of an alignment unit is written as data.
      if (zero && iSec <= tail) zero = false;
      if (!zero) iSec = Math.min(iSec + alignSectors - tail, sectors(left));
      else iSec -= tail;
    }
    return [Math.min(left, iSec * SECTOR), !zero];
  };
  /** qemu's is_allocated_sectors_min: zero runs shorter than minSparse after data are data. */
  const allocatedRunMin = (b: Uint8Array, from: number, dstOffset: number): [number, boolean] => {
    const min = Math.min(minSectors, sectors(b.length - from));
    const [first, data] = allocatedRun(b, from, dstOffset);
    if (!data) return [first, false];
    let used = first;
    let checked = first;
    while (from + checked < b.length) {
      const [n, d] = allocatedRun(b, from + checked, dstOffset + checked);
      checked += n;
      if (d) used = checked;
      else if (sectors(n) >= min) break;
    }
    return [used, true];
  };

  const WINDOW = 8;
  // Reused read buffers (no zero-filling of every chunk): in WASM memory while the pool
  // there has one free, else ordinary ones.
  const pool: Uint8Array[] = [];
  const takeBuffer = (n: number): Uint8Array => {
    const w = wz?.pool?.take(n);
    if (w) return w;
    const b = pool.pop() ?? Buffer.allocUnsafeSlow(Math.max(chunkSize, IO_BUF_SIZE));
    return b.length >= n ? b.subarray(0, n) : Buffer.allocUnsafeSlow(n);
  };
  const giveBuffer = (buf: Uint8Array): void => {
    if (wz?.zero.owns(buf)) wz.pool?.give(buf);
    else if (buf.byteOffset === 0 && buf.buffer.byteLength >= chunkSize) pool.push(new Uint8Array(buf.buffer, 0, buf.buffer.byteLength));
  };
  const readTask = async (t: ConvertTask): Promise<Uint8Array> => {
    const buf = takeBuffer(t.length);
    await readSources(srcs, sizes, t.dstOffset, buf);
    // A view into WASM memory is detached if that memory grew meanwhile: never let that
    // pass as a read of nothing.
    if (buf.byteLength !== t.length) throw new BlockError('EIO', `read buffer for ${t.length} bytes at ${t.dstOffset} was detached (WASM memory grew)`);
    return buf;
  };
  const queue: Array<{ t: ConvertTask; p: Promise<Uint8Array | null> }> = [];
  // Writes are issued in order; a few may be in flight at once.
  const WRITE_DEPTH = 4;
  const writing: Promise<void>[] = [];
  const drainOne = async () => {
    const { t, p } = queue.shift()!;
    let buf: Uint8Array | null;
    try {
      buf = await p;
    } catch (e) {
      fail(`error while reading at byte ${t.dstOffset}: ${strerror(e)}`);
    }
    const w = writeRange(t, buf).then(
      () => {
        // Only after a successful write: on failures a buffer may still be in use, and the
        // pool then lends one fewer (the command exits anyway).
        if (buf) giveBuffer(buf);
        if (t.kind === 'data' || (minSparse === 0 && t.kind === 'zero')) {
          done += t.length;
          prog.print(allocatedTotal ? (100 * done) / allocatedTotal : 100, 0);
        }
      },
      (e: unknown) => fail(`error while writing at byte ${t.dstOffset}: ${strerror(e)}`),
    );
    w.catch(() => undefined);
    writing.push(w);
    if (writing.length >= WRITE_DEPTH) await writing.shift();
  };
  try {
    for await (const t of tasks()) {
      const p = t.kind === 'data' ? readTask(t) : Promise.resolve(null);
      p.catch(() => undefined);
      queue.push({ t, p });
      if (queue.length >= WINDOW) await drainOne();
    }
    while (queue.length) await drainOne();
    while (writing.length) await writing.shift();
    // Tells the format compressed writing is done (qcow2 aligns its file end).
    if (compress) await target.write(0, new Uint8Array(0), ReqFlag.COMPRESSED);
    await target.flush();
  } catch (e) {
    if (e instanceof CliExit) throw e;
    fail(`error while converting: ${errText(e)}`, 1, errHint(e));
  }
  prog.print(100, 0);
  prog.end();
  return 0;
}

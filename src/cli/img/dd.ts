/**
 * `img dd`.
 */
import { createImage } from '../../core/create.js';
import { errHint, errText, strerror } from '../common.js';
import { IO_BUF_SIZE, fail, Ctx, parseOpts, cvtnum, COMMON_LONGS } from './context.js';
import { help } from './help.js';
import { creatableDriver } from './create-options.js';
import { runCopy } from '../../jobs/copy-engine.js';
import { CopyError } from '../../jobs/copy-error.js';
import { targetWriter } from '../../jobs/target-writer.js';

// dd

export async function cmdDd(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'hf:O:U', [...COMMON_LONGS], ctx);
  let fmt: string | undefined;
  let outFmt = 'raw';
  let forceShare = false;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'O': outFmt = o.arg!; break;
      case 'U': forceShare = true; break;
      default: break;
    }
  }
  let bsz = 512;
  let count: number | undefined;
  let skip: number | undefined;
  let inFile: string | undefined;
  let outFile: string | undefined;
  for (const arg of operands) {
    const eq = arg.indexOf('=');
    if (eq < 0) fail(`unrecognized operand ${arg}`);
    const key = arg.slice(0, eq);
    const val = arg.slice(eq + 1);
    switch (key) {
      case 'bs': bsz = cvtnum('bs', val, 1, 2147483647, '2147483647'); break;
      case 'count': count = cvtnum('count', val); break;
      case 'if': inFile = val; break;
      case 'of': outFile = val; break;
      case 'skip': skip = cvtnum('skip', val); break;
      default: fail(`unrecognized operand ${key}`);
    }
  }
  if (inFile === undefined || outFile === undefined) fail('Must specify both input and output files');
  const src = await ctx.open(inFile, fmt, { readOnly: true, forceShare });
  creatableDriver(ctx, outFmt, '', 'Unknown file format');
  let size = src.length;
  if (count !== undefined && count * bsz < size) size = count * bsz;
  const skipBytes = skip !== undefined ? skip * bsz : 0;
  const beyond = skip !== undefined && size < skipBytes;
  try {
    await createImage(ctx.graph, outFmt, outFile, { size: beyond ? 0 : size - skipBytes });
  } catch (e) {
    fail(`${outFile}: error while creating output image: ${errText(e)}`, 1, errHint(e));
  }
  const dst = await ctx.open(outFile, outFmt, { readOnly: false });
  let inPos = skipBytes;
  if (beyond) {
    ctx.report(`${inFile}: cannot skip to specified offset`);
    inPos = size;
  }
  // Copy in blocks of bs, batched so small block sizes stay fast; all of it as data, one
  // block at a time as qemu-img dd does (output offset 0 is input offset inPos).
  const batch = Math.max(bsz, Math.floor(IO_BUF_SIZE / bsz) * bsz);
  const from = inPos;
  if (from < size) {
    try {
      await runCopy(
        {
          extents: async function* () {
            yield { offset: 0, length: size - from, kind: 'data' as const };
          },
          read: (offset, buf) => src.pread(from + offset, buf),
          write: targetWriter({ target: dst, zeroDetect: 'none', zeroInit: false, compress: false, fullyAllocate: false }),
        },
        { chunkSize: batch, readAhead: 1, writeDepth: 1 },
      );
    } catch (e) {
      if (!(e instanceof CopyError)) throw e;
      fail(`error while ${e.op === 'read' ? 'reading from input' : 'writing to output'} image file: ${strerror(e.original)}`);
    }
  }
  return 0;
}

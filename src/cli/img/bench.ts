/**
 * `img bench`.
 */
import { cFixed } from '../format.js';
import { strerror, parseCacheMode } from '../common.js';
import { errorExit, fail, Ctx, parseOpts, cvtnum, COMMON_LONGS } from './context.js';
import { help } from './help.js';

// bench

export async function cmdBench(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'hc:d:f:ni:o:qs:S:t:wU', [
    { name: 'flush-interval', hasArg: 1, val: 'flush' },
    { name: 'pattern', hasArg: 1, val: 'pattern' },
    { name: 'no-drain', hasArg: 0, val: 'nodrain' },
    ...COMMON_LONGS,
  ]);
  let fmt: string | undefined;
  let count = 75000;
  let depth = 64;
  let offset = 0;
  let bufsize = 4096;
  let step = 0;
  let write = false;
  let pattern = 0;
  let flushInterval = 0;
  let quiet = false;
  let forceShare = false;
  let cache: string | undefined;
  const uint = (s: string) => (/^\s*[0-9]+$/.test(s) ? Number(s) : /^\s*0[xX][0-9a-fA-F]+$/.test(s) ? parseInt(s, 16) : NaN);
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'c': {
        const v = uint(o.arg!);
        if (!(v >= 0) || v > 0x7fffffff) fail('Invalid request count specified');
        count = v;
        break;
      }
      case 'd': {
        const v = uint(o.arg!);
        if (!(v >= 0) || v > 0x7fffffff) fail('Invalid queue depth specified');
        depth = v;
        break;
      }
      case 'f': fmt = o.arg; break;
      case 'n': break;
      case 'i':
        if (!['threads', 'native', 'io_uring'].includes(o.arg!)) fail(`Invalid aio option: ${o.arg}`);
        break;
      case 'o': offset = cvtnum('offset', o.arg!); break;
      case 'q': quiet = true; break;
      case 's': bufsize = cvtnum('buffer size', o.arg!, 0, 2147483647, '2147483647'); break;
      case 'S': step = cvtnum('step_size', o.arg!, 0, 2147483647, '2147483647'); break;
      case 't':
        if (!parseCacheMode(o.arg!)) fail('Invalid cache mode');
        cache = o.arg;
        break;
      case 'w': write = true; break;
      case 'U': forceShare = true; break;
      case 'pattern': {
        const v = uint(o.arg!);
        if (!(v >= 0) || v > 0xff) fail('Invalid pattern byte specified');
        pattern = v;
        break;
      }
      case 'flush': {
        const v = uint(o.arg!);
        if (!(v >= 0) || v > 0x7fffffff) fail('Invalid flush interval specified');
        flushInterval = v;
        break;
      }
      default: break;
    }
  }
  if (operands.length !== 1) errorExit('Expecting one image file name');
  if (flushInterval && !write) fail('--flush-interval is only available in write tests');
  if (flushInterval && flushInterval < depth) fail('Flush interval can\'t be smaller than depth');
  if (depth === 0) fail('Invalid queue depth specified');
  const bb = await ctx.open(operands[0]!, fmt, { readOnly: !write, forceShare, ...(cache ? { cache } : {}) });
  const imageSize = bb.length;
  const st = step || bufsize;
  void quiet; // qemu-img bench prints its report even with -q
  const qp = (s: string) => ctx.out(s);
  qp(`Sending ${count} ${write ? 'write' : 'read'} requests, ${bufsize} bytes each, ${depth} in parallel (starting at offset ${offset}, step size ${st})\n`);
  if (flushInterval) qp(`Sending flush every ${flushInterval} requests\n`);
  const bufs = Array.from({ length: depth }, () => new Uint8Array(bufsize).fill(pattern));
  const t0 = performance.now();
  let next = offset;
  let issued = 0;
  let failed: unknown = null;
  const worker = async (slot: number) => {
    while (issued < count && !failed) {
      const off = next;
      issued++;
      next += st;
      if (imageSize <= bufsize) next = 0;
      else next %= imageSize - bufsize;
      try {
        if (write) {
          await bb.write(off, bufs[slot]!);
          if (flushInterval && issued % flushInterval === 0) await bb.flush();
        } else {
          await bb.pread(off, bufs[slot]!);
        }
      } catch (e) {
        failed = e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(depth, Math.max(count, 1)) }, (_, i) => worker(i)));
  if (failed) fail(`Failed request: ${strerror(failed)}`);
  const secs = (performance.now() - t0) / 1000;
  qp(`Run completed in ${cFixed(secs, 3)} seconds.\n`);
  return 0;
}

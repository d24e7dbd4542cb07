/**
 * `img compare`.
 */
import { BlockBackend } from '../../core/backend.js';
import { Status } from '../../core/driver.js';
import { blockStatusAbove } from '../../core/block-status.js';
import { isZeroBuffer } from '../../core/zero-detect.js';
import { strerror, parseCacheMode } from '../common.js';
import { IO_BUF_SIZE, errorExit, fail, Ctx, parseOpts, COMMON_LONGS, Progress } from './context.js';
import { help } from './help.js';

// compare

const CMP_MASK = Status.DATA | Status.ZERO | Status.OFFSET_VALID | Status.ALLOCATED | Status.COMPRESSED;

export function compareBuffers(a: Uint8Array, b: Uint8Array, bytes: number): { diff: boolean; pnum: number } {
  const sectEq = (i: number, len: number) => {
    for (let k = i; k < i + len; k++) if (a[k] !== b[k]) return false;
    return true;
  };
  let i = Math.min(bytes, 512);
  const res = !sectEq(0, i);
  while (i < bytes) {
    const len = Math.min(bytes - i, 512);
    if (!sectEq(i, len) !== res) break;
    i += len;
  }
  return { diff: res, pnum: i };
}

function findNonzero(buf: Uint8Array, n: number): number {
  for (let i = 0; i < n; i += 512) {
    if (!isZeroBuffer(buf.subarray(i, Math.min(n, i + 512)))) return i;
  }
  return -1;
}

export async function cmdCompare(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'hf:F:T:pqsU', [...COMMON_LONGS], ctx);
  let fmt1: string | undefined;
  let fmt2: string | undefined;
  let progress = false;
  let quiet = false;
  let strict = false;
  let forceShare = false;
  let cache: string | undefined;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt1 = o.arg; break;
      case 'F': fmt2 = o.arg; break;
      case 'T': cache = o.arg; break;
      case 'p': progress = true; break;
      case 'q': quiet = true; break;
      case 's': strict = true; break;
      case 'U': forceShare = true; break;
      default: break;
    }
  }
  if (quiet) progress = false;
  if (operands.length !== 2) errorExit('Expecting two image file names');
  if (cache && !parseCacheMode(cache)) fail(`Invalid source cache option: ${cache}`, 2);
  const [f1, f2] = operands as [string, string];
  const qp = (s: string) => {
    if (!quiet) ctx.out(s);
  };
  const prog = new Progress(ctx, progress, 2.0);
  const src = { readOnly: true, forceShare, code: 2, ...(cache ? { cache } : {}) };
  const bb1 = await ctx.open(f1, fmt1, src);
  const bb2 = await ctx.open(f2, fmt2, src);
  const n1 = bb1.node;
  const n2 = bb2.node;
  const size1 = bb1.length;
  const size2 = bb2.length;
  const total = Math.min(size1, size2);
  const progressBase = Math.max(size1, size2);
  const done = (code: number) => {
    prog.end();
    return code;
  };
  prog.print(0, 100);
  if (strict && size1 !== size2) {
    qp('Strict mode: Image size mismatch!\n');
    return done(1);
  }
  const checkEmpty = async (bb: BlockBackend, off: number, n: number, name: string): Promise<number> => {
    let buf: Uint8Array;
    try {
      buf = await bb.read(off, n);
    } catch (e) {
      ctx.report(`Error while reading offset ${off} of ${name}: ${strerror(e)}`);
      return 4;
    }
    const idx = findNonzero(buf, n);
    if (idx >= 0) {
      qp(`Content mismatch at offset ${off + idx}!\n`);
      return 1;
    }
    return 0;
  };
  let offset = 0;
  while (offset < total) {
    let s1, s2;
    try {
      s1 = await blockStatusAbove(n1, undefined, true, offset, size1 - offset);
    } catch {
      ctx.report(`Sector allocation test failed for ${f1}`);
      return done(3);
    }
    try {
      s2 = await blockStatusAbove(n2, undefined, true, offset, size2 - offset);
    } catch {
      ctx.report(`Sector allocation test failed for ${f2}`);
      return done(3);
    }
    const a1 = !!(s1.status & Status.ALLOCATED);
    const a2 = !!(s2.status & Status.ALLOCATED);
    let chunk = Math.min(s1.pnum, s2.pnum, total - offset);
    if (strict && (s1.status & CMP_MASK) !== (s2.status & CMP_MASK)) {
      qp(`Strict mode: Offset ${offset} block status mismatch!\n`);
      return done(1);
    }
    if (s1.status & Status.ZERO && s2.status & Status.ZERO) {
      // both zero
    } else if (a1 === a2) {
      if (a1) {
        chunk = Math.min(chunk, IO_BUF_SIZE);
        let b1: Uint8Array, b2: Uint8Array;
        try {
          b1 = await bb1.read(offset, chunk);
        } catch (e) {
          ctx.report(`Error while reading offset ${offset} of ${f1}: ${strerror(e)}`);
          return done(4);
        }
        try {
          b2 = await bb2.read(offset, chunk);
        } catch (e) {
          ctx.report(`Error while reading offset ${offset} of ${f2}: ${strerror(e)}`);
          return done(4);
        }
        const c = compareBuffers(b1, b2, chunk);
        if (c.diff || c.pnum !== chunk) {
          qp(`Content mismatch at offset ${offset + (c.diff ? 0 : c.pnum)}!\n`);
          return done(1);
        }
      }
    } else {
      chunk = Math.min(chunk, IO_BUF_SIZE);
      const r = a1 ? await checkEmpty(bb1, offset, chunk, f1) : await checkEmpty(bb2, offset, chunk, f2);
      if (r) return done(r);
    }
    offset += chunk;
    prog.print((chunk / progressBase) * 100, 100);
  }
  if (size1 !== size2) {
    qp('Warning: Image size mismatch!\n');
    const [bbOver, nOver, fOver] = size1 > size2 ? [bb1, n1, f1] : [bb2, n2, f2];
    while (offset < progressBase) {
      let st;
      try {
        st = await blockStatusAbove(nOver, undefined, true, offset, progressBase - offset);
      } catch {
        ctx.report(`Sector allocation test failed for ${fOver}`);
        return done(3);
      }
      let chunk = st.pnum;
      if (st.status & Status.ALLOCATED && !(st.status & Status.ZERO)) {
        chunk = Math.min(chunk, IO_BUF_SIZE);
        const r = await checkEmpty(bbOver, offset, chunk, fOver);
        if (r) return done(r);
      }
      offset += chunk;
      prog.print((chunk / progressBase) * 100, 100);
    }
  }
  qp('Images are identical.\n');
  return done(0);
}

/**
 * `img rebase`.
 */
import { BlockBackend } from '../../core/backend.js';
import { joinRelative } from '../../core/backing-open.js';
import { cowChild, isAllocatedAbove } from '../../core/block-status.js';
import { CliExit, errHint, errText, formatNode, strerror, parseCacheMode } from '../common.js';
import { compareBuffers } from './compare.js';
import { runCopy, type CopyExtent } from '../../jobs/copy-engine.js';
import { CopyError } from '../../jobs/copy-error.js';
import { IO_BUF_SIZE, errorExit, fail, Ctx, parseOpts, COMMON_LONGS, Progress, imageFilename } from './context.js';
import { help } from './help.js';
import { findInChain } from './commit.js';
import { Perm, PERM_ALL } from '../../core/permissions.js';

// rebase

function cowWriteFailed(e: unknown): never {
  fail(`Error while writing to COW image: ${strerror(e)}`);
}

export async function cmdRebase(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'hf:F:b:upt:T:qU', [...COMMON_LONGS], ctx);
  let fmt: string | undefined;
  let outBase: string | undefined;
  let outBaseFmt: string | undefined;
  let unsafe = false;
  let progress = false;
  let quiet = false;
  let forceShare = false;
  let cache = 'writeback';
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'F': outBaseFmt = o.arg; break;
      case 'b': outBase = o.arg; break;
      case 'u': unsafe = true; break;
      case 'p': progress = true; break;
      case 'q': quiet = true; break;
      case 'U': forceShare = true; break;
      case 't':
      case 'T':
        if (!parseCacheMode(o.arg!)) fail(o.opt === 't' ? `Invalid cache option: ${o.arg}` : `Invalid source cache option: ${o.arg}`);
        if (o.opt === 't') cache = o.arg!;
        break;
      default: break;
    }
  }
  if (quiet) progress = false;
  if (operands.length !== 1) errorExit('Expecting one image file name');
  if (!unsafe && outBase === undefined) errorExit('Must specify backing file (-b) or use unsafe mode (-u)');
  const filename = operands[0]!;
  // As qemu-img, -U is for the new backing file only: the image itself is written.
  const bb = await ctx.open(filename, fmt, { readOnly: false, noBacking: unsafe, cache });
  const top = formatNode(bb.node);
  if (outBase === '') outBase = undefined;
  const prog = new Progress(ctx, progress, 1.0);
  prog.print(0, 100);
  if (!unsafe) {
    let newBb: BlockBackend | undefined;
    if (outBase !== undefined) {
      const full = /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(outBase) ? outBase : joinRelative(imageFilename(ctx, top, filename), outBase);
      // An image already in the chain is used as it is open (QEMU's prefix_chain_bs); any other is
      // opened again, and its locks decide as for any other open (an image rebased onto itself fails).
      const inChain = findInChain(ctx, top, full);
      try {
        newBb = inChain
          ? await BlockBackend.attach(ctx.graph, inChain, { name: '', perm: Perm.CONSISTENT_READ, shared: PERM_ALL })
          : await BlockBackend.open(
              ctx.graph,
              { filename: full, ...(forceShare ? { 'force-share': true } : {}) },
              { readOnly: true, ...(outBaseFmt ? { format: outBaseFmt } : {}) },
              { name: '', shared: PERM_ALL },
            );
      } catch (e) {
        prog.end();
        fail(`Could not ${inChain ? 'reuse' : 'open new'} backing file '${outBase}': ${errText(e)}`, 1, errHint(e));
      }
    }
    try {
      const len = bb.length;
      const oldBacking = cowChild(top);
      const oldLen = oldBacking ? oldBacking.length : 0;
      const newLen = newBb ? newBb.length : 0;
      /** The steps of the old walk: unallocated ranges are compared (zeros past the old backing's end). */
      async function* steps(): AsyncGenerator<CopyExtent> {
        let off = 0;
        while (off < len) {
          const n0 = Math.min(IO_BUF_SIZE, len - off);
          const r = await isAllocatedAbove(top, oldBacking, false, off, n0);
          let n = r.pnum || n0;
          if (r.allocated) {
            yield { offset: off, length: n, kind: 'skip' };
          } else {
            // As qemu-img: past the old backing's end the old side is zeros, and the
            // ranges that differ from the new backing become zero writes, not data.
            if (off < oldLen) n = Math.min(n, oldLen - off);
            if (newBb && off < newLen) n = Math.min(n, newLen - off);
            yield { offset: off, length: n, kind: off >= oldLen ? 'zero' : 'data' };
          }
          off += n;
        }
      }
      // Writes what differs from the new backing: the old data, or zeros past the old end.
      const writeDiff = async (e: CopyExtent, oldData: Uint8Array | null): Promise<void> => {
        if (e.kind === 'skip') return;
        const { offset: off, length: n } = e;
        const oldBuf = oldData ?? new Uint8Array(n);
        const newBuf = newBb && off < newLen ? await newBb.read(off, n) : new Uint8Array(n);
        let w = 0;
        while (w < n) {
          const c = compareBuffers(oldBuf.subarray(w), newBuf.subarray(w), n - w);
          if (c.diff) {
            if (!oldData) await bb.writeZeroes(off + w, c.pnum).catch(cowWriteFailed);
            else await bb.write(off + w, oldBuf.subarray(w, w + c.pnum)).catch(cowWriteFailed);
          }
          w += c.pnum;
        }
      };
      // One step at a time, as qemu-img: the overlay is read and written in the same walk.
      await runCopy(
        { extents: steps, read: (offset, buf) => bb.pread(offset, buf), write: writeDiff },
        { chunkSize: IO_BUF_SIZE, readAhead: 1, writeDepth: 1, progressTotal: len, onProgress: ({ done }) => prog.print((100 * done) / len, 0) },
      );
    } catch (e) {
      prog.end();
      // The engine names the failed side; the messages are qemu-img's (cowWriteFailed's for writes).
      const orig = e instanceof CopyError ? e.original : e;
      if (orig instanceof CliExit) throw orig;
      fail(errText(orig), 1, errHint(orig));
    } finally {
      await newBb?.close();
    }
  }
  if (!top.instance.changeBackingFile) {
    prog.end();
    fail(`Could not change the backing file to '${outBase ?? ''}': Operation not supported`);
  }
  if (outBase !== undefined && !outBaseFmt) {
    prog.end();
    fail(`Could not change the backing file to '${outBase}': backing format must be specified`);
  }
  try {
    await top.instance.changeBackingFile(outBase, outBase !== undefined ? outBaseFmt : undefined);
  } catch (e) {
    prog.end();
    fail(`Could not change the backing file to '${outBase ?? ''}': ${strerror(e)}`);
  }
  prog.print(100, 0);
  prog.end();
  return 0;
}

/**
 * `img commit`.
 */
import { BlockBackend } from '../../core/backend.js';
import type { BlockNode } from '../../core/node.js';
import { cowChild } from '../../core/block-status.js';
import { runCopy } from '../../jobs/copy-engine.js';
import { allocationExtents } from '../../jobs/plan.js';
import { targetWriter } from '../../jobs/target-writer.js';
import { Perm } from '../../core/permissions.js';
import { CliExit, errHint, errText, formatNode, strerror, parseCacheMode } from '../common.js';
import { IO_BUF_SIZE, errorExit, fail, Ctx, parseOpts, cvtnum, COMMON_LONGS, Progress } from './context.js';
import { help } from './help.js';

// commit

function findInChain(ctx: Ctx, top: BlockNode, name: string): BlockNode | undefined {
  for (let n = cowChild(top); n; n = cowChild(n)) {
    const f = ctx.graph.protocolNodeOf(n).filename;
    if (f === name || f.endsWith('/' + name) || name.endsWith('/' + f)) return n;
  }
  return undefined;
}

export async function cmdCommit(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'f:ht:b:dpqr:', [...COMMON_LONGS]);
  let fmt: string | undefined;
  let base: string | undefined;
  let drop = false;
  let progress = false;
  let quiet = false;
  let cache = 'writeback';
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'b': base = o.arg; drop = true; break;
      case 'd': drop = true; break;
      case 'p': progress = true; break;
      case 'q': quiet = true; break;
      case 'r': cvtnum('rate limit', o.arg!); break;
      case 't':
        if (!parseCacheMode(o.arg!)) fail(`Invalid cache option: ${o.arg}`);
        cache = o.arg!;
        break;
      default: break;
    }
  }
  if (quiet) progress = false;
  if (operands.length !== 1) errorExit('Expecting one image file name');
  const filename = operands[0]!;
  // Like the commit job, let the chain below change while we hold the top.
  // qemu-img commit opens with discard=unmap (BDRV_O_UNMAP), which the backing chain inherits.
  const bb = await ctx.open(filename, fmt, {
    readOnly: false,
    cache,
    shared: Perm.CONSISTENT_READ | Perm.WRITE | Perm.WRITE_UNCHANGED | Perm.RESIZE | Perm.GRAPH_MOD,
    extra: { discard: 'unmap' },
  });
  const top = formatNode(bb.node);
  const prog = new Progress(ctx, progress, 1.0);
  prog.print(0, 100);
  let baseNode: BlockNode | undefined;
  if (base !== undefined) {
    baseNode = findInChain(ctx, top, base);
    if (!baseNode) {
      prog.end();
      fail(`Did not find '${base}' in the backing chain of '${filename}'`);
    }
  } else {
    baseNode = cowChild(top);
    if (!baseNode) {
      prog.end();
      fail('Image does not have a backing file');
    }
  }
  try {
    await ctx.graph.reopen([{ node: baseNode, readOnly: false }]);
    const baseBb = await BlockBackend.attach(ctx.graph, baseNode, { name: '', perm: Perm.CONSISTENT_READ | Perm.WRITE | Perm.RESIZE });
    // The copy is QEMU's commit job: a failure in it, or in the flush and
    // close that put its data on storage, is "Block job failed".
    let jobError: unknown = null;
    try {
      const len = bb.length;
      if (baseBb.length < len) await baseBb.truncate(len);
      // What the layers above the base hold, in buffer pieces; one progress step per run.
      await runCopy(
        {
          extents: () => allocationExtents(top, baseNode, len),
          read: (offset, buf) => bb.pread(offset, buf),
          // qemu-img commit runs QEMU's mirror with unmap: zeros may deallocate in the base.
          write: targetWriter({ target: baseBb, zeroDetect: 'buffer', zeroInit: false, compress: false, fullyAllocate: false }),
          finish: () => baseBb.flush(),
        },
        { chunkSize: IO_BUF_SIZE, progressTotal: len, onProgress: ({ done }) => prog.print((100 * done) / len, 0) },
      );
    } catch (e) {
      jobError = e;
    }
    await baseBb.close().catch((e: unknown) => void (jobError ??= e));
    if (jobError !== null) fail(`Block job failed: ${strerror(jobError)}`);
    if (!drop && top.instance.makeEmpty) {
      try {
        await top.instance.makeEmpty();
      } catch (e) {
        throw new CliExit(1, `Could not empty ${filename}: ${strerror(e)}`);
      }
    }
  } catch (e) {
    prog.end();
    if (e instanceof CliExit) throw e;
    fail(errText(e), 1, errHint(e));
  }
  prog.print(100, 0);
  prog.end();
  if (!quiet) ctx.out('Image committed.\n');
  return 0;
}

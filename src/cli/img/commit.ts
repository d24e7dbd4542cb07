/**
 * `img commit`.
 */
import { toBlockError } from '../../core/errors.js';
import { realpathSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { BlockBackend } from '../../core/backend.js';
import type { BlockNode } from '../../core/node.js';
import { cowChild } from '../../core/block-status.js';
import { JobRegistry } from '../../jobs/job-registry.js';
import { commitJob } from '../../jobs/commit.js';
import { isCompletedStatus } from '../../jobs/job-status.js';
import { Perm } from '../../core/permissions.js';
import { CliExit, errHint, errText, formatNode, strerror, parseCacheMode } from '../common.js';
import { IO_BUF_SIZE, errorExit, fail, Ctx, parseOpts, cvtnum, COMMON_LONGS, Progress } from './context.js';
import { help } from './help.js';

/** A protocol prefix ("nbd:", "json:"), as QEMU's path_has_protocol sees one. */
const hasProtocol = (p: string) => /^[^/:]+:/.test(p);

/** realpath(), or undefined when the file does not exist. */
function real(p: string): string | undefined {
  try {
    return realpathSync(p);
  } catch {
    return undefined;
  }
}

/**
 * The image of `top`'s backing chain that `name` names (QEMU's
 * bdrv_find_backing_image): a relative name is taken relative to the
 * directory of the image whose backing file is being compared, and both sides
 * are compared as real paths; protocol names are compared as strings, with
 * the backing file name and with the backing image's file name.
 */
export function findInChain(ctx: Ctx, top: BlockNode, name: string): BlockNode | undefined {
  for (let curr: BlockNode | undefined = top; curr; curr = cowChild(curr)) {
    const below = cowChild(curr);
    if (!below) break;
    const currFile = ctx.graph.protocolNodeOf(curr).filename;
    const backingName = curr.instance.backingFile?.()?.filename ?? '';
    if (hasProtocol(name) || hasProtocol(backingName)) {
      if (name === backingName || name === ctx.graph.protocolNodeOf(below).filename) return below;
      continue;
    }
    const dir = dirname(currFile);
    const wanted = real(isAbsolute(name) ? name : join(dir, name));
    const actual = backingName ? real(isAbsolute(backingName) ? backingName : join(dir, backingName)) : undefined;
    if (wanted !== undefined && wanted === actual) return below;
  }
  return undefined;
}

export async function cmdCommit(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'f:ht:b:dpqr:', [...COMMON_LONGS], ctx);
  let fmt: string | undefined;
  let base: string | undefined;
  let drop = false;
  let progress = false;
  let quiet = false;
  let cache = 'writeback';
  let rateLimit = 0;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'b': base = o.arg; drop = true; break;
      case 'd': drop = true; break;
      case 'p': progress = true; break;
      case 'q': quiet = true; break;
      case 'r': rateLimit = cvtnum('rate limit', o.arg!); break;
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
    // Without resize, as QEMU's (no BDRV_O_RESIZE): the commit job's filter shares none on the top.
    perm: Perm.CONSISTENT_READ | Perm.WRITE,
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
  // QEMU's qemu-img commit: an internal active commit job into the base, completed once
  // ready; the top image is then emptied unless -d / -b.
  if (!drop) top.ref();
  try {
    const jobs = new JobRegistry();
    let job;
    try {
      job = jobs.create(commitJob({ graph: ctx.graph, top, base: baseNode }), { internal: true, speed: rateLimit });
    } catch (e) {
      fail(errText(e), 1, errHint(e));
    }
    const report = () => {
      const i = job.info();
      prog.print(i['total-progress'] > 0 ? (100 * i['current-progress']) / i['total-progress'] : 0, 0);
    };
    job.start();
    const timer = progress ? setInterval(report, 100) : undefined;
    try {
      await job.waitFor((s) => s === 'ready' || isCompletedStatus(s));
      if (job.status === 'ready') job.complete();
      await job.settled();
    } catch (e) {
      prog.end();
      fail(`Block job failed: ${strerror(e)}`);
    } finally {
      if (timer) clearInterval(timer);
    }
    report();
    if (!drop && top.instance.makeEmpty) {
      try {
        await top.instance.makeEmpty();
      } catch (e) {
        // QEMU's bdrv_make_empty; a driver without emptying is let be, as qemu-img does.
        if (toBlockError(e).code !== 'ENOTSUP') throw new CliExit(1, `Failed to empty ${filename}: ${strerror(e)}`);
      }
    }
  } catch (e) {
    prog.end();
    if (e instanceof CliExit) throw e;
    fail(errText(e), 1, errHint(e));
  } finally {
    // A failed emptying leaves the node unusable: its close must not hide that error.
    if (!drop) await top.unref().catch(() => undefined);
  }
  prog.print(100, 0);
  prog.end();
  if (!quiet) ctx.out('Image committed.\n');
  return 0;
}

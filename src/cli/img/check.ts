/**
 * `img check`: consistency check and repair.
 */
import { cFixed, toQemuJson, type JsonValue } from '../format.js';
import { formatNode, strerror, parseCacheMode } from '../common.js';
import { errorExit, fail, Ctx, parseOpts, outputFormat, COMMON_LONGS, imageFilename } from './context.js';
import { help } from './help.js';
import { CHECK_REPORT_LINE } from '../../core/driver.js';

// check

export async function cmdCheck(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'hf:r:T:qU', [
    { name: 'format', hasArg: 1, val: 'f' },
    { name: 'repair', hasArg: 1, val: 'r' },
    { name: 'output', hasArg: 1, val: 'output' },
    ...COMMON_LONGS,
  ], ctx);
  let fmt: string | undefined;
  let output = 'human';
  let fixLeaks = false;
  let fixErrors = false;
  let quiet = false;
  let forceShare = false;
  let cache: string | undefined;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'r':
        if (o.arg === 'leaks') fixLeaks = true;
        else if (o.arg === 'all') fixLeaks = fixErrors = true;
        else errorExit(`Unknown option value for -r (expecting 'leaks' or 'all'): ${o.arg}`);
        break;
      case 'output': output = o.arg!; break;
      case 'T': cache = o.arg; break;
      case 'q': quiet = true; break;
      case 'U': forceShare = true; break;
      default: break;
    }
  }
  if (operands.length !== 1) errorExit('Expecting one image file name');
  const of = outputFormat(output);
  if (cache && !parseCacheMode(cache)) fail(`Invalid source cache option: ${cache}`);
  const filename = operands[0]!;
  const fix = fixLeaks || fixErrors;
  const bb = await ctx.open(filename, fmt, { readOnly: !fix, forceShare, forCheck: true, ...(cache ? { cache } : {}) });
  // A filter without a check of its own has none (QEMU's bdrv_check does not look through filters).
  const node = bb.node.driver.kind === 'filter' && !bb.node.instance.check ? bb.node : formatNode(bb.node);
  if (!node.instance.check) fail('This image format does not support checks', 63);
  const printLines = (lines: readonly string[]) => {
    for (const m of lines) {
      if (m.startsWith(CHECK_REPORT_LINE)) ctx.report(m.slice(CHECK_REPORT_LINE.length));
      else ctx.io.stderr(m.endsWith('\n') ? m : m + '\n');
    }
  };
  const run = async (doFix: boolean) => {
    let r;
    try {
      r = await node.instance.check!({ leaks: doFix && fixLeaks, errors: doFix && fixErrors });
    } catch (e) {
      // A check that stopped early still reports what it found.
      const lines = (e as { messages?: unknown }).messages;
      if (Array.isArray(lines)) printLines(lines as string[]);
      const reports = (e as { reports?: unknown }).reports;
      if (Array.isArray(reports)) for (const m of reports as string[]) ctx.report(m);
      throw e;
    }
    printLines(r.messages);
    return r;
  };
  let r;
  let ret = 0;
  try {
    r = await run(fix);
  } catch (e) {
    // QEMU's answer to a driver without (this kind of) check, such as vdi's to -r.
    if ((e as { code?: unknown }).code === 'ENOTSUP') {
      ctx.report('This image format does not support checks');
      return 63;
    }
    ret = -1;
    r = undefined;
    ctx.report(`Check failed: ${strerror(e)}`);
    return 1;
  }
  let leaksFixed = r.leaksFixed;
  let corruptionsFixed = r.corruptionsFixed;
  if (r.corruptionsFixed || r.leaksFixed) {
    if (of === 'human' && !quiet) {
      ctx.out(
        `The following inconsistencies were found and repaired:\n\n    ${r.leaksFixed} leaked clusters\n    ${r.corruptionsFixed} corruptions\n\nDouble checking the fixed image now...\n`,
      );
    }
    leaksFixed = r.leaksFixed;
    corruptionsFixed = r.corruptionsFixed;
    r = await run(false);
  }
  const fname = imageFilename(ctx, node, filename);
  if (ret === 0) {
    if (of === 'human') {
      if (!quiet) {
        let s = '';
        if (r.corruptions === 0 && r.leaks === 0 && r.checkErrors === 0) s += 'No errors were found on the image.\n';
        else {
          if (r.corruptions) s += `\n${r.corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n`;
          if (r.leaks) s += `\n${r.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n`;
          if (r.checkErrors) s += `\n${r.checkErrors} internal errors have occurred during the check.\n`;
        }
        const total = r.totalClusters ?? 0;
        const alloc = r.allocatedClusters ?? 0;
        if (total !== 0 && alloc !== 0) {
          s += `${alloc}/${total} = ${cFixed((alloc * 100) / total, 2)}% allocated, ${cFixed(((r.fragmentedClusters ?? 0) * 100) / alloc, 2)}% fragmented, ${cFixed(((r.compressedClusters ?? 0) * 100) / alloc, 2)}% compressed clusters\n`;
        }
        if (r.imageEndOffset) s += `Image end offset: ${r.imageEndOffset}\n`;
        ctx.out(s);
      }
    } else {
      const j: Record<string, JsonValue> = { filename: fname, format: node.driver.name, 'check-errors': r.checkErrors };
      if (r.imageEndOffset) j['image-end-offset'] = r.imageEndOffset;
      if (r.corruptions) j['corruptions'] = r.corruptions;
      if (r.leaks) j['leaks'] = r.leaks;
      if (corruptionsFixed) j['corruptions-fixed'] = corruptionsFixed;
      if (leaksFixed) j['leaks-fixed'] = leaksFixed;
      if (r.totalClusters) j['total-clusters'] = r.totalClusters;
      if (r.allocatedClusters) j['allocated-clusters'] = r.allocatedClusters;
      if (r.fragmentedClusters) j['fragmented-clusters'] = r.fragmentedClusters;
      if (r.compressedClusters) j['compressed-clusters'] = r.compressedClusters;
      if (!quiet) ctx.out(toQemuJson(j) + '\n');
    }
  }
  if (r.checkErrors) {
    ctx.report('Check failed');
    return 1;
  }
  if (r.corruptions) return 2;
  if (r.leaks) return 3;
  return 0;
}

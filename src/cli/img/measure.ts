/**
 * `img measure`.
 */
import { isValidOptionList } from '../qemu-opts.js';
import { BlockBackend } from '../../core/backend.js';
import { type MeasureInfo } from '../../core/driver.js';
import { OptionReader } from '../../core/options.js';
import { toQemuJson, type JsonValue } from '../format.js';
import { CliExit, errHint, errText } from '../common.js';
import { fail, Ctx, parseOpts, cvtnumExact, outputFormat, COMMON_LONGS, PROG } from './context.js';
import { parseKeyValueListSafe } from './create.js';
import { creatableDriver, printOptionHelp, hasHelp, buildCreateOpts, toCreateRecord } from './create-options.js';
import { help } from './help.js';
import { loadSnapshotParam, parseSnapshotParam, type SnapshotParam } from './snapshot-param.js';

// measure

export async function cmdMeasure(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'hf:o:l:O:U', [
    { name: 'size', hasArg: 1, val: 'size' },
    { name: 'output', hasArg: 1, val: 'output' },
    ...COMMON_LONGS,
  ], ctx);
  let fmt: string | undefined;
  let outFmt = 'raw';
  let output = 'human';
  let size: bigint | undefined;
  const options: string[] = [];
  let forceShare = false;
  let snapshot: SnapshotParam | undefined;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'O': outFmt = o.arg!; break;
      case 'o':
        // qemu-img's is_valid_option_list (e.g. ',' alone), then the list must parse.
        if (!isValidOptionList(o.arg!) || !parseKeyValueListSafe(o.arg!)) fail(`Invalid option list: ${o.arg}`);
        options.push(o.arg!);
        break;
      case 'l': snapshot = parseSnapshotParam(ctx, o.arg!); break;
      case 'size': size = cvtnumExact('image size', o.arg!); break;
      case 'output': output = o.arg!; break;
      case 'U': forceShare = true; break;
      default: break;
    }
  }
  const of = outputFormat(output);
  if (operands.length > 1) fail('At most one filename argument is allowed.');
  const filename = operands[0];
  if (filename === undefined && (ctx.imageOpts || fmt !== undefined || snapshot)) fail('--image-opts, -f, and -l require a filename argument.');
  if (filename !== undefined && size !== undefined) fail('--size N cannot be used together with a filename.');
  if (filename === undefined && size === undefined) fail('Either --size N or one filename must be specified.');
  let src: BlockBackend | undefined;
  if (filename !== undefined) {
    src = await ctx.open(filename, fmt, { readOnly: true, forceShare });
    if (snapshot) await loadSnapshotParam(src.node, snapshot);
  }
  const drv = creatableDriver(ctx, outFmt);
  if (options.some(hasHelp)) return printOptionHelp(ctx, outFmt);
  let values: Map<string, string>;
  try {
    ({ values } = buildCreateOpts(ctx, outFmt, filename ?? '', options, true));
  } catch (e) {
    if (!(e instanceof CliExit)) throw e;
    // measure words a bad option list as its own failure, without create's file name prefix.
    const prefix = `${filename ?? ''}: `;
    const msg = e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
    fail(msg, e.exitCode, `${e.hint}${PROG}: Invalid options for file format '${outFmt}'\n`);
  }
  if (size !== undefined) values.set('size', String(size));
  let info: MeasureInfo;
  try {
    const reader = new OptionReader({ ...toCreateRecord(values) }, `Block format '${outFmt}'`);
    if (!drv.measure) fail(`Block driver '${outFmt}' does not support size measurement`);
    info = await drv.measure(reader, src?.node, ctx.graph);
  } catch (e) {
    if (e instanceof CliExit) throw e;
    fail(errText(e), 1, errHint(e));
  }
  if (of === 'human') {
    let s = `required size: ${info.required}\nfully allocated size: ${info.fullyAllocated}\n`;
    if (info.bitmaps !== undefined) s += `bitmaps size: ${info.bitmaps}\n`;
    ctx.out(s);
  } else {
    // QEMU's JSON output visitor writes these uint64 values as int64: 2^63 and above come out negative.
    const s64 = (v: bigint): bigint => BigInt.asIntN(64, v);
    const j: Record<string, JsonValue> = { required: s64(info.required), 'fully-allocated': s64(info.fullyAllocated) };
    if (info.bitmaps !== undefined) j['bitmaps'] = s64(info.bitmaps);
    ctx.out(toQemuJson(j) + '\n');
  }
  return 0;
}

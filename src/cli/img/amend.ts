/**
 * `img amend`: qemu-img 7.2's order of checks (option lists, help, the image
 * name, the cache mode, the open, the driver's amend support, the options
 * against the driver's amend list), then the driver's amend with progress.
 */
import { OptionReader } from '../../core/options.js';
import type { BlockDriver, CreateOptionSpec } from '../../core/driver.js';
import { qemuOnlyDriver } from '../../core/qemu-drivers.js';
import { boolValue, checkOptionValue, isValidOptionList, OptsError, parseOptionList } from '../qemu-opts.js';
import { errHint, errText, formatNode, parseCacheMode } from '../common.js';
import { errorExit, fail, Ctx, parseOpts, COMMON_LONGS, Progress } from './context.js';
import { optionHelpList, hasHelp } from './create-options.js';
import { help } from './help.js';

const CREATE_ONLY_HINT = 'This option is only supported for image creation\n';

export async function cmdAmend(ctx: Ctx, args: string[]): Promise<number> {
  // qemu-img amend takes no -U / --force-share (it always writes).
  const longs = COMMON_LONGS.filter((l) => l.val !== 'U');
  const { opts, operands } = parseOpts(args, 'ho:f:t:pq', [{ name: 'force', hasArg: 0, val: 'force' }, ...longs], ctx);
  let fmt: string | undefined;
  const options: string[] = [];
  let cache = 'writeback';
  let force = false;
  let progress = false;
  let quiet = false;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'o':
        // qemu-img's accumulate_options: each -o must be a list of its own.
        if (!isValidOptionList(o.arg!)) fail(`Invalid option list: ${o.arg}`);
        options.push(o.arg!);
        break;
      case 'f': fmt = o.arg; break;
      case 't': cache = o.arg!; break;
      case 'p': progress = true; break;
      case 'q': quiet = true; break;
      case 'force': force = true; break;
      default: break;
    }
  }
  if (options.length === 0) errorExit('Must specify options (-o)');
  if (quiet) progress = false;
  const optText = options.join(',');
  const prog = new Progress(ctx, progress, 1.0);
  // From here on every exit ends the progress line, as qemu-img's "out:" does.
  try {
    if (fmt && hasHelp(optText)) return printAmendHelp(ctx, fmt);
    if (operands.length !== 1) fail('Expecting one image file name');
    if (!parseCacheMode(cache)) fail(`Invalid cache option: ${cache}`);
    const bb = await ctx.open(operands[0]!, fmt, { readOnly: false, cache });
    const node = formatNode(bb.node);
    const drv = node.driver;
    if (hasHelp(optText)) return printAmendHelp(ctx, drv.name);
    if (!node.instance.amend || !drv.amendOptions) fail(`Format driver '${drv.name}' does not support option amendment`);
    const values = amendValues(ctx, drv, drv.amendOptions, optText);
    prog.print(0, 0);
    try {
      await node.instance.amend(new OptionReader(Object.fromEntries(values), `Block format '${drv.name}'`), force, (done, total) => prog.print(amendPercent(done, total), 0));
    } catch (e) {
      prog.print(100, 0);
      fail(errText(e), 1, errHint(e));
    }
    prog.print(100, 0);
    return 0;
  } finally {
    prog.end();
  }
}

/** qemu-img's amend status callback computes the percentage in single precision. */
function amendPercent(done: number, total: number): number {
  const f = Math.fround;
  return f(f(100 * f(done)) / f(total));
}

/**
 * The -o list read against the driver's amend options as QemuOpts does (types
 * checked, bare keys as booleans, the last of a repeated key counts). A list
 * that would be valid for creation gets qemu-img's hint that the option is
 * only for creation.
 */
function amendValues(ctx: Ctx, drv: BlockDriver, specs: readonly CreateOptionSpec[], text: string): Map<string, string> {
  try {
    return readOptions(specs, text, (w) => ctx.warn(w));
  } catch (e) {
    if (!(e instanceof OptsError)) throw e;
    let hint = e.extra;
    try {
      readOptions([...specs, ...(drv.createOptions ?? [])], text, () => undefined);
      hint += CREATE_ONLY_HINT;
    } catch {
      // Not valid for creation either: no hint.
    }
    fail(e.message, 1, hint);
  }
}

function readOptions(specs: readonly CreateOptionSpec[], text: string, warn: (w: string) => void): Map<string, string> {
  const values = new Map<string, string>();
  for (const [k, v] of parseOptionList(text)) {
    const spec = specs.find((s) => s.name === k);
    if (!spec) throw new OptsError(`Invalid parameter '${k}'`);
    const checked = checkOptionValue(spec, v, warn);
    values.set(k, spec.type === 'bool' ? (boolValue(checked) ?? checked) : checked);
  }
  return values;
}

/** print_amend_option_help: the driver's amend options, or why there are none. */
function printAmendHelp(ctx: Ctx, fmt: string): number {
  let drv: BlockDriver | undefined;
  try {
    drv = ctx.graph.getDriver(fmt);
  } catch {
    drv = undefined;
  }
  if (!drv) {
    const theirs = qemuOnlyDriver(fmt);
    if (!theirs) fail(`Unknown file format '${fmt}'`);
    if (!theirs.amend) fail(`Format driver '${fmt}' does not support option amendment`);
    // QEMU would list them; we do not have the driver.
    fail(`Image format '${fmt}' is not supported`);
  }
  const list = drv.amendOptions;
  if (!list) fail(`Format driver '${fmt}' does not support option amendment`);
  ctx.out(`Amend options for '${fmt}':\n` + optionHelpList(list));
  return 0;
}

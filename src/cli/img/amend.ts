/**
 * `img amend`.
 */
import { OptionReader, parseKeyValueList } from '../../core/options.js';
import { errText, formatNode } from '../common.js';
import { errorExit, fail, Ctx, parseOpts, COMMON_LONGS, Progress } from './context.js';
import { optionHelpList, hasHelp } from './create-options.js';
import { help } from './help.js';

// amend

export async function cmdAmend(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'ho:f:t:pqU', [{ name: 'force', hasArg: 0, val: 'force' }, ...COMMON_LONGS]);
  let fmt: string | undefined;
  const options: string[] = [];
  let force = false;
  let progress = false;
  let quiet = false;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'o': options.push(o.arg!); break;
      case 'f': fmt = o.arg; break;
      case 'p': progress = true; break;
      case 'q': quiet = true; break;
      case 'force': force = true; break;
      default: break;
    }
  }
  if (options.length === 0) errorExit('Must specify options (-o)');
  if (quiet) progress = false;
  const optText = options.join(',');
  if (fmt && hasHelp(optText)) return printAmendHelp(ctx, fmt);
  if (operands.length !== 1) fail('Expecting one image file name');
  const bb = await ctx.open(operands[0]!, fmt, { readOnly: false });
  const node = formatNode(bb.node);
  if (hasHelp(optText)) return printAmendHelp(ctx, node.driver.name);
  if (!node.instance.amend) fail(`Format driver '${node.driver.name}' does not support option amendment`);
  let kv: Record<string, string>;
  try {
    kv = parseKeyValueList(optText);
  } catch (e) {
    fail(errText(e));
  }
  const prog = new Progress(ctx, progress, 1.0);
  prog.print(0, 0);
  try {
    await node.instance.amend(new OptionReader({ ...kv }, `Block format '${node.driver.name}'`), force);
  } catch (e) {
    prog.end();
    const m = /does not support the option '([^']+)'/.exec(errText(e));
    fail(m ? `Invalid parameter '${m[1]}'` : errText(e));
  }
  prog.print(100, 0);
  prog.end();
  return 0;
}

function printAmendHelp(ctx: Ctx, fmt: string): number {
  let drv;
  try {
    drv = ctx.graph.getDriver(fmt);
  } catch {
    fail(`Unknown file format '${fmt}'`);
  }
  const list = drv.amendOptions;
  if (!list) fail(`Format driver '${fmt}' does not support option amendment`);
  ctx.out(`Amend options for '${fmt}':\n` + optionHelpList(list));
  return 0;
}

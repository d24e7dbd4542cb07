/**
 * `img resize`.
 */
import { type PreallocMode } from '../../core/driver.js';
import { parseSizeQemu } from '../format.js';
import { errText } from '../common.js';
import { errorExit, fail, Ctx, parseOpts, COMMON_LONGS } from './context.js';
import { help } from './help.js';

// resize

export async function cmdResize(ctx: Ctx, args0: string[]): Promise<number> {
  if (args0.length < 2) errorExit('Not enough arguments');
  const args = args0.slice(0, -1);
  let sizeText = args0[args0.length - 1]!;
  const { opts, operands } = parseOpts(args, 'f:hq', [
    { name: 'preallocation', hasArg: 1, val: 'prealloc' },
    { name: 'shrink', hasArg: 0, val: 'shrink' },
    ...COMMON_LONGS,
  ]);
  let fmt: string | undefined;
  let quiet = false;
  let shrink = false;
  let prealloc: PreallocMode = 'off';
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'q': quiet = true; break;
      case 'shrink': shrink = true; break;
      case 'prealloc':
        if (!['off', 'metadata', 'falloc', 'full'].includes(o.arg!)) fail(`Invalid preallocation mode '${o.arg}'`);
        prealloc = o.arg as PreallocMode;
        break;
      default: break;
    }
  }
  if (operands.length !== 1) errorExit('Expecting image file name and size');
  const filename = operands[0]!;
  let relative = 0;
  if (sizeText.startsWith('+')) {
    relative = 1;
    sizeText = sizeText.slice(1);
  } else if (sizeText.startsWith('-')) {
    relative = -1;
    sizeText = sizeText.slice(1);
  }
  const r = parseSizeQemu(sizeText);
  if (!r.ok) {
    fail(
      "Parameter 'size' expects a non-negative number below 2^64",
      1,
      'Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.\n',
    );
  }
  const bb = await ctx.open(filename, fmt, { readOnly: false });
  const current = bb.length;
  const totalSize = relative ? current + r.value * relative : r.value;
  if (totalSize <= 0) fail('New image size must be positive');
  if (totalSize <= current && prealloc !== 'off') fail('Preallocation can only be used for growing images');
  if (totalSize < current && !shrink) {
    ctx.report('Use the --shrink option to perform a shrink operation.');
    ctx.warn("Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there.");
    return 1;
  }
  try {
    await bb.truncate(totalSize, { exact: true, prealloc });
  } catch (e) {
    fail(errText(e));
  }
  if (!quiet) ctx.out('Image resized.\n');
  return 0;
}

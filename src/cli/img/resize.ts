/**
 * `img resize`.
 */
import { type PreallocMode } from '../../core/driver.js';
import { OptsError, parseSizeOptionExact } from '../qemu-opts.js';
import { errHint, errText } from '../common.js';
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
  ], ctx);
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
  // QEMU reads the size as a QemuOpts size option: hex with a suffix is warned about, bad text gets the suffix hint.
  let size: bigint;
  try {
    size = parseSizeOptionExact('size', sizeText, (w) => ctx.warn(w));
  } catch (e) {
    if (e instanceof OptsError) fail(e.message, 1, e.extra);
    throw e;
  }
  const bb = await ctx.open(filename, fmt, { readOnly: false });
  const current = bb.length;
  // QEMU's int64 arithmetic: a size past 2^63 wraps to a negative one.
  const total = BigInt.asIntN(64, relative ? BigInt(current) + size * BigInt(relative) : size);
  if (total <= 0n) fail('New image size must be positive');
  // Past 2^53 only sizes a number holds exactly go on (the drivers refuse them as too large).
  if (BigInt(Number(total)) !== total) fail(`Image size ${total} is too large`, 1);
  const totalSize = Number(total);
  if (totalSize <= current && prealloc !== 'off') fail('Preallocation can only be used for growing images');
  if (totalSize < current && !shrink) {
    ctx.report('Use the --shrink option to perform a shrink operation.');
    ctx.warn("Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there.");
    return 1;
  }
  try {
    await bb.truncate(totalSize, { exact: true, prealloc });
  } catch (e) {
    fail(errText(e), 1, errHint(e));
  }
  if (!quiet) ctx.out('Image resized.\n');
  return 0;
}

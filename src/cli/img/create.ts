/**
 * `img create`.
 */
import { BlockBackend } from '../../core/backend.js';
import { joinRelative } from '../../core/backing-open.js';
import { parseKeyValueList } from '../../core/options.js';
import { createImage } from '../../core/create.js';
import { parseSizeQemu } from '../format.js';
import { boolValue, isValidOptionList } from '../qemu-opts.js';
import { CliExit, errHint, errText, formatNode } from '../common.js';
import { PROG, errorExit, fail, Ctx, parseOpts, COMMON_LONGS } from './context.js';
import { creatableDriver, printOptionHelp, hasHelp, buildCreateOpts, formatOptsLine, toCreateRecord } from './create-options.js';
import { help } from './help.js';
import { hugeImageSize, imageTooLargeMessage } from './create-size.js';

export async function cmdCreate(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'F:b:f:ho:qu', [...COMMON_LONGS], ctx);
  let fmt = 'raw';
  let base: string | undefined;
  let baseFmt: string | undefined;
  const options: string[] = [];
  let quiet = false;
  let unsafe = false;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'F': baseFmt = o.arg; break;
      case 'b': base = o.arg; break;
      case 'f': fmt = o.arg!; break;
      case 'o':
        if (!isValidOptionList(o.arg!)) fail(`Invalid option list: ${o.arg}`);
        options.push(o.arg!);
        break;
      case 'q': quiet = true; break;
      case 'u': unsafe = true; break;
      default: break;
    }
  }
  if (operands.length < 1) {
    if (options.some((t) => hasHelp(t))) return printOptionHelp(ctx, fmt);
    errorExit('Expecting image file name');
  }
  const filename = operands[0]!;
  let imgSize: number | undefined;
  // A size QEMU takes but we cannot hold: printed, then refused as too large.
  let hugeSize = operands.length >= 2 ? hugeImageSize(operands[1]!) : undefined;
  if (operands.length >= 2 && hugeSize === undefined) {
    const r = parseSizeQemu(operands[1]!);
    if (!r.ok) {
      // QEMU 7.2's cvtnum range message (sizes past 2^53 cannot be held exactly here either).
      if (r.reason === 'range') fail('Invalid image size specified. Must be between 0 and 9223372036854775807.');
      fail(
        'Invalid image size specified. You may use k, M, G, T, P or E suffixes for',
        1,
        `${PROG}: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.\n`,
      );
    }
    imgSize = r.value;
  }
  if (operands.length > 2) errorExit(`Unexpected argument: ${operands[2]}`);
  if (options.some((t) => hasHelp(t))) return printOptionHelp(ctx, fmt, filename);

  const prefix = `${filename}: `;
  creatableDriver(ctx, fmt, prefix);
  let built;
  try {
    built = buildCreateOpts(ctx, fmt, filename, options);
  } catch (e) {
    if (e instanceof CliExit) fail(`${prefix}${e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message}`, e.exitCode, e.hint);
    throw e;
  }
  const { specs, values } = built;
  const numeric = new Set<string>();
  if ((imgSize !== undefined || hugeSize !== undefined) && values.has('size')) fail(`${prefix}The image size must be specified only once`);
  if (imgSize !== undefined || hugeSize !== undefined) {
    values.set('size', hugeSize ?? String(imgSize));
    numeric.add('size');
  }
  if (base !== undefined) {
    if (!specs.some((s) => s.name === 'backing_file')) fail(`${prefix}Backing file not supported for file format '${fmt}'`);
    values.set('backing_file', base);
  }
  if (baseFmt !== undefined) {
    if (!specs.some((s) => s.name === 'backing_fmt')) fail(`${prefix}Backing file format not supported for file format '${fmt}'`);
    values.set('backing_fmt', baseFmt);
  }
  const backingFile = values.get('backing_file');
  const backingFmt = values.get('backing_fmt');
  if (backingFile !== undefined) {
    if (backingFile === filename) fail(`${prefix}Error: Trying to create an image with the same filename as the backing file`);
    if (backingFile === '') fail(`${prefix}Expected backing file name, got empty string`);
  }
  let size: number | undefined;
  hugeSize ??= values.has('size') ? hugeImageSize(values.get('size')!) : undefined;
  if (values.has('size') && hugeSize === undefined) {
    const r = parseSizeQemu(values.get('size')!);
    if (!r.ok) {
      fail(
        `${prefix}Parameter 'size' expects a non-negative number below 2^64`,
        1,
        'Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.\n',
      );
    }
    size = r.value;
  }
  if (backingFile !== undefined && !unsafe) {
    const full = /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(backingFile) ? backingFile : joinRelative(filename, backingFile);
    let bb: BlockBackend;
    try {
      // QEMU opens it with BDRV_O_NO_IO: an encrypted backing file needs no key for its size.
      const spec = { filename: full, 'force-share': true };
      const opts = { readOnly: true, ...(backingFmt ? { format: backingFmt } : {}) };
      const noIo = backingFmt === undefined || backingFmt === 'qcow2' || backingFmt === 'luks';
      bb = noIo
        ? await BlockBackend.open(ctx.graph, { ...spec, 'x-no-io': true }, opts, { name: '' }).catch(() => BlockBackend.open(ctx.graph, spec, opts, { name: '' }))
        : await BlockBackend.open(ctx.graph, spec, opts, { name: '' });
    } catch (e) {
      fail(`${prefix}${errText(e)}`, 1, `${errHint(e)}Could not open backing image.\n`);
    }
    const detected = formatNode(bb.node).driver.name;
    const blen = bb.length;
    await bb.close();
    if (!backingFmt) fail(`${prefix}Backing file specified without backing format`, 1, `Detected format of ${detected}.`);
    if (size === undefined) {
      size = blen;
      values.set('size', String(blen));
      numeric.add('size');
    }
  } else if (backingFile !== undefined && !backingFmt) {
    fail(`${prefix}Backing file specified without backing format`);
  }
  if (size === undefined && hugeSize === undefined) fail(`${prefix}Image creation needs a size parameter`);
  if (!quiet) {
    ctx.out(`Formatting '${filename}', fmt=${fmt} ${formatOptsLine(specs, values, numeric)}\n`);
    // QEMU's bdrv_img_create flushes here: the line comes before any error of the create.
    ctx.io.flush?.();
  }
  if (hugeSize !== undefined || size === undefined) fail(`${prefix}${imageTooLargeMessage(fmt, specs, values)}`);
  for (const w of built.rereadWarnings) ctx.warn(w);
  const record = toCreateRecord(values);
  record['size'] = size;
  // Booleans in QEMU's other spellings (yes, true, y, ...) reach the driver as on / off.
  for (const spec of specs) {
    const v = values.get(spec.name);
    if (spec.type === 'bool' && v !== undefined) record[spec.name] = boolValue(v) ?? v;
  }
  try {
    await createImage(ctx.graph, fmt, filename, record);
  } catch (e) {
    const err = e as { code?: string };
    if (err.code === 'EFBIG') fail(`${prefix}${imageTooLargeMessage(fmt, specs, values)}`);
    fail(`${prefix}${errText(e)}`, 1, errHint(e));
  }
  return 0;
}

export function parseKeyValueListSafe(text: string): boolean {
  try {
    parseKeyValueList(text);
    return true;
  } catch {
    return hasHelp(text);
  }
}

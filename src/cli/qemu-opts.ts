/**
 * qemu-img's `-o` lists read as QEMU's QemuOpts reads them: `,,` is a comma
 * inside a value, a bare `key` means `key=on` and `nokey` means `key=off`,
 * and each value is checked against its option's type while the list is
 * parsed (before "Formatting ..."), with QEMU's messages. Sizes take hex too;
 * a hex number with a suffix works but is warned about, as in QEMU 7.2.
 */
import type { CreateOptionSpec } from '../core/driver.js';
import { parseSizeExact } from './format.js';
import { hugeImageSize } from './img/create-size.js';

/** A failure to report as `<filename>: <message>` (more lines may follow). */
export class OptsError extends Error {
  constructor(
    message: string,
    /** Lines printed after the message, without the program prefix. */
    readonly extra = '',
  ) {
    super(message);
  }
}

/** Whether qemu-img takes the text as an option list at all: no empty element. */
export function isValidOptionList(text: string): boolean {
  if (text === '' || text.startsWith(',')) return false;
  for (const item of splitItems(text)) if (item === '') return false;
  return true;
}

/** Items split at single commas; `,,` stays in the item as one comma. */
function splitItems(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    if (text[i] === ',') {
      if (text[i + 1] === ',') {
        cur += ',';
        i++;
        continue;
      }
      out.push(cur);
      cur = '';
    } else {
      cur += text[i];
    }
  }
  out.push(cur);
  return out;
}

/**
 * Whether an option list asks for help: an item `help` or `?` of its own.
 * `,,` is an escaped comma inside a value, so `backing_file=a,,help` names
 * the file `a,help` and asks for nothing (qemu-img's has_help_option).
 */
export function optionListHasHelp(text: string): boolean {
  return splitItems(text).some((item) => item === 'help' || item === '?');
}

/** `key=value` pairs of one list, in order, with QEMU's bare-key booleans. */
export function parseOptionList(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const item of splitItems(text)) {
    if (item === '') continue;
    // A name ends at '=' or at a comma (an escaped one too: names take no escapes).
    const end = item.search(/[=,]/);
    const name = end < 0 ? item : item.slice(0, end);
    if (end >= 0 && item[end] === '=') out.push([name, item.slice(end + 1)]);
    else if (name.startsWith('no')) out.push([name.slice(2), 'off']);
    else out.push([name, 'on']);
  }
  return out;
}

const SIZE_HELP = 'Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.\n';

/**
 * A size option's value in bytes, exactly (below 2^64). Hex takes a suffix
 * with a deprecation warning (passed to `warn`); a value past 2^64 is out of
 * range; anything else bad is QEMU's size error with the suffix help.
 */
export function parseSizeOptionExact(name: string, value: string, warn: (line: string) => void): bigint {
  const hexSuffixed = /^\s*0[xX]([0-9a-fA-F]+)([kKmMgGtTpPeE])$/.exec(value);
  let r: ReturnType<typeof parseSizeExact>;
  if (hexSuffixed) {
    warn(`Using a multiplier suffix on hex numbers is deprecated: ${value}`);
    const shift = 10n * BigInt('BKMGTPE'.indexOf(hexSuffixed[2]!.toUpperCase()));
    const v = BigInt(`0x${hexSuffixed[1]}`) << shift;
    r = v < 1n << 64n ? { ok: true, value: v } : { ok: false, reason: 'range' };
  } else {
    r = parseSizeExact(value);
  }
  if (r.ok) return r.value;
  if (r.reason === 'range') throw new OptsError(`Value '${value}' is out of range for parameter '${name}'`);
  throw new OptsError(`Parameter '${name}' expects a non-negative number below 2^64`, SIZE_HELP);
}

/** {@link parseSizeOptionExact} for sizes we hold in a number (up to 2^53). */
export function parseSizeOption(name: string, value: string, warn: (line: string) => void): number {
  const v = parseSizeOptionExact(name, value, warn);
  if (v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  throw new OptsError(`Parameter '${name}' expects a non-negative number below 2^64`, SIZE_HELP);
}

/**
 * Checks `value` against the option's type as QemuOpts does while parsing;
 * returns the value to keep (sizes and numbers as decimal, as QEMU prints
 * them in "Formatting ...").
 */
export function checkOptionValue(spec: CreateOptionSpec, value: string, warn: (line: string) => void, exactSize = false): string {
  switch (spec.type) {
    case 'size': {
      // measure computes with any uint64 image size (exactSize), as QEMU does.
      if (exactSize && spec.name === 'size') return String(parseSizeOptionExact(spec.name, value, warn));
      // The image size may exceed what we hold; create prints it, then refuses it.
      const huge = spec.name === 'size' ? hugeImageSize(value) : undefined;
      return huge ?? String(parseSizeOption(spec.name, value, warn));
    }
    case 'number':
      // Checked here; the driver reads the text itself, as in QEMU (see parseNumberOption).
      parseNumberOption(spec.name, value);
      return value;
    case 'bool':
      if (boolValue(value) === undefined) throw new OptsError(`Parameter '${spec.name}' expects 'on' or 'off'`);
      return value;
    default:
      return value;
  }
}

/**
 * A number option as QemuOpts reads it (strtoull in base 0): leading blanks,
 * a sign, then hex (`0x`), octal (leading `0`) or decimal digits up to the
 * end. A negative number wraps around 2^64; the value printed in
 * "Formatting ..." is that as a signed 64-bit number (`-1` stays -1). The
 * driver reads the text again, as a signed 64-bit number.
 */
export function parseNumberOption(name: string, value: string): string {
  const m = /^[ \t\n\v\f\r]*([+-]?)(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))$/.exec(value);
  if (!m) throw new OptsError(`Parameter '${name}' expects a number`);
  const magnitude = m[2] !== undefined ? BigInt(`0x${m[2]}`) : m[3] !== undefined ? BigInt(`0o${m[3].slice(1) || '0'}`) : BigInt(m[4]!);
  if (magnitude >= 1n << 64n) throw new OptsError(`Value '${value}' is too large for parameter '${name}'`);
  const wrapped = m[1] === '-' ? ((1n << 64n) - magnitude) % (1n << 64n) : magnitude;
  return BigInt.asIntN(64, wrapped).toString();
}

/** QEMU's boolean spellings; undefined for anything else. */
export function boolValue(text: string): 'on' | 'off' | undefined {
  if (['on', 'yes', 'true', 'y'].includes(text)) return 'on';
  if (['off', 'no', 'false', 'n'].includes(text)) return 'off';
  return undefined;
}

/** Whether a size value is hex with a suffix (QEMU warns each time it reads one). */
export function isHexWithSuffix(value: string): boolean {
  return /^\s*0[xX][0-9a-fA-F]+[kKmMgGtTpPeE]$/.test(value);
}

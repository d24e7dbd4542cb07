/**
 * Values of QemuOpts options as QEMU parses them when a driver absorbs its
 * runtime options (blkdebug's rules, quorum's settings): numbers in C's
 * base-0 syntax wrapped like strtoull, and QEMU's boolean spellings.
 */
import { BlockError, einval } from '../core/errors.js';
import type { OptionValue } from '../core/options.js';

/** QEMU's parse_option_number: an unsigned 64-bit number in C's base-0 syntax, wrapped like strtoull. */
export function parseOptNumber(key: string, text: string): bigint {
  const m = /^\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  if (!m) throw einval(`Parameter '${key}' expects a number`, {}, `got '${text}'`);
  const digits = m[2]!;
  const magnitude = /^0[0-7]+$/.test(digits) ? BigInt('0o' + digits.slice(1)) : BigInt(digits);
  if (magnitude >= 1n << 64n) throw einval(`Value '${text}' is too large for parameter '${key}'`);
  return m[1] === '-' ? BigInt.asUintN(64, -magnitude) : magnitude;
}

/** QEMU's qapi_bool_parse: on/yes/true/y and off/no/false/n. */
export function parseOptBool(key: string, text: string): boolean {
  if (text === 'on' || text === 'yes' || text === 'true' || text === 'y') return true;
  if (text === 'off' || text === 'no' || text === 'false' || text === 'n') return false;
  throw einval(`Parameter '${key}' expects 'on' or 'off'`, {}, `got '${text}'`);
}

/**
 * The text QemuOpts sees for a value from a JSON or dotted option: strings as
 * they are, numbers in decimal, booleans as on / off (qemu_opts_from_qdict).
 * Undefined for absent values and for objects and lists, which QemuOpts
 * does not take.
 */
export function optText(v: OptionValue): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  return undefined;
}

/** The hint QEMU adds to a bad size option. */
const SIZE_HINT = 'Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.\n';

/**
 * QEMU's parse_option_size: a byte count below 2^64 with an optional binary
 * suffix (k, M, G, T, P, E; a fraction only with a suffix), or hex. Values
 * past 2^53, which no length here can use, count as out of range.
 */
export function parseOptSize(key: string, text: string): number {
  const s = text.replace(/^\s+/, '');
  const m = /^(?:0[xX]([0-9a-fA-F]+)|([0-9]+)(?:\.([0-9]*))?)([bBkKmMgGtTpPeE]?)$/.exec(s);
  const bad = () => new BlockError('EINVAL', `Parameter '${key}' expects a non-negative number below 2^64`, {}, { hint: SIZE_HINT });
  if (!m) throw bad();
  const shift = 10n * BigInt(' KMGTPE'.indexOf((m[4] || ' ').toUpperCase().replace('B', ' ')));
  let value: bigint;
  if (m[1] !== undefined) {
    value = BigInt('0x' + m[1]) << shift;
  } else {
    value = BigInt(m[2]!) << shift;
    const frac = m[3] ?? '';
    if (/[1-9]/.test(frac)) {
      if (shift === 0n) throw bad();
      const den = 10n ** BigInt(frac.length);
      value += (BigInt(frac) * (1n << shift) * 2n + den) / (2n * den);
    }
  }
  if (value >= 1n << 64n || value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw einval(`Value '${text}' is out of range for parameter '${key}'`);
  }
  return Number(value);
}

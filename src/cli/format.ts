/**
 * Number and JSON formatting the way qemu-img / qemu-io print them: size
 * parsing with suffixes (qemu_strtosz), human sizes ("1 MiB", "1.500 KiB"),
 * C printf %g, and QEMU's pretty JSON whose object keys come out in the order
 * of its hash-table dictionary.
 */
import { qdictOrder as qdictEntryOrder, qemuQuote } from '../core/qemu-json.js';

const SUFFIXES = 'BKMGTPE';

/** Outcome of parsing a size: bytes, or why not. */
export type SizeParse = { ok: true; value: number } | { ok: false; reason: 'invalid' | 'range' };

/**
 * Parses a size like qemu_strtosz: decimal digits with an optional fraction
 * and one suffix (B, K, M, G, T, P, E, any case; bytes by default), or a hex
 * number (`0x...`) without fraction or suffix. Leading blanks are allowed,
 * anything after the number is invalid. Values above 2^53 are reported as
 * out of range (this implementation works in JS numbers).
 */
export function parseSizeQemu(text: string, defaultSuffix = 'B'): SizeParse {
  const r = parseSizeExact(text, defaultSuffix);
  if (!r.ok) return r;
  if (r.value > BigInt(Number.MAX_SAFE_INTEGER)) return { ok: false, reason: 'range' };
  return { ok: true, value: Number(r.value) };
}

/** {@link parseSizeQemu} without the 2^53 limit: any value below 2^64, exactly. */
export function parseSizeExact(text: string, defaultSuffix = 'B'): { ok: true; value: bigint } | { ok: false; reason: 'invalid' | 'range' } {
  const s = text.replace(/^[ \t\n\v\f\r]+/, '');
  if (s.startsWith('-')) return { ok: false, reason: 'invalid' };
  const body = s.startsWith('+') ? s.slice(1) : s;
  const hex = /^0[xX]([0-9a-fA-F]+)$/.exec(body);
  if (hex) {
    const v = BigInt('0x' + hex[1]);
    return v >= 1n << 64n ? { ok: false, reason: 'range' } : { ok: true, value: v };
  }
  const m = /^([0-9]+)(?:\.([0-9]*))?([a-zA-Z]?)$/.exec(body);
  if (!m) return { ok: false, reason: 'invalid' };
  const [, intPart, frac, suf] = m;
  const sufIdx = SUFFIXES.indexOf((suf || defaultSuffix).toUpperCase());
  if (sufIdx < 0) return { ok: false, reason: 'invalid' };
  const mul = 1n << BigInt(10 * sufIdx);
  let value = BigInt(intPart!) * mul;
  if (frac !== undefined && /[1-9]/.test(frac)) {
    if (mul === 1n) return { ok: false, reason: 'invalid' };
    const den = 10n ** BigInt(frac.length);
    const num = BigInt(frac) * mul;
    value += (num * 2n + den) / (2n * den); // round half up
  }
  if (value >= 1n << 64n) return { ok: false, reason: 'range' };
  return { ok: true, value };
}

/**
 * C's printf("%.{digits}f", v): like toFixed, but an exact tie rounds to even
 * as glibc does (3.125 → "3.12").
 */
export function cFixed(v: number, digits: number): string {
  const plain = v.toFixed(digits);
  if (!Number.isFinite(v) || Math.abs(v) >= 1e21) return plain;
  const exact = v.toFixed(100);
  const dot = exact.indexOf('.');
  const rest = exact.slice(dot + 1 + digits);
  if (!/^50*$/.test(rest)) return plain;
  // A tie: round half to even.
  const truncated = exact.slice(0, digits === 0 ? dot : dot + 1 + digits);
  const lastDigit = Number(truncated[truncated.length - 1]);
  if (lastDigit % 2 === 0) return truncated;
  return plain;
}

/** C's printf("%.{prec}g", v). */
export function fmtG(value: number, prec = 6): string {
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return '0';
  const p = prec === 0 ? 1 : prec;
  const v = tieToEven(value, p);
  const exp = Number(v.toExponential(p - 1).split('e')[1]);
  let out: string;
  if (exp < -4 || exp >= p) {
    const [mant, e] = v.toExponential(p - 1).split('e');
    let mm = mant!;
    if (mm.includes('.')) mm = mm.replace(/0+$/, '').replace(/\.$/, '');
    const en = Number(e);
    out = `${mm}e${en < 0 ? '-' : '+'}${String(Math.abs(en)).padStart(2, '0')}`;
  } else {
    out = v.toFixed(Math.max(0, p - 1 - exp));
    if (out.includes('.')) out = out.replace(/0+$/, '').replace(/\.$/, '');
  }
  return out;
}

/**
 * printf rounds a value exactly halfway between two `p`-digit results to the
 * even one (9.625 → "9.62"), JS's toFixed / toExponential round it up: the
 * value to format instead, so that JS gives printf's digits.
 */
function tieToEven(v: number, p: number): number {
  // 100 significant digits hold every tie exactly (a tie's expansion ends at digit p + 1).
  const [m, e] = Math.abs(v).toExponential(99).split('e');
  const digits = m!.replace('.', '');
  if (digits[p] !== '5' || !/^0*$/.test(digits.slice(p + 1)) || Number(digits[p - 1]) % 2 === 1) return v;
  return Math.sign(v) * Number(`${digits.slice(0, p)}e${Number(e) - p + 1}`);
}

/** QEMU's size_to_str: "1 MiB", "196 KiB", "1.5 GiB" (three significant digits). */
export function sizeToStr(val: number): string {
  const suffixes = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei'];
  const x = val / (1000 / 1024);
  let e = 0;
  if (x !== 0) e = Math.floor(Math.log2(x)) + 1; // frexp exponent
  // Guard against log2 rounding at exact powers of two.
  if (x !== 0 && 2 ** (e - 1) > x) e--;
  if (x !== 0 && 2 ** e <= x) e++;
  const i = Math.trunc((e - 1) / 10);
  const div = 2 ** (i * 10);
  return `${fmtG(val / div, 3)} ${suffixes[i]}B`;
}

/** qemu-io's cvtstr: "%.3f" in the largest binary unit, ".000" dropped. */
export function cvtstr(value: number): string {
  const units: Array<[number, string]> = [
    [2 ** 60, ' EiB'],
    [2 ** 50, ' PiB'],
    [2 ** 40, ' TiB'],
    [2 ** 30, ' GiB'],
    [2 ** 20, ' MiB'],
    [2 ** 10, ' KiB'],
  ];
  let str: string;
  let suffix = ' bytes';
  const u = units.find(([n]) => value >= n);
  if (u) {
    str = cFixed(value / u[0], 3);
    suffix = u[1];
  } else {
    str = cFixed(value, 6);
  }
  const trim = str.indexOf('.000');
  return trim >= 0 ? str.slice(0, trim) + suffix : str + suffix;
}

/** Orders keys the way QEMU iterates a QDict built by inserting them in `keys` order. */
export function qdictOrder(keys: string[]): string[] {
  return qdictEntryOrder(keys.map((k) => [k, k] as const)).map(([k]) => k);
}

/** A JSON value for {@link toQemuJson}; object keys are put in QDict order. */
export type JsonValue = string | number | bigint | boolean | null | JsonValue[] | { [k: string]: JsonValue | undefined };

const quote = qemuQuote;

/** QEMU's qobject_to_json_pretty: 4-space indent, keys in QDict order. */
export function toQemuJson(v: JsonValue, indent = 0, ordered = true): string {
  const nl = (n: number) => '\n' + '    '.repeat(n);
  if (v === null) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : fmtG(v, 17);
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'string') return quote(v);
  if (Array.isArray(v)) {
    if (v.length === 0) return '[' + nl(indent) + ']';
    return '[' + v.map((x) => nl(indent + 1) + toQemuJson(x, indent + 1, ordered)).join(',') + nl(indent) + ']';
  }
  const keys = Object.keys(v).filter((k) => v[k] !== undefined);
  const order = ordered ? qdictOrder(keys) : keys;
  if (order.length === 0) return '{' + nl(indent) + '}';
  return '{' + order.map((k) => `${nl(indent + 1)}${quote(k)}: ${toQemuJson(v[k]!, indent + 1, ordered)}`).join(',') + nl(indent) + '}';
}

/** printf("%#x")-style hex: "0" for zero, "0x..." otherwise. */
export function hexAlt(n: number): string {
  return n === 0 ? '0' : '0x' + n.toString(16);
}

/**
 * QMP's wire text as QEMU 7.2 writes it (qobject/json-writer.c and the
 * monitor): members in QDict order, ", " and ": " separators, or the pretty form (one member a
 * line, 4 spaces a level, empty containers opened and closed on two lines);
 * every character outside printable ASCII as a \uXXXX escape; doubles as
 * C's "%.17g"; each message ends with CR LF (the monitor turns every LF of
 * its output into CR LF).
 */
import { qemuQuote as quoted } from '../core/qemu-json.js';
import { QmpDouble, qdictKeyOrder } from './json.js';


/** C's printf("%.17g", v). */
export function formatDouble(v: number): string {
  if (Number.isNaN(v)) return v < 0 ? '-nan' : 'nan';
  if (!Number.isFinite(v)) return v < 0 ? '-inf' : 'inf';
  if (v === 0) return Object.is(v, -0) ? '-0' : '0';
  const [mant, expText] = v.toExponential(16).split('e') as [string, string];
  const exp = Number(expText);
  const strip = (s: string) => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);
  if (exp < -4 || exp >= 17) return `${strip(mant)}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  return strip(v.toFixed(16 - exp));
}

/** One scalar as QEMU writes it; integers as integers, other numbers as doubles. */
function scalar(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof QmpDouble) return formatDouble(v.value);
  if (typeof v === 'number') return Number.isInteger(v) && !Object.is(v, -0) && Math.abs(v) < 2 ** 64 ? BigInt(v).toString() : formatDouble(v);
  return quoted(String(v));
}

/** The text of one value (QEMU's to_json over its JSON writer). */
export function qmpJsonText(value: unknown, pretty = false): string {
  let out = '';
  let depth = 0;
  let needComma = false;
  const newline = () => (pretty ? `\n${' '.repeat(depth * 4)}` : '');
  const start = (name: string | undefined) => {
    if (needComma) out += ',' + (pretty ? newline() : ' ');
    else {
      if (out.length) out += newline();
      needComma = true;
    }
    if (name !== undefined) out += `${quoted(name)}: `;
  };
  const write = (name: string | undefined, v: unknown) => {
    if (v !== null && typeof v === 'object' && !(v instanceof QmpDouble)) {
      const isArray = Array.isArray(v);
      start(name);
      out += isArray ? '[' : '{';
      depth++;
      needComma = false;
      if (isArray) for (const x of v) write(undefined, x);
      else {
        const o = v as Record<string, unknown>;
        // QEMU writes a dict's members in its hash order.
        for (const k of qdictKeyOrder(Object.keys(o).filter((key) => o[key] !== undefined))) write(k, o[k]);
      }
      depth--;
      needComma = true;
      out += newline() + (isArray ? ']' : '}');
      return;
    }
    start(name);
    out += scalar(v);
  };
  write(undefined, value);
  return out;
}

/** One QMP message as the monitor sends it (with its line end; LF as CR LF throughout). */
export function qmpLine(value: unknown, pretty = false): string {
  return (qmpJsonText(value, pretty) + '\n').replaceAll('\n', '\r\n');
}

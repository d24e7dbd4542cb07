/**
 * The JSON dialect of QEMU's `json:` filenames: standard JSON plus strings in
 * single quotes (where `\'` is an escape and `"` needs none), which QEMU's
 * parser accepts and iotests use. Duplicate keys are refused. Errors carry
 * QEMU's wording ("JSON parse error, ..."), so `Could not parse the JSON
 * options: ...` reads as qemu-img prints it.
 */
import { einval } from './errors.js';

/** Longest input we parse (a filename; QEMU's lexer caps tokens and nesting too). */
const MAX_TEXT = 1 << 20;
/** Deepest nesting of objects and arrays. */
const MAX_NESTING = 64;

type Value = string | number | boolean | null | Value[] | { [k: string]: Value };

const parseError = (what: string) => einval(`JSON parse error, ${what}`);

class Parser {
  pos = 0;
  constructor(readonly text: string) {}

  skipSpace(): void {
    while (this.pos < this.text.length && ' \t\r\n'.includes(this.text[this.pos]!)) this.pos++;
  }

  atEnd(): boolean {
    this.skipSpace();
    return this.pos >= this.text.length;
  }

  value(depth: number): Value {
    this.skipSpace();
    const c = this.text[this.pos];
    if (c === undefined) throw parseError('premature EOI');
    if (c === '{' || c === '[') {
      if (depth >= MAX_NESTING) throw parseError(`nesting deeper than ${MAX_NESTING} levels`);
      return c === '{' ? this.object(depth + 1) : this.array(depth + 1);
    }
    if (c === '"' || c === "'") return this.string();
    if (c === '-' || (c >= '0' && c <= '9')) return this.number();
    if (c >= 'a' && c <= 'z') return this.keyword();
    if (c === '}' || c === ']' || c === ',' || c === ':') throw parseError('expecting value');
    throw parseError(`stray '${c}'`);
  }

  object(depth: number): Value {
    this.pos++; // {
    const out: { [k: string]: Value } = Object.create(null) as { [k: string]: Value };
    this.skipSpace();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return { ...out };
    }
    for (;;) {
      this.skipSpace();
      if (this.pos >= this.text.length) throw parseError('premature EOI');
      const key = this.value(depth);
      if (typeof key !== 'string') throw parseError('key is not a string in object');
      this.skipSpace();
      if (this.pos >= this.text.length) throw parseError('premature EOI');
      if (this.text[this.pos] !== ':') throw parseError('missing : in object pair');
      this.pos++;
      const v = this.value(depth);
      if (Object.prototype.hasOwnProperty.call(out, key)) throw parseError('duplicate key');
      out[key] = v;
      this.skipSpace();
      const sep = this.text[this.pos];
      if (sep === undefined) throw parseError('premature EOI');
      this.pos++;
      if (sep === '}') return { ...out };
      if (sep !== ',') throw parseError('expected separator in dict');
    }
  }

  array(depth: number): Value {
    this.pos++; // [
    const out: Value[] = [];
    this.skipSpace();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth));
      this.skipSpace();
      const sep = this.text[this.pos];
      if (sep === undefined) throw parseError('premature EOI');
      this.pos++;
      if (sep === ']') return out;
      if (sep !== ',') throw parseError('expected separator in list');
    }
  }

  string(): string {
    const start = this.pos;
    const quote = this.text[this.pos++]!;
    let out = '';
    for (;;) {
      const c = this.text[this.pos];
      // An unterminated string is a stray token to the end of the text.
      if (c === undefined) throw parseError(`stray '${this.text.slice(start)}'`);
      if (c === quote) {
        this.pos++;
        return out;
      }
      if (c < ' ') throw parseError(`stray '${this.text.slice(start, this.pos + 1)}'`);
      if (c !== '\\') {
        out += c;
        this.pos++;
        continue;
      }
      const e = this.text[this.pos + 1];
      const simple: Record<string, string> = { '"': '"', "'": "'", '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e !== undefined && e in simple) {
        out += simple[e];
        this.pos += 2;
      } else if (e === 'u') {
        const cp = this.unicodeEscape();
        out += String.fromCodePoint(cp);
      } else {
        throw parseError('invalid escape sequence in string');
      }
    }
  }

  /** \uXXXX, or a surrogate pair of two; lone surrogates are refused as QEMU does. */
  unicodeEscape(): number {
    const hex4 = (at: number): number | null => {
      const h = this.text.slice(at + 2, at + 6);
      return this.text[at] === '\\' && this.text[at + 1] === 'u' && /^[0-9a-fA-F]{4}$/.test(h) ? parseInt(h, 16) : null;
    };
    // Named up to the first character that is not a hex digit, that one included.
    const bad = (at: number) => {
      let end = at + 2;
      while (end < at + 6 && /[0-9a-fA-F]/.test(this.text[end] ?? '')) end++;
      return parseError(`${this.text.slice(at, end === at + 6 ? end : end + 1)} is not a valid Unicode character`);
    };
    const at = this.pos;
    const hi = hex4(at);
    if (hi === null) throw bad(at);
    this.pos += 6;
    if (hi >= 0xdc00 && hi <= 0xdfff) throw bad(at);
    if (hi < 0xd800 || hi > 0xdbff) return hi;
    const lo = hex4(this.pos);
    if (lo === null || lo < 0xdc00 || lo > 0xdfff) throw bad(at);
    this.pos += 6;
    return 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
  }

  /**
   * RFC 8259 numbers, lexed as QEMU's lexer does: a character that cannot
   * continue an unfinished number ("-", "1.", "1e", or a digit after a
   * leading 0) makes everything up to it a stray token.
   */
  number(): number {
    const start = this.pos;
    const t = this.text;
    const digit = (i: number) => t[i] !== undefined && t[i]! >= '0' && t[i]! <= '9';
    const stray = (i: number) => parseError(`stray '${t.slice(start, i + 1)}'`);
    let i = start;
    if (t[i] === '-') i++;
    if (t[i] === '0') {
      i++;
      if (digit(i)) throw stray(i);
    } else if (digit(i)) {
      while (digit(i)) i++;
    } else {
      throw stray(i);
    }
    if (t[i] === '.') {
      i++;
      if (!digit(i)) throw stray(i);
      while (digit(i)) i++;
    }
    if (t[i] === 'e' || t[i] === 'E') {
      i++;
      if (t[i] === '+' || t[i] === '-') i++;
      if (!digit(i)) throw stray(i);
      while (digit(i)) i++;
    }
    this.pos = i;
    return Number(t.slice(start, i));
  }

  keyword(): boolean | null {
    const m = /^[a-z]+/.exec(this.text.slice(this.pos))!;
    this.pos += m[0].length;
    if (m[0] === 'true') return true;
    if (m[0] === 'false') return false;
    if (m[0] === 'null') return null;
    throw parseError(`invalid keyword '${m[0]}'`);
  }
}

/**
 * Parses the text of a `json:` filename as QEMU does: one value (an empty
 * text or a second value is an error), with single-quoted strings allowed.
 */
export function parseQemuJson(text: string): unknown {
  if (text.length > MAX_TEXT) throw einval(`JSON options of ${text.length} characters are too long (at most ${MAX_TEXT})`);
  const p = new Parser(text);
  if (p.atEnd()) throw einval('Expecting a JSON value');
  const v = p.value(0);
  if (!p.atEnd()) throw einval('Expecting at most one JSON value');
  return v;
}

/** QDict's bucket for a key (QEMU's tdb_hash over its UTF-8 bytes, modulo its 512 buckets), in 32-bit arithmetic. */
function qdictBucket(key: string): number {
  const bytes = new TextEncoder().encode(key);
  let v = Math.imul(0x238f13af, bytes.length) >>> 0;
  for (let i = 0; i < bytes.length; i++) v = (v + ((bytes[i]! << ((i * 5) % 24)) >>> 0)) >>> 0;
  return ((Math.imul(1103515243, v) + 12345) >>> 0) % 512;
}

/**
 * A string as QEMU's JSON writer quotes it: the usual escapes, and every
 * character outside printable ASCII as `\uXXXX` (upper-case hex, surrogate
 * pairs beyond the BMP).
 */
export function qemuQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\b') out += '\\b';
    else if (ch === '\f') out += '\\f';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || c >= 0x7f) {
      const hex = (n: number) => `\\u${n.toString(16).toUpperCase().padStart(4, '0')}`;
      out += c > 0xffff ? hex(0xd800 + ((c - 0x10000) >> 10)) + hex(0xdc00 + ((c - 0x10000) & 0x3ff)) : hex(c);
    } else out += ch;
  }
  return out + '"';
}

/**
 * A flat option dictionary as QEMU writes it into a `json:{...}` filename:
 * keys in QDict order (by hash bucket; a later key first within a bucket),
 * `"key": value` pairs separated by `, `. Values are strings, numbers or
 * booleans, as they were given.
 */
export function qdictJson(entries: ReadonlyArray<readonly [string, string | number | boolean]>): string {
  return qdictJsonNested(entries);
}

/**
 * A value of {@link qdictJsonNested}: a scalar, a list, or a nested
 * dictionary's entries in insertion order.
 */
export type QdictValue =
  | string
  | number
  | boolean
  | null
  | readonly QdictValue[]
  | { readonly entries: ReadonlyArray<readonly [string, QdictValue]> };

/** A dictionary's entries in insertion order (see {@link QdictValue}). */
export type QdictEntries = ReadonlyArray<readonly [string, QdictValue]>;

/** Entries in the order QEMU walks a QDict they were inserted into in this order. */
export function qdictOrder<T>(entries: ReadonlyArray<readonly [string, T]>): Array<readonly [string, T]> {
  const order = entries.map((e, i) => ({ e, i, b: qdictBucket(e[0]) }));
  order.sort((x, y) => x.b - y.b || y.i - x.i);
  return order.map((o) => o.e);
}

/** One value as QEMU's compact JSON writer (qobject_to_json) prints it. */
export function qdictValueJson(v: QdictValue): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return qemuQuote(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `[${(v as readonly QdictValue[]).map(qdictValueJson).join(', ')}]`;
  return qdictJsonNested((v as { readonly entries: QdictEntries }).entries);
}

/**
 * A nested option dictionary as QEMU writes it (qobject_to_json of a QDict
 * holding QDicts and QLists): every level in QDict order, as {@link qdictJson}.
 */
export function qdictJsonNested(entries: QdictEntries): string {
  return `{${qdictOrder(entries).map(([k, v]) => `${qemuQuote(k)}: ${qdictValueJson(v)}`).join(', ')}}`;
}

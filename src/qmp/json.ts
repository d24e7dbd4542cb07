/**
 * QMP's JSON input as QEMU 7.2 reads it (qobject/json-lexer.c,
 * json-streamer.c, json-parser.c): a byte-level lexer that recovers from a
 * bad character at the next structural one, a streamer that ends a message
 * when its brackets balance, and a parser whose numbers keep QEMU's kinds:
 * an integer is int64 when it fits, else uint64, else a double, and a number
 * written with a fraction or an exponent is a double even when its value is
 * whole. Single-quoted strings are accepted (QEMU's extension).
 *
 * Values are plain JSON values except numbers JavaScript cannot keep apart:
 * an integer beyond 2^53 is a bigint, a whole-valued double a
 * {@link QmpDouble}. {@link plainJson} turns them into numbers once the
 * argument checks have seen them.
 */
import { qdictOrder } from '../core/qemu-json.js';
import { QmpError, genericError } from './errors.js';

/** A double whose value is whole (1.0, 1e3, -0.0, 2^64): QEMU's visitors refuse it as an integer. */
export class QmpDouble {
  constructor(readonly value: number) {}
}

/** A value as the parser gives it. */
export type QmpJson = null | boolean | number | bigint | string | QmpDouble | QmpJson[] | { [k: string]: QmpJson };

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

/** The JS number of a parsed number (QEMU's qnum_get_double). */
export function numberOf(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof QmpDouble) return v.value;
  return undefined;
}

/** A parsed value with bigints and {@link QmpDouble}s made numbers (what commands read). */
export function plainJson(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof QmpDouble) return v.value;
  if (Array.isArray(v)) return v.map(plainJson);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) setMember(out, k, plainJson(x));
    return out;
  }
  return v;
}

/** Sets a member, also one named `__proto__` (an own member, not the prototype). */
function setMember(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

type Token = { type: 'lcurly' | 'rcurly' | 'lsquare' | 'rsquare' | 'comma' | 'colon' | 'integer' | 'float' | 'keyword' | 'string'; text: Uint8Array };

type LexState = 'start' | 'recovery' | 'dq' | 'dqEsc' | 'sq' | 'sqEsc' | 'zero' | 'sign' | 'digits' | 'mantissa' | 'mantissaDigits' | 'expE' | 'expSign' | 'expDigits' | 'keyword';

/** What a byte does in a state: go on in a state, end a token, fail; `look` leaves the byte for the next state. */
type Step = { to: LexState | Exclude<Token['type'], 'keyword'> | 'keyword-token' | 'error' | 'skip'; look?: boolean };

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isLower = (c: number) => c >= 0x61 && c <= 0x7a;
const ERROR: Step = { to: 'error' };

/** The lexer's transition for byte `c` in `state` (QEMU's json_lexer table, as rules). */
function step(state: LexState, c: number): Step {
  switch (state) {
    case 'start':
      if (c === 0x22) return { to: 'dq' };
      if (c === 0x27) return { to: 'sq' };
      if (c === 0x30) return { to: 'zero' };
      if (isDigit(c)) return { to: 'digits' };
      if (c === 0x2d) return { to: 'sign' };
      if (isLower(c)) return { to: 'keyword' };
      if (c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a) return { to: 'skip' };
      return { to: ({ 0x7b: 'lcurly', 0x7d: 'rcurly', 0x5b: 'lsquare', 0x5d: 'rsquare', 0x2c: 'comma', 0x3a: 'colon' } as const)[c] ?? 'error' };
    case 'recovery':
      // Skips up to a structural character, a control character other than tab, or 0xFE/0xFF.
      if ((c < 0x20 && c !== 0x09) || c >= 0xfe || [0x5b, 0x5d, 0x7b, 0x7d, 0x3a, 0x2c].includes(c)) return { to: 'start', look: true };
      return { to: 'recovery' };
    case 'dq':
    case 'sq':
      if (c < 0x20 || c >= 0xfe) return ERROR;
      if (c === 0x5c) return { to: state === 'dq' ? 'dqEsc' : 'sqEsc' };
      if (c === (state === 'dq' ? 0x22 : 0x27)) return { to: 'string' };
      return { to: state };
    case 'dqEsc':
    case 'sqEsc':
      return c < 0x20 || c >= 0xfe ? ERROR : { to: state === 'dqEsc' ? 'dq' : 'sq' };
    case 'zero':
      if (isDigit(c)) return ERROR;
      if (c === 0x2e) return { to: 'mantissa' };
      return { to: 'integer', look: true };
    case 'sign':
      if (c === 0x30) return { to: 'zero' };
      return isDigit(c) ? { to: 'digits' } : ERROR;
    case 'digits':
      if (isDigit(c)) return { to: 'digits' };
      if (c === 0x65 || c === 0x45) return { to: 'expE' };
      if (c === 0x2e) return { to: 'mantissa' };
      return { to: 'integer', look: true };
    case 'mantissa':
      return isDigit(c) ? { to: 'mantissaDigits' } : ERROR;
    case 'mantissaDigits':
      if (isDigit(c)) return { to: 'mantissaDigits' };
      if (c === 0x65 || c === 0x45) return { to: 'expE' };
      return { to: 'float', look: true };
    case 'expE':
      if (c === 0x2b || c === 0x2d) return { to: 'expSign' };
      return isDigit(c) ? { to: 'expDigits' } : ERROR;
    case 'expSign':
      return isDigit(c) ? { to: 'expDigits' } : ERROR;
    case 'expDigits':
      return isDigit(c) ? { to: 'expDigits' } : { to: 'float', look: true };
    case 'keyword':
      return isLower(c) ? { to: 'keyword' } : { to: 'keyword-token', look: true };
  }
}

const MAX_TOKEN_SIZE = 64 * 1024 * 1024;
const MAX_TOKEN_COUNT = 2 * 1024 * 1024;
const MAX_NESTING = 1024;
const decoder = new TextDecoder();

/**
 * QEMU's JSON message stream: bytes in, one `emit` per message (a value, or
 * the error that message gets as its reply).
 */
export class QmpJsonStream {
  private state: LexState = 'start';
  private token: number[] = [];
  private tokens: Token[] = [];
  private tokenSize = 0;
  private braces = 0;
  private brackets = 0;

  constructor(private readonly emit: (value: QmpJson | undefined, error?: QmpError) => void) {}

  /** Feeds bytes (a string is taken as its UTF-8). */
  push(chunk: Uint8Array | string): void {
    const bytes = typeof chunk === 'string' ? new TextEncoder().encode(chunk) : chunk;
    for (const c of bytes) this.feed(c);
  }

  private feed(c: number): void {
    for (let consumed = false; !consumed; ) {
      const s = step(this.state, c);
      consumed = !s.look;
      if (consumed) this.token.push(c);
      const to = s.to;
      if (to === 'error') {
        this.tokenDone('error');
        this.state = 'recovery';
        this.token = [];
      } else if (to === 'skip' || (to === 'start' && this.state === 'recovery')) {
        this.token = [];
        this.state = 'start';
      } else if (to === 'recovery') {
        this.token = [];
      } else if (['lcurly', 'rcurly', 'lsquare', 'rsquare', 'comma', 'colon', 'integer', 'float', 'string', 'keyword-token'].includes(to)) {
        this.tokenDone(to === 'keyword-token' ? 'keyword' : (to as Token['type']));
        this.token = [];
        this.state = 'start';
      } else {
        this.state = to as LexState;
      }
    }
    if (this.token.length > MAX_TOKEN_SIZE) {
      // QEMU hands an over-long token on as it stands and starts afresh.
      this.tokenDone(this.state === 'start' ? 'error' : 'string');
      this.token = [];
      this.state = 'start';
    }
  }

  private tokenDone(type: Token['type'] | 'error'): void {
    const text = Uint8Array.from(this.token);
    if (type === 'error') return this.finish(undefined, genericError(`JSON parse error, stray '${decoder.decode(text)}'`));
    if (type === 'lcurly') this.braces++;
    else if (type === 'rcurly') this.braces--;
    else if (type === 'lsquare') this.brackets++;
    else if (type === 'rsquare') this.brackets--;
    if (this.tokenSize + text.length + 1 > MAX_TOKEN_SIZE) return this.finish(undefined, genericError('JSON token size limit exceeded'));
    if (this.tokens.length + 1 > MAX_TOKEN_COUNT) return this.finish(undefined, genericError('JSON token count limit exceeded'));
    if (this.braces + this.brackets > MAX_NESTING) return this.finish(undefined, genericError('JSON nesting depth limit exceeded'));
    this.tokens.push({ type, text });
    this.tokenSize += text.length;
    if ((this.braces > 0 || this.brackets > 0) && this.braces >= 0 && this.brackets >= 0) return;
    let value: QmpJson | undefined;
    let error: QmpError | undefined;
    try {
      value = new Parser(this.tokens).parse();
    } catch (e) {
      error = e as QmpError;
    }
    this.finish(value, error);
  }

  private finish(value: QmpJson | undefined, error?: QmpError): void {
    this.braces = 0;
    this.brackets = 0;
    this.tokens = [];
    this.tokenSize = 0;
    this.emit(value, error);
  }
}

/** Parses one whole JSON text (a request given as a string, not a stream); throws QEMU's parse error. */
export function parseQmpJson(text: string): QmpJson {
  const out: { value?: QmpJson; error?: QmpError }[] = [];
  const stream = new QmpJsonStream((value, error) => out.push({ value, error }));
  stream.push(text);
  stream.push(' ');
  const first = out[0];
  if (!first) throw genericError('JSON parse error, premature EOI');
  if (first.error) throw first.error;
  return first.value!;
}

const parseError = (what: string) => genericError(`JSON parse error, ${what}`);

/** QEMU's recursive descent over one message's tokens; the first error found wins. */
class Parser {
  private i = 0;
  constructor(private readonly tokens: Token[]) {}

  parse(): QmpJson {
    return this.value();
  }

  private peek(): Token {
    const t = this.tokens[this.i];
    if (!t) throw parseError('premature EOI');
    return t;
  }

  private pop(): Token {
    const t = this.peek();
    this.i++;
    return t;
  }

  private value(): QmpJson {
    const t = this.peek();
    switch (t.type) {
      case 'lcurly':
        return this.object();
      case 'lsquare':
        return this.array();
      case 'string':
        this.i++;
        return parseString(t.text);
      case 'integer':
      case 'float':
        this.i++;
        return parseNumber(t);
      case 'keyword': {
        this.i++;
        const word = decoder.decode(t.text);
        if (word === 'true') return true;
        if (word === 'false') return false;
        if (word === 'null') return null;
        throw parseError(`invalid keyword '${word}'`);
      }
      default:
        throw parseError('expecting value');
    }
  }

  private object(): QmpJson {
    this.pop();
    const out: Record<string, QmpJson> = {};
    if (this.peek().type === 'rcurly') {
      this.pop();
      return out;
    }
    for (;;) {
      const key = this.value();
      if (typeof key !== 'string') throw parseError('key is not a string in object');
      if (this.pop().type !== 'colon') throw parseError('missing : in object pair');
      const v = this.value();
      if (Object.hasOwn(out, key)) throw parseError('duplicate key');
      setMember(out, key, v);
      const sep = this.pop();
      if (sep.type === 'rcurly') return out;
      if (sep.type !== 'comma') throw parseError('expected separator in dict');
    }
  }

  private array(): QmpJson {
    this.pop();
    const out: QmpJson[] = [];
    if (this.peek().type === 'rsquare') {
      this.pop();
      return out;
    }
    for (;;) {
      out.push(this.value());
      const sep = this.pop();
      if (sep.type === 'rsquare') return out;
      if (sep.type !== 'comma') throw parseError('expected separator in list');
    }
  }
}

/** An integer as int64, else uint64 (bigints past 2^53), else a double; a float always a double. */
function parseNumber(t: Token): QmpJson {
  const text = decoder.decode(t.text);
  if (t.type === 'integer') {
    const v = BigInt(text);
    if (v >= INT64_MIN && v <= INT64_MAX) return Number.isSafeInteger(Number(v)) ? Number(v) : v;
    if (!text.startsWith('-') && v <= UINT64_MAX) return v;
  }
  const d = Number(text);
  return Number.isInteger(d) || !Number.isFinite(d) || Object.is(d, -0) ? new QmpDouble(d) : d;
}

/** QEMU's is_valid_codepoint: no surrogates, no noncharacters, at most U+10FFFF. */
function validCodepoint(cp: number): boolean {
  if (cp < 0 || cp > 0x10ffff) return false;
  if ((cp & 0xfffff800) === 0xd800) return false;
  if (cp >= 0xfdd0 && cp <= 0xfdef) return false;
  return (cp & 0xfffe) !== 0xfffe;
}

function hex4(b: Uint8Array, at: number): number {
  if (at + 4 > b.length) return -1;
  const s = String.fromCharCode(...b.subarray(at, at + 4));
  return /^[0-9a-fA-F]{4}$/.test(s) ? parseInt(s, 16) : -1;
}

/** One UTF-8 sequence at `at` (modified UTF-8: C0 80 is NUL): its code point and length, or -1. */
function utf8At(b: Uint8Array, at: number): [number, number] {
  const c = b[at]!;
  if (c < 0x80) return [c, 1];
  const n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? (c <= 0xef ? 3 : 0) : c >= 0xc0 ? 2 : 0;
  if (n === 0 || at + n > b.length) return [-1, 1];
  let cp = c & (0xff >> (n + 1));
  for (let k = 1; k < n; k++) {
    const x = b[at + k]!;
    if ((x & 0xc0) !== 0x80) return [-1, 1];
    cp = (cp << 6) | (x & 0x3f);
  }
  if (n === 2 && cp === 0) return [0, 2];
  const min = [0, 0, 0x80, 0x800, 0x10000][n]!;
  if (cp < min || !validCodepoint(cp)) return [-1, n];
  return [cp, n];
}

/** A string token's value: escapes and UTF-8 checked as QEMU's parse_string. */
function parseString(b: Uint8Array): string {
  const quote = b[0]!;
  let out = '';
  let i = 1;
  while (b[i] !== quote) {
    const c = b[i]!;
    if (c === 0x5c) {
      const begin = i;
      const e = b[i + 1]!;
      i += 2;
      const simple: Record<number, string> = { 0x22: '"', 0x27: "'", 0x5c: '\\', 0x2f: '/', 0x62: '\b', 0x66: '\f', 0x6e: '\n', 0x72: '\r', 0x74: '\t' };
      if (e in simple) {
        out += simple[e];
        continue;
      }
      if (e !== 0x75) throw parseError('invalid escape sequence in string');
      let cp = hex4(b, i);
      i += 4;
      if (cp >= 0xd800 && cp <= 0xdbff && b[i] === 0x5c && b[i + 1] === 0x75) {
        const trail = hex4(b, i + 2);
        if (trail >= 0xdc00 && trail <= 0xdfff) {
          cp = 0x10000 + ((cp & 0x3ff) << 10) + (trail & 0x3ff);
          i += 6;
        } else cp = -1;
      }
      // NUL is allowed here (QEMU keeps it as modified UTF-8).
      if (cp !== 0 && !validCodepoint(cp)) throw parseError(`${String.fromCharCode(...b.subarray(begin, i))} is not a valid Unicode character`);
      out += String.fromCodePoint(cp);
      continue;
    }
    const [cp, n] = utf8At(b, i);
    if (cp < 0) throw parseError('invalid UTF-8 sequence in string');
    out += String.fromCodePoint(cp);
    i += n;
  }
  return out;
}

/**
 * Keys in the order QEMU's QDict walks them (by hash bucket, the last added
 * first within one): QEMU checks a request's members and writes every
 * object of its replies in this order.
 */
export function qdictKeyOrder(keys: readonly string[]): string[] {
  return qdictOrder(keys.map((k) => [k, k] as const)).map(([k]) => k);
}

/**
 * Open options in QEMU's blockdev-add shape.
 *
 * Options arrive as nested objects (`{ driver: 'qcow2', file: { driver:
 * 'node-file', filename: 'a.qcow2' } }`), as dotted keys (`file.driver=node-file`),
 * or inside `json:{...}` pseudo-filenames. {@link normalizeOptions} turns all of
 * these into one nested object; {@link OptionReader} hands the values to a
 * driver with type checks and reports the keys nobody read.
 */
import { BlockError, einval, toBlockError } from './errors.js';
import { parseQemuJson, qdictOrder } from './qemu-json.js';

/** A nested options object as blockdev-add takes it. */
export type BlockOptions = { [key: string]: OptionValue };
export type OptionValue = string | number | boolean | null | BlockOptions | OptionValue[] | undefined;

const MAX_OPTION_DEPTH = 16;

function isPlainObject(v: unknown): v is BlockOptions {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses `json:{...}` into options (QEMU's JSON dialect); throws EINVAL on bad JSON.
 */
export function parseJsonFilename(filename: string): BlockOptions {
  const text = filename.slice('json:'.length);
  let parsed: unknown;
  try {
    // QEMU's dialect: single-quoted strings too (see qemu-json.ts).
    parsed = parseQemuJson(text);
  } catch (e) {
    // QEMU's wording; the caller's "Could not open '<filename>'" names the value.
    throw toBlockError(e).withPrefix('Could not parse the JSON options');
  }
  if (!isPlainObject(parsed)) throw einval('Invalid JSON object given');
  return normalizeOptions(parsed);
}

/**
 * Expands dotted keys into nested objects and merges them with nested ones:
 * `{ 'file.driver': 'x', file: { filename: 'y' } }` → `{ file: { driver: 'x', filename: 'y' } }`.
 * A key given twice (once dotted, once nested) with different values is EINVAL.
 */
export function normalizeOptions(input: Record<string, unknown>, depth = 0): BlockOptions {
  if (depth > MAX_OPTION_DEPTH) throw einval(`Options are nested more than ${MAX_OPTION_DEPTH} levels deep`);
  const out: BlockOptions = {};
  for (const [rawKey, rawValue] of Object.entries(input)) {
    if (rawValue === undefined) continue;
    if (rawKey === '' || rawKey.startsWith('.') || rawKey.endsWith('.') || rawKey.includes('..')) {
      throw einval(`Invalid option name '${rawKey}'`);
    }
    const parts = rawKey.split('.');
    let target = out;
    for (let i = 0; i < parts.length - 1; i++) {
      const part = parts[i]!;
      const existing = target[part];
      if (existing === undefined) {
        const next: BlockOptions = {};
        target[part] = next;
        target = next;
      } else if (isPlainObject(existing)) {
        target = existing;
      } else {
        throw einval(`Option '${parts.slice(0, i + 1).join('.')}' is given both as a value and as an object`);
      }
    }
    const leaf = parts[parts.length - 1]!;
    let value: OptionValue;
    if (isPlainObject(rawValue)) value = normalizeOptions(rawValue as Record<string, unknown>, depth + 1);
    else if (Array.isArray(rawValue)) value = rawValue as OptionValue[];
    else if (
      typeof rawValue === 'string' ||
      typeof rawValue === 'number' ||
      typeof rawValue === 'boolean' ||
      rawValue === null
    ) {
      value = rawValue;
    } else {
      throw einval(`Option '${rawKey}' has an unsupported value of type ${typeof rawValue}`);
    }
    const existing = target[leaf];
    if (existing === undefined) {
      target[leaf] = value;
    } else if (isPlainObject(existing) && isPlainObject(value)) {
      mergeInto(existing, value, rawKey);
    } else if (existing !== value) {
      throw einval(`Option '${rawKey}' is given twice, as '${String(existing)}' and '${String(value)}'`);
    }
  }
  return out;
}

function mergeInto(into: BlockOptions, from: BlockOptions, path: string): void {
  for (const [k, v] of Object.entries(from)) {
    const existing = into[k];
    if (existing === undefined) into[k] = v;
    else if (isPlainObject(existing) && isPlainObject(v)) mergeInto(existing, v, `${path}.${k}`);
    else if (existing !== v) throw einval(`Option '${path}.${k}' is given twice, as '${String(existing)}' and '${String(v)}'`);
  }
}

/**
 * Parses a `key=value,key2=value2` list (qemu-img `-o`, qemu-io `--image-opts`)
 * with QEMU's escaping: `,,` is a literal comma. A bare key means `key=on`
 * only when `implied` allows it; otherwise it is EINVAL.
 */
export function parseKeyValueList(text: string, impliedKey?: string): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  let first = true;
  while (i < text.length) {
    let item = '';
    while (i < text.length) {
      const c = text[i]!;
      if (c === ',') {
        if (text[i + 1] === ',') {
          item += ',';
          i += 2;
          continue;
        }
        i++;
        break;
      }
      item += c;
      i++;
    }
    if (item === '') {
      if (i >= text.length) break;
      throw einval(`Invalid parameter '' in '${text}'`);
    }
    const eq = item.indexOf('=');
    if (eq < 0) {
      if (first && impliedKey) out[impliedKey] = item;
      else throw einval(`Invalid parameter '${item}'`);
    } else {
      const key = item.slice(0, eq);
      if (key === '') throw einval(`Invalid parameter '${item}'`);
      out[key] = item.slice(eq + 1);
    }
    first = false;
  }
  return out;
}

/** Multipliers of QEMU size suffixes (k, M, G, T, P, E; case-insensitive, b = bytes). */
const SIZE_SUFFIX: Record<string, number> = {
  b: 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
  p: 1024 ** 5,
  e: 1024 ** 6,
};

/**
 * Parses a size as QEMU does (`64k`, `1.5G`, `512`), returning bytes.
 * Returns null when the text is not a size.
 */
export function parseSize(text: string, defaultSuffix = 'b'): number | null {
  const m = /^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]?)\s*$/.exec(text);
  if (!m) return null;
  const [, num, suffixRaw] = m;
  const suffix = (suffixRaw || defaultSuffix).toLowerCase();
  const mult = SIZE_SUFFIX[suffix];
  if (mult === undefined) return null;
  const isFraction = num!.includes('.');
  const value = Number(num);
  if (!Number.isFinite(value)) return null;
  if (isFraction && mult === 1) return null; // "1.5" bytes is not a size
  const bytes = Math.floor(value * mult);
  if (!Number.isSafeInteger(bytes)) return null;
  return bytes;
}

/** The dotted keys of nested options (`{ server: { path } }` → `server.path`), as QEMU's flat dictionaries name them. */
export function flatKeys(options: Record<string, unknown>, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(options)) {
    if (v === undefined) continue;
    if (isPlainObject(v) && Object.keys(v).length > 0) out.push(...flatKeys(v as Record<string, unknown>, `${prefix}${k}.`));
    else out.push(`${prefix}${k}`);
  }
  return out;
}

/**
 * Typed access to one level of an options object. Each getter marks its key
 * as consumed; {@link finish} reports keys nobody asked for.
 */
export class OptionReader {
  private readonly consumed = new Set<string>();

  constructor(
    /** The options at this level (nested children are objects). */
    readonly options: BlockOptions,
    /** Who reads them, for messages ("Block format 'raw'"). */
    readonly owner: string,
    /** Path prefix of this level ("file." for a child), for messages. */
    readonly prefix = '',
    /**
     * The prefix an unknown key is named with: QEMU names it within its node
     * ('x', not 'file.x'; 'cache.x' under cache). Default: {@link prefix}.
     */
    readonly unknownPrefix = prefix,
  ) {}

  /** Whether the key is present. Does not consume it. */
  has(key: string): boolean {
    return this.options[key] !== undefined;
  }

  /** The raw value; consumes the key. */
  raw(key: string): OptionValue {
    this.consumed.add(key);
    return this.options[key];
  }

  /** Marks keys as consumed without reading them. */
  consume(...keys: string[]): void {
    for (const k of keys) this.consumed.add(k);
  }

  private typeError(key: string, value: unknown, what: string): BlockError {
    const shown = typeof value === 'object' ? JSON.stringify(value) : String(value);
    return einval(`Parameter '${this.prefix}${key}' expects ${what}`, {}, `got '${shown}'`);
  }

  /** A string option. */
  string(key: string): string | undefined;
  string(key: string, fallback: string): string;
  string(key: string, fallback?: string): string | undefined {
    const v = this.raw(key);
    if (v === undefined || v === null) return fallback;
    if (typeof v === 'string') return v;
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    throw this.typeError(key, v, 'a string');
  }

  /** One of the given strings. */
  choice<T extends string>(key: string, choices: readonly T[], fallback: T): T;
  choice<T extends string>(key: string, choices: readonly T[]): T | undefined;
  choice<T extends string>(key: string, choices: readonly T[], fallback?: T): T | undefined {
    const v = this.string(key);
    if (v === undefined) return fallback;
    if (!(choices as readonly string[]).includes(v)) {
      throw einval(`Parameter '${this.prefix}${key}' does not accept value '${v}'`, {}, `expected one of: ${choices.join(', ')}`);
    }
    return v as T;
  }

  /** A boolean; accepts true/false, on/off, yes/no, 1/0 as QEMU does. */
  bool(key: string): boolean | undefined;
  bool(key: string, fallback: boolean): boolean;
  bool(key: string, fallback?: boolean): boolean | undefined {
    const v = this.raw(key);
    if (v === undefined || v === null) return fallback;
    if (typeof v === 'boolean') return v;
    if (v === 'on' || v === 'true' || v === 'yes' || v === '1' || v === 1) return true;
    if (v === 'off' || v === 'false' || v === 'no' || v === '0' || v === 0) return false;
    throw einval(`Parameter '${this.prefix}${key}' expects 'on' or 'off'`, {}, `got '${String(v)}'`);
  }

  /** A non-negative safe integer; strings are parsed (no suffix). */
  uint(key: string): number | undefined;
  uint(key: string, fallback: number): number;
  uint(key: string, fallback?: number): number | undefined {
    const v = this.raw(key);
    if (v === undefined || v === null) return fallback;
    const n = typeof v === 'string' && /^\s*[0-9]+\s*$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
      throw this.typeError(key, v, 'a non-negative integer');
    }
    return n;
  }

  /** A size in bytes; strings may carry QEMU suffixes (k, M, G, T, P, E). */
  size(key: string): number | undefined;
  size(key: string, fallback: number): number;
  size(key: string, fallback?: number): number | undefined {
    const v = this.raw(key);
    if (v === undefined || v === null) return fallback;
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v) || v < 0) throw this.typeError(key, v, 'a size');
      return v;
    }
    if (typeof v === 'string') {
      const n = parseSize(v);
      if (n === null) {
        throw einval(`Parameter '${this.prefix}${key}' expects a non-negative number below 2^64`, {}, `a size with an optional suffix k, M, G, T, P or E, got '${v}'`);
      }
      return n;
    }
    throw this.typeError(key, v, 'a size');
  }

  /**
   * A size as QEMU's uint64 option: decimal text exactly up to 2^64 - 1
   * (sizes past 2^53 come as text); anything else as {@link size} reads it.
   */
  sizeExact(key: string): bigint | undefined {
    const v = this.raw(key);
    if (typeof v === 'string' && /^\s*[0-9]+\s*$/.test(v)) {
      const n = BigInt(v.trim());
      if (n >= 1n << 64n) throw einval(`Parameter '${this.prefix}${key}' expects a non-negative number below 2^64`, {}, `got '${v}'`);
      return n;
    }
    const n = this.size(key);
    return n === undefined ? undefined : BigInt(n);
  }

  /**
   * A child reference: a nested options object, a node-name string, null
   * ("no child"), or undefined (absent). Consumes the key.
   */
  child(key: string): BlockOptions | string | null | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (v === null || typeof v === 'string' || isPlainObject(v)) return v;
    throw this.typeError(key, v, 'a node name or an options object');
  }

  /** Keys present but never read. */
  unconsumed(): string[] {
    return Object.keys(this.options).filter((k) => this.options[k] !== undefined && !this.consumed.has(k));
  }

  /**
   * Throws EINVAL for the first key nobody read, in QEMU's words: QEMU
   * names the first of its flat option dictionary, so an unread child
   * (`backing: {...}`) is named by one of its dotted keys, the one first in
   * QDict order.
   */
  finish(): void {
    const left = this.unconsumed();
    if (left.length > 0) {
      // QEMU's two wordings: protocols "doesn't", formats "does not".
      const verb = this.owner.startsWith('Block protocol') ? "doesn't" : 'does not';
      const flat: Array<readonly [string, null]> = [];
      const walk = (key: string, v: unknown): void => {
        if (v !== null && typeof v === 'object') {
          const entries = Object.entries(v as Record<string, unknown>);
          if (entries.length > 0) return entries.forEach(([k, sub]) => walk(`${key}.${k}`, sub));
        }
        flat.push([key, null]);
      };
      for (const k of left) walk(k, this.options[k]);
      throw einval(`${this.owner} ${verb} support the option '${this.unknownPrefix}${qdictOrder(flat)[0]![0]}'`);
    }
  }
}

/**
 * The argument schema of QMP commands (QEMU's qapi/*.json, the types we use)
 * and the check QEMU's QObject input visitor makes before a command runs:
 * members visited in schema order, the first problem reported with QEMU's
 * text, unknown members refused after the known ones were visited.
 */
import { genericError } from './errors.js';
import { QmpDouble } from './json.js';

/** A QAPI type as far as the checks need it. */
export type QapiType =
  | 'str'
  | 'int'
  | 'int64'
  | 'uint64'
  | 'uint32'
  | 'uint16'
  | 'size'
  | 'bool'
  | 'number'
  | 'any'
  | { enum: readonly string[] }
  | { list: QapiType }
  | QapiStruct
  | QapiAlternate
  | QapiCustom;

/** A type checked by its own function (a flat union such as BlockdevOptions). */
export interface QapiCustom {
  custom: string;
  check(value: unknown, path: string, keyval: boolean): void;
}

/** One member: its name, its type, whether it may be left out. */
export interface QapiMember {
  name: string;
  type: QapiType;
  optional?: boolean;
}

/** A struct (QAPI 'struct' or a command's 'data'). `open` lets members through unchecked. */
export interface QapiStruct {
  struct: string;
  members: readonly QapiMember[];
  open?: boolean;
}

/** An alternate: a string, or a struct, or null, by the JSON type given. */
export interface QapiAlternate {
  alternate: string;
  str?: QapiType;
  object?: QapiType;
  null?: true;
}

/** `name` (optional when it starts with '*') of `type`; a compact way to write members. */
export function m(name: string, type: QapiType): QapiMember {
  return name.startsWith('*') ? { name: name.slice(1), type, optional: true } : { name, type };
}

/** A struct type from members. */
export function struct(name: string, members: readonly QapiMember[], open = false): QapiStruct {
  return { struct: name, members, open };
}

/**
 * A flat union (QAPI 'union' with a 'discriminator'): the base members,
 * then the branch the tag names, and no other member. A tag value without a
 * branch takes the base members only.
 */
export function flatUnion(name: string, base: readonly QapiMember[], branches: Record<string, readonly QapiMember[]>): QapiCustom {
  return {
    custom: name,
    check(value, path, keyval) {
      if (!isObject(value)) throw genericError(`Invalid parameter type for '${path === '' ? 'null' : path}', expected: object`);
      checkMembers(value, struct(name, base, true), path, keyval);
      const tag = base.find((x) => typeof x.type === 'object' && 'enum' in x.type)!;
      checkMembers(value, struct(name, [...base, ...(branches[value[tag.name] as string] ?? [])]), path, keyval);
    },
  };
}

/** Whether `v` is a JSON object (not an array, not null). */
export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** QEMU's full_name: the member's path ("a.b", "list[2]"). */
export function join(path: string, name: string): string {
  return path === '' ? name : `${path}.${name}`;
}

const INT_RANGES: Record<string, [bigint, bigint, string]> = {
  uint32: [0n, 2n ** 32n - 1n, 'uint32_t'],
  uint16: [0n, 2n ** 16n - 1n, 'uint16_t'],
};

/**
 * An integer as QEMU's int64 visitor takes it: a JSON integer within int64
 * (a double, even a whole one, is refused).
 */
function int64Of(v: unknown): bigint | undefined {
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : undefined;
  if (typeof v === 'bigint') return v < 2n ** 63n ? v : undefined;
  return undefined;
}

/** An integer as QEMU's uint64 visitor takes it: any JSON integer of uint64 or int64 (negatives wrap). */
function uint64Of(v: unknown): bigint | undefined {
  const i = typeof v === 'bigint' ? v : int64Of(v);
  if (i === undefined) return undefined;
  return i < 0n ? i + 2n ** 64n : i;
}

/** A scalar given as text on a command line (QEMU's keyval visitor): its check and message. */
const KEYVAL_SCALARS: Record<string, [RegExp, string]> = {
  int: [/^[+-]?(0x[0-9a-f]+|\d+)$/i, 'integer'],
  int64: [/^[+-]?(0x[0-9a-f]+|\d+)$/i, 'integer'],
  uint64: [/^[+-]?(0x[0-9a-f]+|\d+)$/i, 'uint64'],
  uint32: [/^[+-]?(0x[0-9a-f]+|\d+)$/i, 'integer'],
  uint16: [/^[+-]?(0x[0-9a-f]+|\d+)$/i, 'integer'],
  size: [/^\d+(\.\d+)?[kmgtpe]?b?$/i, 'a non-negative number below 2^64'],
  bool: [/^(on|off|yes|no|true|false)$/, "'on' or 'off'"],
  number: [/^[+-]?\d+(\.\d*)?(e[+-]?\d+)?$/i, 'a number'],
};

/**
 * Checks `value` against `type`; throws QEMU's GenericError on the first
 * problem. `path` names the value in the message ('' for the arguments).
 * `keyval`: the value comes from key=value text, its scalars are strings.
 */
export function checkValue(value: unknown, type: QapiType, path: string, keyval = false): void {
  const label = path === '' ? 'null' : path;
  // QEMU's generic visitors (enums, alternates, narrow integers) name the member alone:
  // the last part of the path, 'null' for a list element.
  const member = path === '' || /\]$/.test(path) ? 'null' : path.slice(path.lastIndexOf('.') + 1);
  const typeError = (expected: string) => genericError(`Invalid parameter type for '${label}', expected: ${expected}`);
  if (keyval && typeof value === 'string' && typeof type === 'string' && type in KEYVAL_SCALARS) {
    const [re, what] = KEYVAL_SCALARS[type]!;
    if (!re.test(value)) throw genericError(`Parameter '${label}' expects ${what}`);
    const range = INT_RANGES[type];
    if (range) {
      // The text is an integer; QEMU then checks the type's range.
      const v = BigInt(value.replace(/^[+-]/, '')) * (value.startsWith('-') ? -1n : 1n);
      if (v < range[0] || v > range[1]) throw genericError(`Parameter '${member}' expects ${range[2]}`);
    }
    return;
  }
  if (typeof type === 'string') {
    switch (type) {
      case 'any':
        return;
      case 'str':
        if (typeof value !== 'string') throw typeError('string');
        return;
      case 'bool':
        if (typeof value !== 'boolean') throw typeError('boolean');
        return;
      case 'number':
        if (typeof value !== 'number' && typeof value !== 'bigint' && !(value instanceof QmpDouble)) throw typeError('number');
        return;
      case 'int':
      case 'int64':
        if (int64Of(value) === undefined) throw typeError('integer');
        return;
      case 'uint64':
      case 'size':
        // QEMU takes negative integers here too (backward compatibility).
        if (uint64Of(value) === undefined) throw genericError(`Parameter '${label}' expects uint64`);
        return;
      default: {
        // Narrower unsigned integers: visited as uint64, then range-checked (the message names the member alone).
        const [lo, hi, what] = INT_RANGES[type]!;
        const v = uint64Of(value);
        if (v === undefined) throw genericError(`Parameter '${label}' expects uint64`);
        if (v < lo || v > hi) throw genericError(`Parameter '${member}' expects ${what}`);
        return;
      }
    }
  }
  if ('custom' in type) return type.check(value, path, keyval);
  if ('enum' in type) {
    if (typeof value !== 'string') throw typeError('string');
    if (!type.enum.includes(value)) throw genericError(`Parameter '${member}' does not accept value '${value}'`);
    return;
  }
  if ('list' in type) {
    if (!Array.isArray(value)) throw typeError('array');
    value.forEach((v, i) => checkValue(v, type.list, `${path}[${i}]`, keyval));
    return;
  }
  if ('alternate' in type) {
    if (typeof value === 'string' && type.str) return checkValue(value, type.str, path, keyval);
    if (isObject(value) && type.object) return checkValue(value, type.object, path, keyval);
    if (value === null && type.null) return;
    throw genericError(`Invalid parameter type for '${member}', expected: ${type.alternate}`);
  }
  if (!isObject(value)) throw typeError('object');
  checkMembers(value, type, path, keyval);
}

/** Checks the members of a struct value, then (unless open) that it has no others. */
export function checkMembers(value: Record<string, unknown>, type: QapiStruct, path: string, keyval = false): void {
  for (const member of type.members) {
    const v = value[member.name];
    if (v === undefined) {
      if (!member.optional) throw genericError(`Parameter '${join(path, member.name)}' is missing`);
      continue;
    }
    checkValue(v, member.type, join(path, member.name), keyval);
  }
  if (type.open) return;
  const known = new Set(type.members.map((x) => x.name));
  for (const key of Object.keys(value)) {
    if (!known.has(key)) throw genericError(`Parameter '${join(path, key)}' is unexpected`);
  }
}

/** Checks a command's `arguments` object against its data type (none: must be empty). */
export function checkArguments(args: Record<string, unknown>, type: QapiStruct | null): void {
  if (type === null) {
    const extra = Object.keys(args)[0];
    if (extra !== undefined) throw genericError(`Parameter '${extra}' is unexpected`);
    return;
  }
  checkMembers(args, type, '');
}

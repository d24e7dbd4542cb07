/**
 * blkdebug's rules: the `[inject-error]` / `[set-state]` sections of its
 * config file (QEMU's -readconfig syntax) and the `inject-error` /
 * `set-state` options (a list of objects, or one object), checked with
 * QEMU 7.2's messages and turned into {@link BlkdebugRule}s.
 */
import { BlockError, codeOfErrno, einval, type ErrorCode } from '../core/errors.js';
import { isDebugEvent, type DebugEvent } from '../core/debug-event.js';
import type { BlockOptions, OptionValue } from '../core/options.js';
import { parseOptBool as parseBool, parseOptNumber as parseNumber } from './qemu-opt-value.js';

/** blkdebug's request types (QEMU's BlkdebugIOType). */
export const IO_TYPES = ['read', 'write', 'write-zeroes', 'discard', 'flush', 'block-status'] as const;
export type IoType = (typeof IO_TYPES)[number];

/** An error injected into the requests that follow an event. */
export interface InjectRule {
  action: 'inject-error';
  event: DebugEvent;
  /** State the rule applies in; 0 = any. */
  state: number;
  /** The errno number (0: the rule matches but fails nothing). */
  errno: number;
  /** The error's code, from {@link errno}. */
  code: ErrorCode;
  /** Byte offset a request must cover, or -1 for any request. */
  offset: number;
  iotypes: ReadonlySet<IoType>;
  /** Fail at once instead of after the request yields once. */
  immediately: boolean;
  /** Remove the rule after its first error. */
  once: boolean;
}

/** A change of blkdebug's state on an event. */
export interface SetStateRule {
  action: 'set-state';
  event: DebugEvent;
  state: number;
  newState: number;
}

/** A breakpoint set by qemu-io's `break`. */
export interface SuspendRule {
  action: 'suspend';
  event: DebugEvent;
  state: 0;
  tag: string;
}

export type BlkdebugRule = InjectRule | SetStateRule | SuspendRule;

type Group = 'inject-error' | 'set-state';
type Section = Map<string, string>;

/** The keys of each section and their QemuOpts types. */
const GROUP_KEYS: Record<Group, Record<string, 'string' | 'number' | 'bool'>> = {
  'inject-error': { event: 'string', state: 'number', iotype: 'string', errno: 'number', sector: 'number', once: 'bool', immediately: 'bool' },
  'set-state': { event: 'string', state: 'number', new_state: 'number' },
};

const isGroup = (g: string): g is Group => g === 'inject-error' || g === 'set-state';

/**
 * Checks one section's values against its group's types as QemuOpts does
 * (a bad value fails at once, before any rule is made).
 */
function checkSection(group: Group, section: Section, unknown: (key: string) => BlockError): Section {
  const keys = GROUP_KEYS[group];
  for (const [key, value] of section) {
    const type = keys[key];
    if (!type) throw unknown(key);
    if (type === 'number') parseNumber(key, value);
    if (type === 'bool') parseBool(key, value);
  }
  return section;
}

/**
 * Parses a config file's text into sections, as qemu_config_parse reads it
 * line by line: `[group]` starts a section, `key = "value"` fills it (a
 * line that only starts with a word sets that word to ""), `#` lines and
 * empty lines are skipped.
 */
export function parseConfigText(text: string): Array<{ group: Group; section: Section }> {
  const out: Array<{ group: Group; section: Section }> = [];
  let current: { name: string; section: Section } | null = null;
  // A section is checked when the next one starts or the file ends, as QEMU's callback runs.
  const close = () => {
    if (!current) return;
    const { name, section } = current;
    if (!isGroup(name)) throw einval(`There is no option group '${name}'`);
    section.delete('id');
    out.push({ group: name, section: checkSection(name, section, (key) => einval(`Invalid parameter '${key}'`)) });
  };
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  for (const line of lines) {
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('[')) {
      const m = /^\[(\S{1,63})\s+"([^"]{1,63})"\]/.exec(line) ?? /^\[([^\]]{1,63})\]/.exec(line);
      if (m) {
        close();
        current = { name: m[1]!, section: new Map() };
        if (m[2] !== undefined) current.section.set('id', m[2]);
        continue;
      }
    }
    const word = /^\s*(\S{1,63})/.exec(line);
    if (!word) throw einval('parse error');
    if (!current) throw einval('no group defined');
    const full = /^\s*(\S{1,63})\s*=\s*"([^"]{1,1023})"/.exec(line);
    current.section.set(word[1]!, full ? full[2]! : '');
  }
  close();
  return out;
}

/** A JSON / dotted option value as QemuOpts sees it, or undefined for objects and lists. */
function optString(v: OptionValue): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  return undefined;
}

/** Reads the values of one option section (absorbing what QemuOpts would absorb). */
function absorb(group: Group, obj: BlockOptions): { section: Section; rest: string[] } {
  const section: Section = new Map();
  const rest: string[] = [];
  for (const [key, value] of Object.entries(obj)) {
    if (value === undefined) continue;
    const text = optString(value);
    if (text !== undefined && GROUP_KEYS[group][key]) section.set(key, text);
    else rest.push(key);
  }
  return { section, rest };
}

/**
 * The sections given as options under `group` (QEMU's
 * qemu_config_parse_qdict): one object of keys, or a list (or an object
 * indexed 0, 1, ...) of such objects.
 */
export function parseOptionSections(group: Group, value: OptionValue): Section[] {
  if (value === undefined || value === null) return [];
  const entries: OptionValue[] | null = Array.isArray(value) ? value : null;
  if (!entries) {
    if (typeof value !== 'object') throw einval(`Unused option '${group}' for [${group}]`);
    const obj = value as BlockOptions;
    const { section, rest } = absorb(group, obj);
    if (section.size > 0 && rest.length > 0) throw einval(`Unknown option '${rest[0]}' for [${group}]`);
    if (section.size > 0) return [checkSection(group, section, () => einval('unreachable'))];
    // Only indexed keys: a list written as an object.
    const indexed: OptionValue[] = [];
    for (let i = 0; obj[String(i)] !== undefined; i++) indexed.push(obj[String(i)]);
    const unused = Object.keys(obj).find((k) => obj[k] !== undefined && !(/^(0|[1-9][0-9]*)$/.test(k) && Number(k) < indexed.length));
    if (unused !== undefined) throw einval(`Unused option '${unused}' for [${group}]`);
    return parseOptionSections(group, indexed);
  }
  return entries.map((entry, i) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw einval(`[${group}] section (index ${i}) does not consist of keys`);
    }
    const { section, rest } = absorb(group, entry as BlockOptions);
    checkSection(group, section, () => einval('unreachable'));
    if (rest.length > 0) throw einval(`[${group}] section doesn't support the option '${rest[0]}'`);
    return section;
  });
}

/** The event a section names, with QEMU's messages. */
function eventOf(section: Section): DebugEvent {
  const name = section.get('event');
  if (name === undefined) throw einval('Missing event name for rule');
  if (!isDebugEvent(name)) throw einval(`invalid parameter value: ${name}`);
  return name;
}

const int32 = (n: bigint): number => Number(BigInt.asIntN(32, n));
const num = (section: Section, key: string, fallback: bigint): bigint => {
  const v = section.get(key);
  return v === undefined ? fallback : parseNumber(key, v);
};
const bool = (section: Section, key: string): boolean => {
  const v = section.get(key);
  return v === undefined ? false : parseBool(key, v);
};

/** Makes an inject-error rule from a checked section (QEMU's add_rule). */
export function injectRule(section: Section): InjectRule {
  const event = eventOf(section);
  const errno = int32(num(section, 'errno', 5n));
  const sector = BigInt.asIntN(64, num(section, 'sector', BigInt.asUintN(64, -1n)));
  const iotype = section.get('iotype');
  if (iotype !== undefined && !(IO_TYPES as readonly string[]).includes(iotype)) {
    throw einval(`invalid parameter value: ${iotype}`);
  }
  return {
    action: 'inject-error',
    event,
    state: int32(num(section, 'state', 0n)),
    errno,
    code: codeOfErrno(Math.abs(errno)),
    offset: sector === -1n ? -1 : Number(sector * 512n),
    // The default leaves out block-status, as QEMU's does.
    iotypes: new Set<IoType>(iotype !== undefined ? [iotype as IoType] : ['read', 'write', 'write-zeroes', 'discard', 'flush']),
    immediately: bool(section, 'immediately'),
    once: bool(section, 'once'),
  };
}

/** Makes a set-state rule from a checked section. */
export function setStateRule(section: Section): SetStateRule {
  return {
    action: 'set-state',
    event: eventOf(section),
    state: int32(num(section, 'state', 0n)),
    newState: int32(num(section, 'new_state', 0n)),
  };
}

/**
 * All rules of a blkdebug node, in the order QEMU adds them: the config
 * file's sections, then the options' sections; inject-error rules before
 * set-state rules.
 */
export function buildRules(fileSections: Array<{ group: Group; section: Section }>, options: { inject: OptionValue; setState: OptionValue }): BlkdebugRule[] {
  const inject = [...fileSections.filter((s) => s.group === 'inject-error').map((s) => s.section), ...parseOptionSections('inject-error', options.inject)];
  const setState = [...fileSections.filter((s) => s.group === 'set-state').map((s) => s.section), ...parseOptionSections('set-state', options.setState)];
  return [...inject.map(injectRule), ...setState.map(setStateRule)];
}

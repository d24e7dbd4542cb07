/**
 * Argument-check cases made from a QMP schema as `query-qmp-schema` gives it
 * (QEMU's introspection): for each command, a base request whose required
 * members are filled with plausible values that name nothing that exists
 * (so a request that passes the checks still fails at its look-up, and the
 * daemon's state does not drift), then one change at a time: a required
 * member left out, a member of the wrong JSON type (at any depth), a number
 * at an integer's edges, an enum value that is not one, an unknown member.
 * Requests are raw JSON text, so numbers such as 2^63 or 1.0 reach the
 * daemon as written.
 */

/** One entry of query-qmp-schema's answer (the parts the generator reads). */
export interface SchemaEntry {
  name: string;
  'meta-type': 'command' | 'event' | 'object' | 'enum' | 'array' | 'builtin' | 'alternate';
  'arg-type'?: string;
  members?: { name: string; type: string; default?: null; case?: string }[];
  tag?: string;
  variants?: { case: string; type: string }[];
  values?: string[];
  'element-type'?: string;
  'json-type'?: string;
}

/** A JSON value written as text (numbers kept as written). */
export type Raw = { raw: string } | null | boolean | string | Raw[] | { [k: string]: Raw };

/** JSON text of a {@link Raw} value. */
export function rawText(v: Raw): string {
  if (v !== null && typeof v === 'object' && !Array.isArray(v) && 'raw' in v && typeof v.raw === 'string' && Object.keys(v).length === 1) return v.raw;
  if (Array.isArray(v)) return `[${v.map(rawText).join(', ')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${rawText(x as Raw)}`).join(', ')}}`;
  return JSON.stringify(v);
}

const num = (text: string): Raw => ({ raw: text });

/** Values of the wrong JSON type for each JSON type, and the edge numbers. */
const WRONG: Record<string, Raw[]> = {
  string: [num('1'), true, null, [], {}],
  int: ['1', num('1.5'), num('1.0'), true, null, [], {}],
  boolean: ['true', num('1'), null, {}],
  number: ['1.5', true, null, []],
  object: ['x', num('1'), null, []],
  array: ['x', num('1'), {}, null],
};
/** Integers QEMU's parser and visitors treat differently (int64, uint64, double). */
const EDGE_INTS: Raw[] = [num('-1'), num('0'), num('9223372036854775807'), num('9223372036854775808'), num('18446744073709551615'), num('18446744073709551616'), num('-9223372036854775808'), num('-9223372036854775809'), num('1e3'), num('4294967296')];

/** Tag values the generator takes for a union's base instead of the first one (the ones DiskWorker has). */
const PREFERRED_TAG: Record<string, string> = { driver: 'qcow2', type: 'nbd', 'qom-type': 'throttle-group' };

/** Values for members named so, instead of the generic ones (names that exist nowhere). */
const NAMED: Record<string, Raw> = { filename: '$DIR/nope.img', path: '$DIR/nope.sock' };

/**
 * Cases qemu-storage-daemon 7.2 answers with an abort (a QEMU bug, not an
 * answer to compare): blockdev-reopen of an empty list fails
 * bdrv_reopen_multiple's assertion.
 */
const KNOWN_ABORTS = ['blockdev-reopen options=[]'];

/**
 * Requests qemu-storage-daemon 7.2 never answers (its monitor hangs; a QEMU
 * bug): a transaction enabling a bitmap that does not exist.
 */
const knownHang = (command: string, request: string) => command === 'transaction' && request.includes('"type": "block-dirty-bitmap-enable"');

/** One case: a label and the request text. */
export interface ArgCase {
  label: string;
  request: string;
}

/** The generator over one schema. */
export class QapiCaseGenerator {
  private readonly types = new Map<string, SchemaEntry>();

  /** `name`: the string every name-like member gets ('nope': nothing has it; a node-name: the node). */
  constructor(
    schema: SchemaEntry[],
    private readonly name = 'nope',
    /** Tag values to take for unions' bases, by tag member name (else {@link PREFERRED_TAG}, else the first). */
    private readonly tags: Record<string, string> = {},
  ) {
    for (const e of schema) this.types.set(e.name, e);
  }

  private type(name: string): SchemaEntry {
    if (name.startsWith('[')) return { name, 'meta-type': 'array', 'element-type': name.slice(1, -1) };
    const t = this.types.get(name);
    if (!t) throw new Error(`schema type ${name} not found`);
    return t;
  }

  /** The JSON type a schema type takes ('object', 'array', 'string', 'int', ...), 'alternate' or 'any'. */
  private jsonType(name: string): string {
    const t = this.type(name);
    switch (t['meta-type']) {
      case 'builtin':
        return t['json-type'] === 'value' ? 'any' : t['json-type']!;
      case 'enum':
        return 'string';
      case 'array':
        return 'array';
      case 'alternate':
        return 'alternate';
      default:
        return 'object';
    }
  }

  /** The members of an object type for the given tag value (its variant's members after the base's). */
  private members(t: SchemaEntry, value: Record<string, Raw>): SchemaEntry['members'] & object {
    const base = t.members ?? [];
    if (!t.tag || !t.variants) return base;
    const tag = value[t.tag];
    const v = t.variants.find((x) => x.case === tag);
    return v ? [...base, ...(this.type(v.type).members ?? []).filter((x) => !base.some((b) => b.name === x.name))] : base;
  }

  /** A plausible value of a type: required members only, names of nothing that exists. */
  base(name: string, member = '', depth = 0): Raw {
    const t = this.type(name);
    if (member in NAMED && t['meta-type'] === 'builtin' && t['json-type'] === 'string') return NAMED[member]!;
    switch (t['meta-type']) {
      case 'builtin':
        return { string: this.name, int: num('1'), boolean: false, number: num('1.5'), null: null, value: 'x' }[t['json-type']!] as Raw;
      case 'enum':
        return t.values![0]!;
      case 'array':
        // One element (an empty list is a case of its own; blockdev-reopen aborts on it).
        return [this.base(t['element-type']!, '', depth + 1)];
      case 'alternate': {
        // A name (a node-name for BlockdevRef) where there is one, else the first branch that is not null.
        const types = t.members!.map((x) => x.type);
        return this.base(types.find((x) => this.jsonType(x) === 'string') ?? types.find((x) => this.jsonType(x) !== 'null') ?? types[0]!, member, depth);
      }
      case 'object': {
        const out: Record<string, Raw> = {};
        if (t.tag) {
          const tagType = this.type(t.members!.find((x) => x.name === t.tag)!.type);
          const preferred = this.tags[t.tag] ?? PREFERRED_TAG[t.tag];
          out[t.tag] = preferred && tagType.values?.includes(preferred) ? preferred : tagType.values![0]!;
        }
        if (depth > 4) return out;
        for (const mem of this.members(t, out)) {
          if (mem.name in out || 'default' in mem) continue;
          out[mem.name] = this.base(mem.type, mem.name, depth + 1);
        }
        return out;
      }
      default:
        throw new Error(`no value for ${t['meta-type']}`);
    }
  }

  /**
   * The changed copies of `value` (of type `name`): each a label and the
   * new value. `depth` bounds how deep into nested objects it goes.
   */
  mutations(name: string, value: Raw, path: string, depth: number): { label: string; value: Raw }[] {
    const t = this.type(name);
    const out: { label: string; value: Raw }[] = [];
    const jt = this.jsonType(name);
    for (const w of WRONG[jt] ?? []) out.push({ label: `${path}=${rawText(w)}`, value: w });
    if (jt === 'int') for (const w of EDGE_INTS) out.push({ label: `${path}=${rawText(w)}`, value: w });
    if (jt === 'string') out.push({ label: `${path}=""`, value: '' });
    if (t['meta-type'] === 'enum') out.push({ label: `${path}=bad-enum`, value: 'no-such-value' });
    if (t['meta-type'] === 'alternate') for (const w of [num('1'), true, null, []]) out.push({ label: `${path}=${rawText(w)}`, value: w });
    if (t['meta-type'] === 'array') {
      const el = this.base(t['element-type']!, '', 1);
      out.push({ label: `${path}=[]`, value: [] });
      for (const m of this.mutations(t['element-type']!, el, `${path}[0]`, depth)) out.push({ label: m.label, value: [m.value] });
    }
    if (t['meta-type'] === 'object' && value && typeof value === 'object' && !Array.isArray(value) && !('raw' in value)) {
      const obj = value as Record<string, Raw>;
      out.push({ label: `${path}+unknown`, value: { ...obj, 'no-such-member': num('1') } });
      if (depth > 0) {
        for (const mem of this.members(t, obj)) {
          const optional = 'default' in mem;
          const p = path === '' ? mem.name : `${path}.${mem.name}`;
          if (!optional && mem.name in obj) {
            const { [mem.name]: _, ...rest } = obj;
            out.push({ label: `${p} missing`, value: rest });
          }
          const cur = mem.name in obj ? obj[mem.name]! : this.base(mem.type, mem.name, 1);
          if (mem.name === t.tag) {
            // A tag of the wrong type or value; its other values are other unions.
            for (const w of ['no-such-value', num('1'), null]) out.push({ label: `${p}=${rawText(w)}`, value: { ...obj, [mem.name]: w } });
            continue;
          }
          for (const m of this.mutations(mem.type, cur, p, depth - 1)) out.push({ label: m.label, value: { ...obj, [mem.name]: m.value } });
        }
      }
    }
    return out;
  }

  /** The unions reachable from a command's arguments: tag member name and its values. */
  unionTags(command: string): Map<string, string[]> {
    const out = new Map<string, string[]>();
    const seen = new Set<string>();
    const walk = (name: string, depth: number) => {
      if (seen.has(name) || depth > 3) return;
      seen.add(name);
      const t = this.type(name);
      if (t['meta-type'] === 'array') return walk(t['element-type']!, depth);
      if (t['meta-type'] === 'alternate') return t.members!.forEach((x) => walk(x.type, depth));
      if (t['meta-type'] !== 'object') return;
      if (t.tag) out.set(t.tag, this.type(t.members!.find((x) => x.name === t.tag)!.type).values!);
      for (const mem of t.members ?? []) walk(mem.type, depth + 1);
      for (const v of t.variants ?? []) for (const mem of this.type(v.type).members ?? []) walk(mem.type, depth + 1);
    };
    walk(this.type(command)['arg-type']!, 0);
    return out;
  }

  /** The names of the commands in the schema. */
  commands(): string[] {
    return [...this.types.values()].filter((t) => t['meta-type'] === 'command').map((t) => t.name);
  }

  /** Every case for `command`: the base request and its mutations, `depth` levels deep. */
  cases(command: string, depth = 2): ArgCase[] {
    const c = this.type(command);
    const argType = c['arg-type']!;
    const base = this.base(argType);
    const request = (args: Raw) => `{"execute": ${JSON.stringify(command)}, "arguments": ${rawText(args)}}`;
    const out: ArgCase[] = knownHang(command, request(base)) ? [] : [{ label: `${command} base`, request: request(base) }];
    for (const m of this.mutations(argType, base, '', depth)) {
      const label = `${command} ${m.label}`;
      const text = request(m.value);
      if (!KNOWN_ABORTS.includes(label) && !knownHang(command, text)) out.push({ label, request: text });
    }
    return out;
  }
}

/**
 * QEMU's user-creatable objects: `--object` of qemu-io, qemu-img and
 * qemu-storage-daemon, and QMP's object-add / object-del. Given
 * as `TYPE,id=ID,prop=value,...` (QEMU's keyval syntax: `,,` is a comma,
 * dotted keys make nested objects, the last of a repeated key wins) or as a
 * JSON object. The checks run in QEMU's order with its messages: the
 * syntax, `qom-type` and `id`, each property's type, unknown properties,
 * the id's form, the property values (in QEMU's QDict order), a duplicate
 * id, then the object's own validation.
 *
 * `throttle-group` creates a throttle group (src/filters/throttle-group.ts)
 * in the tool's graph, with QEMU's `x-bps-total`, ... properties and the
 * `limits` object (`limits.bps-total=...`). `secret` adds a secret
 * (src/core/secrets.ts) from `data` or `file`, raw or `format=base64`. The
 * other types QEMU has are accepted and take their id, but are not created
 * (nothing here uses them).
 */
import type { BlockGraph } from '../core/graph.js';
import { BlockError, einval } from '../core/errors.js';
import { parseQemuJson } from '../core/qemu-json.js';
import { plainJson } from './json.js';
import { qdictOrder } from '../core/qemu-json.js';
import { throttleGroups } from '../filters/throttle-group.js';
import { LIMIT_FIELDS, ThrottleConfig, type ThrottleLimits } from '../filters/throttle-config.js';
import { addSecret, hasSecret, removeSecret } from '../core/secrets.js';
import { secretData, secretHelp, visitSecret } from './secret-object.js';

/** The object types of qemu-img and qemu-io 7.2, as `--object help` lists them. */
export const OBJECT_TYPE_NAMES: readonly string[] = [
  'authz-list',
  'authz-list-file',
  'authz-simple',
  'main-loop',
  'pr-manager-helper',
  'secret',
  'secret_keyring',
  'thread-context',
  'throttle-group',
  'tls-cipher-suites',
  'tls-creds-anon',
  'tls-creds-psk',
  'tls-creds-x509',
] as const;

/** A parsed keyval or JSON value: strings (keyval) or JSON values, nested. */
export type Tree = { [key: string]: unknown };

function isTree(v: unknown): v is Tree {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const NAME_FRAGMENT = /^[A-Za-z_][A-Za-z0-9_-]*$|^[0-9]+$/;

/**
 * Parses QEMU's keyval syntax with `qom-type` as the implied first key.
 * Returns the tree and whether `help` (or `?`) was asked for.
 */
export function parseKeyval(text: string, impliedKey: string): { tree: Tree; help: boolean } {
  const tree: Tree = {};
  let help = false;
  let pos = 0;
  let first = true;
  while (pos < text.length) {
    const rest = text.slice(pos);
    const keyLen = rest.search(/[=,]/) < 0 ? rest.length : rest.search(/[=,]/);
    const key = rest.slice(0, keyLen);
    if (keyLen > 0 && rest[keyLen] !== '=') {
      if (key === 'help' || key === '?') {
        help = true;
        pos += keyLen + (rest[keyLen] === ',' ? 1 : 0);
        first = false;
        continue;
      }
      if (first) {
        tree[impliedKey] = key;
        pos += keyLen + (rest[keyLen] === ',' ? 1 : 0);
        first = false;
        continue;
      }
    }
    first = false;
    const fragments = key.split('.');
    if (fragments.some((f, i) => f === '' || !NAME_FRAGMENT.test(f) || (i === 0 && /^[0-9]/.test(f)))) {
      throw einval(`Invalid parameter '${key}'`);
    }
    if (rest[keyLen] !== '=') throw einval(`Expected '=' after parameter '${key}'`);
    // The value runs to the next single comma; ",," is a comma.
    let value = '';
    let i = keyLen + 1;
    for (; i < rest.length; i++) {
      if (rest[i] === ',') {
        if (rest[i + 1] !== ',') break;
        i++;
      }
      value += rest[i];
    }
    pos += i + (i < rest.length ? 1 : 0);
    let cur = tree;
    for (let f = 0; f < fragments.length - 1; f++) {
      const next = cur[fragments[f]!];
      const path = fragments.slice(0, f + 1).join('.');
      if (next === undefined) cur = cur[fragments[f]!] = {};
      else if (isTree(next)) cur = next;
      else throw einval(`Parameters '${path}.*' used inconsistently`);
    }
    const leaf = fragments[fragments.length - 1]!;
    if (isTree(cur[leaf])) throw einval(`Parameters '${key}.*' used inconsistently`);
    cur[leaf] = value;
  }
  return { tree, help };
}

/** How the values were given: keyval strings are converted, JSON values must have the type. */
export type Syntax = 'keyval' | 'json';

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** C's strtoll in base 0 over the whole text (leading blanks and a sign allowed), as an int64; null if not one. */
export function parseInt64(text: string): number | null {
  const m = /^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  if (!m) return null;
  const digits = m[2]!;
  const magnitude = /^0[xX]/.test(digits) ? BigInt(digits) : digits.length > 1 && digits.startsWith('0') ? BigInt(`0o${digits.slice(1)}`) : BigInt(digits);
  const v = m[1] === '-' ? -magnitude : magnitude;
  if (v < INT64_MIN || v > INT64_MAX) return null;
  return Number(v);
}

/** A value for a message's detail (QMP's bigints and doubles included). */
const shown = (v: unknown): string => JSON.stringify(plainJson(v));

/** An `int` property as QEMU's input visitors read it. */
function intValue(v: unknown, path: string, syntax: Syntax): number {
  if (syntax === 'keyval') {
    const n = typeof v === 'string' ? parseInt64(v) : null;
    if (n === null) {
      if (isTree(v)) throw einval(`Invalid parameter type for '${path}', expected: integer`);
      throw einval(`Parameter '${path}' expects integer`, {}, `got '${String(v)}'`);
    }
    return n;
  }
  // A QMP integer past 2^53 is a bigint (json.ts); beyond int64, or written as a double, QEMU refuses it.
  if (typeof v === 'bigint' && v >= INT64_MIN && v <= INT64_MAX) return Number(v);
  if (typeof v !== 'number' || !Number.isInteger(v)) throw einval(`Invalid parameter type for '${path}', expected: integer`, {}, `got ${shown(v)}`);
  return v;
}

function stringValue(v: unknown, path: string): string {
  if (typeof v !== 'string') throw einval(`Invalid parameter type for '${path}', expected: string`, {}, `got ${shown(v)}`);
  return v;
}

/** A throttle-group's properties after the type checks. */
interface ThrottleGroupProps {
  limits?: ThrottleLimits;
  /** The `x-*` properties, by limit name. */
  x: ThrottleLimits;
}

/** QEMU's QAPI visit of a throttle-group's properties: types in schema order, then unknown keys. */
function visitThrottleGroup(props: Tree, syntax: Syntax): ThrottleGroupProps {
  const out: ThrottleGroupProps = { x: {} };
  if (props['limits'] !== undefined) {
    const raw = props['limits'];
    // A dotted index (limits.0) makes a list in QEMU's keyval.
    if (!isTree(raw) || Object.keys(raw).some((k) => /^[0-9]+$/.test(k))) throw einval("Invalid parameter type for 'limits', expected: object");
    const limits: ThrottleLimits = {};
    for (const f of LIMIT_FIELDS) if (raw[f.name] !== undefined) limits[f.name] = intValue(raw[f.name], `limits.${f.name}`, syntax);
    const unknown = Object.keys(raw).find((k) => !LIMIT_FIELDS.some((f) => f.name === k));
    if (unknown !== undefined) throw einval(`Parameter 'limits.${unknown}' is unexpected`);
    out.limits = limits;
  }
  for (const f of LIMIT_FIELDS) {
    const v = props[`x-${f.name}`];
    if (v !== undefined) out.x[f.name] = intValue(v, `x-${f.name}`, syntax);
  }
  const known = new Set(['limits', ...LIMIT_FIELDS.map((f) => `x-${f.name}`)]);
  const unknown = Object.keys(props).find((k) => !known.has(k));
  if (unknown !== undefined) throw einval(`Parameter '${unknown}' is unexpected`);
  return out;
}

/** The properties `throttle-group,help` lists, as QEMU prints them. */
function throttleGroupHelp(): string {
  const lines = ['limits=<ThrottleLimits>', ...LIMIT_FIELDS.map((f) => `x-${f.name}=<int>`)].sort();
  return `throttle-group options:\n${lines.map((l) => `  ${l}\n`).join('')}`;
}

/** Ids taken by objects that are not created (every type but throttle-group), per graph. */
const OTHER_IDS = new WeakMap<BlockGraph, Set<string>>();

/** Whether `id` names an object of `graph` already (a throttle group, a secret, or another type's). */
export function objectIdTaken(graph: BlockGraph, id: string): boolean {
  return throttleGroups(graph).has(id) || hasSecret(graph, id) || (OTHER_IDS.get(graph)?.has(id) ?? false);
}

/**
 * Builds a group's limits as QEMU sets the properties one by one: in the
 * order it iterates the QDict of the given ones (by hash bucket), so that
 * of several bad values the same one is reported.
 */
function throttleConfig(props: ThrottleGroupProps): ThrottleConfig {
  const config = new ThrottleConfig();
  const given = [...(props.limits ? ['limits'] : []), ...LIMIT_FIELDS.filter((f) => props.x[f.name] !== undefined).map((f) => `x-${f.name}`)];
  for (const [key] of qdictOrder(given.map((k) => [k, k] as const))) {
    if (key === 'limits') config.applyLimits(props.limits!);
    else config.setField(LIMIT_FIELDS.find((f) => `x-${f.name}` === key)!, props.x[key.slice(2) as keyof ThrottleLimits]!, key);
  }
  return config;
}

/** What a caller's object namespace has besides qemu-img's types. */
export interface ObjectTypeOptions {
  /** iothread objects (qemu-storage-daemon's and QMP's): taken and unused, the graph has one I/O thread. */
  iothread?: boolean;
}

/** The iothread properties QEMU 7.2 has (all integers). */
const IOTHREAD_PROPS = ['aio-max-batch', 'poll-grow', 'poll-max-ns', 'poll-shrink', 'thread-pool-max', 'thread-pool-min'];

function typeNames(opts: ObjectTypeOptions): string[] {
  return [...OBJECT_TYPE_NAMES, ...(opts.iothread ? ['iothread'] : [])].sort();
}

/**
 * Handles one `--object` argument for `graph`: creates the object, or
 * returns the help text asked for (the tool prints it and exits with 0).
 * Throws EINVAL with QEMU's message (and hint) on any error.
 */
export function addObject(graph: BlockGraph, text: string, opts: ObjectTypeOptions = {}): { help: string } | undefined {
  if (text.startsWith('{')) {
    const parsed = parseQemuJson(text);
    if (!isTree(parsed)) throw einval("Invalid parameter type for 'qom-type', expected: string");
    createObject(graph, { ...parsed }, 'json', opts);
    return undefined;
  }
  const r = parseKeyval(text, 'qom-type');
  if (r.help) {
    const type = r.tree['qom-type'];
    if (type === 'throttle-group') return { help: throttleGroupHelp() };
    if (type === 'secret') return { help: secretHelp() };
    if (type === 'iothread' && opts.iothread) return { help: `iothread options:\n${IOTHREAD_PROPS.map((p) => `  ${p}=<int>\n`).join('')}` };
    return { help: `List of user creatable objects:\n${typeNames(opts).map((t) => `  ${t}\n`).join('')}` };
  }
  createObject(graph, r.tree, 'keyval', opts);
  return undefined;
}

/**
 * Creates the object `tree` describes (`qom-type`, `id` and its properties,
 * as keyval strings or JSON values): QMP's object-add and `--object`. The
 * checks run in QEMU's order with its messages; throws EINVAL on any error.
 */
export function createObject(graph: BlockGraph, tree: Tree, syntax: Syntax, opts: ObjectTypeOptions = {}): void {
  const { 'qom-type': rawType, id: rawId, ...props } = tree;
  if (rawType === undefined) throw einval("Parameter 'qom-type' is missing");
  const type = stringValue(rawType, 'qom-type');
  if (!typeNames(opts).includes(type)) throw einval(`Parameter 'qom-type' does not accept value '${type}'`);
  if (rawId === undefined) throw einval("Parameter 'id' is missing");
  const id = stringValue(rawId, 'id');
  const groupProps = type === 'throttle-group' ? visitThrottleGroup(props, syntax) : undefined;
  const secretProps = type === 'secret' ? visitSecret(props, syntax === 'keyval') : undefined;
  const iothreadValues = new Map<string, number>();
  if (type === 'iothread') {
    for (const p of IOTHREAD_PROPS) if (props[p] !== undefined) iothreadValues.set(p, intValue(props[p], p, syntax));
    const unknown = Object.keys(props).find((k) => !IOTHREAD_PROPS.includes(k));
    if (unknown !== undefined) throw einval(`Parameter '${unknown}' is unexpected`);
  }
  if (!/^[A-Za-z][A-Za-z0-9._-]*$/.test(id)) {
    throw new BlockError('EINVAL', "Parameter 'id' expects an identifier", {}, { detail: `got '${id}'`, hint: "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n" });
  }
  // QEMU's iothread setters, in the order it sets the given properties (QDict order).
  for (const [p] of qdictOrder(Object.keys(props).filter((k) => iothreadValues.has(k)).map((k) => [k, k] as const))) {
    if (iothreadValues.get(p)! < 0) throw einval(`${p} value must be in range [0, ${INT64_MAX}]`);
  }
  const duplicate = () => einval(`attempt to add duplicate property '${id}' to object (type 'container')`);
  if (secretProps) {
    if (objectIdTaken(graph, id)) throw duplicate();
    const data = secretData(secretProps);
    addSecret(graph, id, data);
    data.fill(0);
    return;
  }
  if (!groupProps) {
    if (objectIdTaken(graph, id)) throw duplicate();
    let ids = OTHER_IDS.get(graph);
    if (!ids) OTHER_IDS.set(graph, (ids = new Set()));
    ids.add(id);
    return;
  }
  const config = throttleConfig(groupProps);
  if (objectIdTaken(graph, id)) throw duplicate();
  throttleGroups(graph).create(id, config);
}

/**
 * Deletes object `id` of `graph` (QMP's object-del): a throttle group no
 * node uses (EBUSY otherwise, QEMU's "is in use" message), a secret, or an
 * object of another type. ENOENT with QEMU's message when there is none.
 */
export function deleteObject(graph: BlockGraph, id: string): void {
  if (throttleGroups(graph).has(id)) {
    throttleGroups(graph).delete(id);
    return;
  }
  if (removeSecret(graph, id)) return;
  if (OTHER_IDS.get(graph)?.delete(id)) return;
  throw new BlockError('ENOENT', `object '${id}' not found`);
}

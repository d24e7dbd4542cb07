/**
 * The `-o` options of qemu-io's `reopen`, checked as QEMU's bdrv_reopen
 * checks them: the generic flags (read-only, auto-read-only, cache.direct,
 * cache.no-flush) must be booleans; a key naming a child (`file.x`) is the
 * child's option `x`; driver, node-name and filename may only be given with
 * their current values; any other key is "Cannot change the option". Of the
 * qcow2 options QEMU can change at run time, lazy-refcounts is handed to the
 * driver's reopen along with the other runtime options (discard switches,
 * cache sizes, cache-clean-interval, overlap-check), which the driver checks
 * and applies (formats/qcow2/reopen.ts); a throttle node's throttle-group
 * likewise (filters/throttle.ts). auto-read-only and cache.no-flush are
 * accepted and change nothing; cache.direct reopens the file with or without
 * O_DIRECT (commands/open.ts), as QEMU's file-posix does.
 */
import type { BlockNode } from '../../core/node.js';

/** What the options ask for, or the message to print. */
export type ReopenPlan = { ok: true; readOnly?: boolean; options: Record<string, string> } | { ok: false; message: string };


const GENERIC_BOOLS = ['read-only', 'auto-read-only', 'cache.direct', 'cache.no-flush'];

/** qcow2 options QEMU changes on reopen, with their value types. */
const QCOW2_RUNTIME: Record<string, 'bool' | 'size' | 'number' | 'string'> = {
  'lazy-refcounts': 'bool',
  'pass-discard-request': 'bool',
  'pass-discard-snapshot': 'bool',
  'pass-discard-other': 'bool',
  'l2-cache-size': 'size',
  'l2-cache-entry-size': 'size',
  'refcount-cache-size': 'size',
  'cache-size': 'size',
  'cache-clean-interval': 'number',
  'overlap-check': 'string',
};

/** The options each driver changes on reopen (the driver's reopen checks and applies them). */
const RUNTIME_OPTIONS: Record<string, Record<string, 'bool' | 'size' | 'number' | 'string'>> = {
  qcow2: QCOW2_RUNTIME,
  // A throttle node moves to another group (block/throttle.c's reopen).
  throttle: { 'throttle-group': 'string' },
};

const isBool = (v: string) => v === 'on' || v === 'off';

/**
 * Checks `opts` (the merged -o lists) for a reopen of `node`; `flagReadOnly`
 * is -r/-w when given, `cacheFlag` whether -c was given.
 */
export function planReopen(node: BlockNode, opts: Record<string, string>, flagReadOnly: boolean | undefined, cacheFlag: boolean): ReopenPlan {
  if (flagReadOnly !== undefined && 'read-only' in opts) return { ok: false, message: "Cannot set both -r/-w and 'read-only'" };
  if (cacheFlag && ('cache.direct' in opts || 'cache.no-flush' in opts)) return { ok: false, message: 'Cannot set both -c and the cache options' };
  for (const k of GENERIC_BOOLS) {
    if (k in opts && !isBool(opts[k]!)) return { ok: false, message: `Parameter '${k}' expects 'on' or 'off'` };
  }
  const options: Record<string, string> = {};
  for (const [key, value] of Object.entries(opts)) {
    if (GENERIC_BOOLS.includes(key)) continue;
    const r = checkKey(node, key, value);
    if (r === 'reopenable') options[key] = value;
    else if (r) return { ok: false, message: r };
  }
  // -r drops qemu-io's write permission; the read-only option alone does not, so it conflicts with it.
  if (opts['read-only'] === 'on' && !node.readOnly) {
    return { ok: false, message: `Read-only block node '${node.nodeName}' cannot support read-write users` };
  }
  const readOnly = 'read-only' in opts ? opts['read-only'] === 'on' : flagReadOnly;
  return readOnly === undefined ? { ok: true, options } : { ok: true, readOnly, options };
}

/**
 * The message for one key of a node (or a child's), null when it may stay,
 * or 'reopenable' for a driver option of the node itself that the reopen changes.
 */
function checkKey(node: BlockNode, key: string, value: string): string | null {
  const dot = key.indexOf('.');
  if (dot > 0) {
    const child = node.children.find((c) => c.name === key.slice(0, dot));
    // cache.* and overlap-check.* belong to the node itself.
    if (child) {
      const r = checkKey(child.node, key.slice(dot + 1), value);
      // The reopen hands options to the named node's driver only.
      return r === 'reopenable' ? `Changing '${key}' on reopen is not supported (only the image's own options change)` : r;
    }
  }
  const unchanged = (current: string) => (value === current ? null : `Cannot change the option '${key}'`);
  if (key === 'driver') return unchanged(node.driver.name);
  if (key === 'node-name') return unchanged(node.nodeName);
  if (key === 'filename') return unchanged(node.filename);
  const base = key.startsWith('overlap-check.') ? 'overlap-check' : key;
  const type = RUNTIME_OPTIONS[node.driver.name]?.[base];
  if (!type) return `Cannot change the option '${key}'`;
  if (type === 'bool' && !isBool(value)) return `Parameter '${key}' expects 'on' or 'off'`;
  // QEMU parses numbers as unsigned: -1 is accepted here and found too big by the driver.
  if (type === 'number' && !/^-?[0-9]+$/.test(value)) return `Parameter '${key}' expects a number`;
  // The driver's reopen checks and applies them (formats/qcow2/reopen.ts).
  return 'reopenable';
}

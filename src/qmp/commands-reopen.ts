/**
 * blockdev-reopen (QEMU 7.2's qmp_blockdev_reopen and block.c's reopen
 * queue): each entry is a node's complete new option set. The queue holds the
 * named nodes and the children they created themselves (a child given inline,
 * or a backing file opened from the image header), which inherit read-only
 * from their parent; children referenced by node-name keep their state. Each
 * entry is checked in QEMU's order: the generic options, options that may not
 * fall back to their default, the backing file that must be named, the
 * `backing` / `file` links to change, and every other option unchanged. Then
 * the nodes are reopened as one transaction (core/graph-reopen.ts) and the
 * links changed.
 */
import { drainPulse } from '../core/drain.js';
import { topologicalOrder } from '../core/perm-update.js';
import type { BdrvChild } from '../core/child.js';
import type { BlockNode } from '../core/node.js';
import type { GraphChanges } from '../core/graph-reopen.js';
import { ChildRole, ROLE_BACKING } from '../core/permissions.js';
import type { BlockQmp } from './block-qmp.js';
import { checkBlockdevOptions } from './blockdev-schema.js';
import type { QmpCommand } from './dispatcher.js';
import { genericError } from './errors.js';
import { refreshFilename } from '../core/filename.js';
import { isObject, m, struct } from './schema.js';

type Flat = Record<string, unknown>;

/** Options every driver takes on reopen (QEMU's bdrv_reset_options_allowed list). */
const COMMON = ['node-name', 'discard', 'cache.direct', 'cache.no-flush', 'read-only', 'auto-read-only', 'detect-zeroes'];

/** The options each driver changes on reopen (its mutable_opts); its reopen checks and applies them. */
const MUTABLE: Record<string, readonly string[]> = {
  qcow2: [
    'lazy-refcounts', 'pass-discard-request', 'pass-discard-snapshot', 'pass-discard-other', 'overlap-check',
    'overlap-check.template', 'overlap-check.main-header', 'overlap-check.active-l1', 'overlap-check.active-l2',
    'overlap-check.refcount-table', 'overlap-check.refcount-block', 'overlap-check.snapshot-table',
    'overlap-check.inactive-l1', 'overlap-check.inactive-l2', 'overlap-check.bitmap-directory', 'cache-size',
    'l2-cache-size', 'l2-cache-entry-size', 'refcount-cache-size', 'cache-clean-interval',
  ],
  file: ['x-check-cache-dropped'],
  throttle: ['throttle-group'],
};

/** QEMU's qdict_flatten: nested objects become dotted keys. */
export function flatten(o: Record<string, unknown>, prefix = '', out: Flat = {}): Flat {
  for (const [k, v] of Object.entries(o)) {
    if (isObject(v)) flatten(v, `${prefix}${k}.`, out);
    else out[`${prefix}${k}`] = v;
  }
  return out;
}

/** JSON equality of two option values (QEMU's qobject_is_equal). */
function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** One node of the queue. */
interface Entry {
  node: BlockNode;
  options: Flat;
  readOnly: boolean;
  /** False for a named node: its options left out return to their defaults. */
  keepOld: boolean;
  backingMissing: boolean;
}

/** Did `node` create the child `link` itself (inline options, or a backing file from the header)? */
function inheritsFrom(node: BlockNode, link: BdrvChild): boolean {
  const given = node.options[link.name];
  if (given === undefined) return link.name === 'backing' || link.name === 'file';
  return isObject(given);
}

/** Keys of `flat` that start with `prefix`, taken out, without it. */
function extract(flat: Flat, prefix: string): Flat {
  const out: Flat = {};
  for (const k of Object.keys(flat)) {
    if (k.startsWith(prefix)) {
      out[k.slice(prefix.length)] = flat[k];
      delete flat[k];
    }
  }
  return out;
}

const asBool = (v: unknown): boolean | undefined => (v === undefined ? undefined : v === true || v === 'on');

/**
 * QEMU's bdrv_reopen_queue_child: adds `node` and the children it created
 * itself. The read-only option is the one given, else the parent's (a
 * backing file: on), else with `keepOld` the node's current state, else off;
 * `parentRo` is the parent's read-only option when it has one.
 */
function enqueue(queue: Map<BlockNode, Entry>, node: BlockNode, options: Flat, keepOld: boolean, parentRo?: boolean, cow = false): void {
  const previous = queue.get(node);
  let opts: Flat = previous || keepOld ? { ...(previous?.options ?? flatten(node.explicitOptions)), ...options } : { ...options };
  let roOption = asBool(opts['read-only']);
  if (roOption === undefined) roOption = cow ? true : parentRo;
  if (roOption === undefined && keepOld) roOption = node.readOnly;
  if (keepOld) opts = { ...flatten(node.options), ...opts };
  const readOnly = roOption ?? false;
  const entry: Entry = {
    node,
    options: opts,
    readOnly,
    keepOld,
    backingMissing: !keepOld && !('backing' in opts) && !('backing.driver' in opts),
  };
  queue.set(node, entry);
  for (const link of node.children) {
    if (!inheritsFrom(node, link)) continue;
    let childOpts: Flat = {};
    let childKeepOld = keepOld;
    if (link.name in opts) {
      // A reference to another node (or null): that one is not reopened here.
      if (opts[link.name] !== link.node.nodeName) continue;
      childKeepOld = true;
    } else {
      childOpts = extract(opts, `${link.name}.`);
    }
    enqueue(queue, link.node, childOpts, childKeepOld, roOption, (link.role & ChildRole.COW) !== 0);
  }
}

/** A staged change of a node's `backing` or `file` link (QEMU's bdrv_reopen_parse_file_or_backing). */
interface LinkChange {
  node: BlockNode;
  name: 'backing' | 'file';
  old: BdrvChild | undefined;
  to: BlockNode | null;
  /** While applied: the old child, held so that an undo can put it back. */
  held?: BlockNode;
  replaced?: boolean;
  detached?: boolean;
  added?: BdrvChild;
}

/** The options of an entry the driver's reopen gets (its mutable ones). */
function driverOptions(e: Entry): Flat {
  const out: Flat = {};
  for (const key of MUTABLE[e.node.driver.name] ?? []) if (key in e.options) out[key] = e.options[key];
  return out;
}

/**
 * The checks of QEMU's bdrv_reopen_prepare that come before the driver's:
 * the generic options and those that may not fall back to their defaults.
 */
function prepareGeneric(e: Entry): void {
  const { node, options: opts } = e;
  const discard = opts.discard;
  if (discard !== undefined && !['ignore', 'off', 'unmap', 'on'].includes(String(discard))) throw genericError('Invalid discard option');
  // Without a discard option the node keeps its mode (QEMU keeps the flag).
  const unmap = discard === undefined ? node.discardUnmap : discard === 'unmap' || discard === 'on';
  if (opts['detect-zeroes'] === 'unmap' && !unmap) {
    throw genericError('setting detect-zeroes to unmap is not allowed without setting discard operation to unmap');
  }
  if (e.readOnly && node.copyOnRead > 0) throw genericError(`Can't set node '${node.nodeName}' to r/o with copy-on-read enabled`);
  const mutable = MUTABLE[node.driver.name] ?? [];
  if (!e.keepOld) {
    for (const key of Object.keys(flatten(node.explicitOptions))) {
      const child = node.children.find((c) => key === c.name || key.startsWith(`${c.name}.`));
      if (child || key in opts || COMMON.includes(key) || mutable.includes(key)) continue;
      throw genericError(`Option '${key}' cannot be reset to its default value`);
    }
  }
}

/**
 * The checks after the driver's prepare: the backing file that must be
 * named, the `backing` and `file` links to change (staged in `changes`), and
 * every other option unchanged.
 */
function prepareLinks(q: BlockQmp, e: Entry, changes: LinkChange[]): void {
  const { node } = e;
  const opts = { ...e.options };
  const mutable = MUTABLE[node.driver.name] ?? [];
  const backingName = node.instance.backingFile?.()?.filename;
  if (node.driver.supportsBacking && e.backingMissing && (node.backing || backingName)) {
    throw genericError(`backing is missing for '${node.nodeName}'`);
  }
  for (const name of ['backing', 'file'] as const) {
    const value = opts[name];
    delete opts[name];
    if (value === undefined) continue;
    const old = node.children.find((c) => c.name === name);
    let to: BlockNode | null = null;
    if (typeof value === 'string') {
      to = q.lookupNode(undefined, value);
      if (reaches(to, node, changes)) throw genericError(`Making '${value}' a ${name} child of '${node.nodeName}' would create a cycle`);
    }
    if (old?.node === to) continue;
    if (old?.frozen) throw genericError(`Cannot change frozen '${name}' link from '${node.nodeName}' to '${old.node.nodeName}'`);
    if (node.driver.kind === 'filter' && !old) {
      throw genericError(`'${node.nodeName}' is a ${node.driver.name} filter node that does not support a ${name} child`);
    }
    changes.push({ node, name, old, to });
  }
  const old = flatten(node.options);
  for (const [key, value] of Object.entries(opts)) {
    if (COMMON.includes(key) || mutable.includes(key)) continue;
    const child = node.children.find((c) => c.name === key);
    if (child && value === child.node.nodeName) continue;
    if (!sameValue(value, old[key])) throw genericError(`Cannot change the option '${key}'`);
  }
}

/**
 * Whether `from` reaches `node` through its children (`from` itself
 * included), in the graph as the changes staged so far leave it (QEMU makes
 * them one by one inside the transaction, so a later one sees the earlier).
 */
function reaches(from: BlockNode, node: BlockNode, staged: readonly LinkChange[]): boolean {
  if (from === node) return true;
  const children = from.children.filter((c) => !staged.some((s) => s.node === from && s.name === c.name)).map((c) => c.node);
  for (const s of staged) if (s.node === from && s.to) children.push(s.to);
  return children.some((c) => reaches(c, node, staged));
}

/**
 * Applies a staged link change: a replaced child keeps its link (the
 * driver holds it) and only points elsewhere; otherwise the old child goes
 * or the new one is attached. The old node is held for an undo.
 */
async function changeLink(q: BlockQmp, c: LinkChange): Promise<void> {
  const role = c.name === 'backing' ? ROLE_BACKING : c.old?.role ?? ChildRole.PRIMARY | ChildRole.FILTERED;
  if (c.old) {
    c.held = c.old.node;
    c.held.ref();
  }
  if (c.old && c.to) {
    await q.graph.replaceChildNode(c.old, c.to);
    c.replaced = true;
    return;
  }
  if (c.old) {
    await q.graph.detachChild(c.old);
    c.detached = true;
  }
  if (!c.to) return;
  c.to.ref();
  try {
    c.added = await q.graph.attachChild(c.node, c.to, c.name, role);
  } catch (e) {
    await c.to.unref();
    throw e;
  }
}

/** Puts back what {@link changeLink} did (also half of it). */
async function undoLink(q: BlockQmp, c: LinkChange): Promise<void> {
  if (c.replaced && c.old && c.held) await q.graph.replaceChildNode(c.old, c.held);
  c.replaced = false;
  if (c.added) await q.graph.detachChild(c.added);
  c.added = undefined;
  if (c.detached && c.held && c.old) {
    c.held.ref();
    await q.graph.attachChild(c.node, c.held, c.name, c.old.role);
  }
  c.detached = false;
}

/** The staged link changes as one part of the reopen transaction. */
function linkTransaction(q: BlockQmp, changes: LinkChange[]): GraphChanges {
  const applied: LinkChange[] = [];
  return {
    async apply() {
      for (const c of changes) {
        applied.push(c);
        await changeLink(q, c);
      }
    },
    async undo() {
      for (const c of applied.splice(0).reverse()) await undoLink(q, c);
    },
  };
}

/** blockdev-reopen of `q`. */
export function reopenCommands(q: BlockQmp): QmpCommand[] {
  const known = (driver: string) => q.graph.lookupDriver(driver) !== undefined;
  const options = { custom: 'BlockdevOptions', check: (v: unknown, p: string, kv: boolean) => checkBlockdevOptions(v, p, known, kv) };
  return [
    {
      name: 'blockdev-reopen',
      args: struct('blockdev-reopen', [m('options', { list: options })]),
      run: async (args) => {
        const queue = new Map<BlockNode, Entry>();
        for (const o of args.options as Array<Record<string, unknown>>) {
          const name = o['node-name'];
          if (typeof name !== 'string') throw genericError('node-name not specified');
          if (!q.graph.hasNode(name)) throw genericError(`Failed to find node with node-name='${name}'`);
          enqueue(queue, q.graph.findNode(name), flatten(o), false);
        }
        // QEMU asserts a non-empty queue (its daemon aborts); an empty list changes nothing here.
        if (queue.size === 0) return;
        const changes: LinkChange[] = [];
        const entries = [...queue.values()];
        // QEMU drains each node's subtree around the reopen: jobs there pause and resume once.
        await drainPulse(topologicalOrder(entries.map((e) => e.node)));
        // The link changes are part of the reopen: a refusal anywhere leaves every node and link as it was.
        try {
          await q.graph.reopen(
            entries.map((e) => {
              // cache.direct as given, else kept (keepOld) or off, as cache.no-flush below.
              const d = e.options['cache.direct'];
              const direct = d !== undefined || !e.keepOld ? d === true : undefined;
              return { node: e.node, readOnly: e.readOnly, options: driverOptions(e), ...(direct !== undefined ? { direct } : {}) };
            }),
            false,
            { before: (node) => prepareGeneric(queue.get(node)!), after: (node) => prepareLinks(q, queue.get(node)!, changes) },
            linkTransaction(q, changes),
          );
        } finally {
          // Done or undone: the old children held for an undo are let go.
          for (const c of changes) {
            const held = c.held;
            c.held = undefined;
            await held?.unref();
          }
        }
        for (const e of entries) {
          const o = e.options;
          if (o.discard !== undefined) e.node.discardUnmap = o.discard === 'unmap' || o.discard === 'on';
          if (o['detect-zeroes'] !== undefined || !e.keepOld) e.node.detectZeroes = (o['detect-zeroes'] as typeof e.node.detectZeroes | undefined) ?? 'off';
          if (o['cache.no-flush'] !== undefined || !e.keepOld) e.node.noFlush = o['cache.no-flush'] === true;
        }
        for (const c of changes) refreshFilename(c.node);
      },
    },
  ];
}

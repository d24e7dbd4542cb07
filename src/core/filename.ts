/**
 * The names a node shows (QEMU 7.2's bdrv_refresh_filename), worked out in
 * one place for `img info`, QMP's query-named-block-nodes and the graph:
 *
 * - the full open options: `driver`, `filename` and the driver's strong
 *   options as the node was given them, then each child's full options
 *   under its link's name (the backing file only when it is not the one the
 *   image names, `backing: null` when that one was left out);
 * - the exact filename: a plain name that opens the same node. A protocol
 *   keeps the name it opened; a format takes its file's, unless a strong
 *   option or an overridden child changes what that name would open; a
 *   filter has none unless its driver builds one (blkdebug:CONF:IMAGE);
 * - the filename: the exact one, else `json:` and the full options.
 */
import { isNode, type BlockNode } from './node.js';
import { ChildRole } from './permissions.js';
import { qdictJsonNested, qdictOrder, type QdictEntries, type QdictValue } from './qemu-json.js';
import type { OptionValue } from './options.js';

/**
 * Scalars of `options` under dotted keys, lists by index (QEMU's flattened
 * QDict). A list's dictionaries are walked in QDict order, as QEMU's
 * flattening walks them; dotted keys keep the order they were given in.
 */
function flatten(entries: ReadonlyArray<readonly [string, OptionValue]>, prefix: string, out: Map<string, QdictValue>): Map<string, QdictValue> {
  for (const [k, v] of entries) {
    if (v === undefined) continue;
    const key = prefix + k;
    if (Array.isArray(v)) {
      v.forEach((x, i) => {
        if (x !== null && typeof x === 'object' && !Array.isArray(x)) flatten(qdictOrder(Object.entries(x)), `${key}.${i}.`, out);
        else flatten([[String(i), x]], `${key}.`, out);
      });
    } else if (v !== null && typeof v === 'object') flatten(Object.entries(v), `${key}.`, out);
    else out.set(key, v);
  }
  return out;
}

/**
 * The order to gather options under a prefix in, so that the json: name
 * lists those of one hash bucket as QEMU does: for a node opened from
 * options nested in its parent's, QEMU took them out of the parent's
 * flattened dictionary (walked in QDict order of `link.key`); at the top,
 * they stay in the order given.
 */
function prefixOrder(node: BlockNode, keys: string[]): string[] {
  const link = node.parents.find((c) => isNode(c.parent) && typeof c.parent.options[c.name] === 'object' && c.parent.options[c.name] !== null);
  if (!link) return keys;
  return qdictOrder(keys.map((k) => [`${link.name}.${k}`, k] as const))
    .map(([, k]) => k)
    .reverse();
}

/**
 * Appends the node's `driver`, `filename` and strong options to `target`;
 * true when a strong option other than those two was given (the node then
 * needs a json: name).
 */
function appendStrongOptions(node: BlockNode, target: Array<readonly [string, QdictValue]>): boolean {
  const flat = flatten(Object.entries(node.options), '', new Map());
  let found = false;
  for (const name of ['driver', 'filename', ...(node.driver.strongOptions ?? [])]) {
    let given = false;
    if (name.endsWith('.')) {
      for (const k of prefixOrder(node, [...flat.keys()].filter((k) => k.startsWith(name)))) {
        target.push([k, flat.get(k)!]);
        given = true;
      }
    } else if (flat.has(name)) {
      target.push([name, flat.get(name)!]);
      given = true;
    }
    if (given && name !== 'driver' && name !== 'filename') found = true;
  }
  if (!target.some(([k]) => k === 'driver')) target.push(['driver', node.driver.name]);
  return found;
}

/**
 * The backing file the image names, as the name its backing node would show
 * when opened from it alone (QEMU's auto_backing_file).
 */
function autoBackingFile(node: BlockNode): string {
  const named = node.instance?.backingFile?.()?.filename ?? '';
  const implicit = node.implicitBacking;
  return implicit && implicit.named === named ? implicit.filename : named;
}

/**
 * Whether the backing child is not the file the image names (QEMU's
 * bdrv_backing_overridden; it may say so of a node opened another way to
 * the same file, as QEMU's does).
 */
export function backingOverridden(node: BlockNode): boolean {
  if (!node.driver.supportsBacking) return false;
  const auto = autoBackingFile(node);
  const backing = node.backing;
  if (backing) return auto !== backing.node.filename;
  // Left out by the opener's flag (qemu-img info opens so, without I/O): not an override of the image.
  if (node.noBackingFlag) return false;
  return auto !== '';
}

/** The children's options under their link names (QEMU lists the newest link first). */
function gatherChildOptions(node: BlockNode, target: Array<readonly [string, QdictValue]>, overridden: boolean): void {
  if (node.driver.gatherChildOptions) {
    node.driver.gatherChildOptions(node, target, overridden);
    return;
  }
  const backing = node.backing;
  for (const c of [...node.children].reverse()) {
    if (c === backing && !overridden) continue;
    target.push([c.name, { entries: c.node.fullOpenOptions }]);
  }
  if (overridden && !backing) target.push(['backing', null]);
}

/** Whether a node opens by a file name of its own (QEMU's drivers with bdrv_file_open). */
function opensByName(node: BlockNode): boolean {
  return node.driver.kind === 'protocol' || node.driver.protocolPrefixes !== undefined;
}

/**
 * Works out `node`'s names (its children's first): {@link BlockNode.fullOpenOptions},
 * {@link BlockNode.exactFilename} and {@link BlockNode.filename}. Called where
 * QEMU calls bdrv_refresh_filename: after an open, before a name is shown.
 */
export function refreshFilename(node: BlockNode): void {
  if (!node.isOpen) return;
  for (const c of node.children) refreshFilename(c.node);
  if (node.implicit && node.children.length === 1) {
    const child = node.children[0]!.node;
    node.exactFilename = child.exactFilename;
    node.filename = child.filename;
    node.fullOpenOptions = child.fullOpenOptions;
    return;
  }
  const overridden = backingOverridden(node);
  const opts: Array<readonly [string, QdictValue]> = [];
  const needsJson = appendStrongOptions(node, opts) || overridden;
  gatherChildOptions(node, opts, overridden);
  node.fullOpenOptions = opts;

  const primary = node.children.find((c) => c.role & ChildRole.PRIMARY)?.node;
  let exact: string;
  if (node.driver.refreshFilename) {
    exact = node.driver.refreshFilename(node, opts);
  } else if (primary) {
    // A format shows its file's name when opening that file would build this very node:
    // no strong option, no overridden child, and the file a protocol (filters never probe).
    exact = primary.exactFilename !== '' && opensByName(primary) && node.driver.kind !== 'filter' && !needsJson ? primary.exactFilename : '';
  } else {
    exact = node.openFilename;
  }
  node.exactFilename = exact;
  node.filename = exact !== '' ? exact : `json:${qdictJsonNested(opts)}`;
}

/** {@link refreshFilename}, then the node's name. */
export function refreshedFilename(node: BlockNode): string {
  refreshFilename(node);
  return node.filename;
}

/** The entries of a full-open-options value, for drivers that gather children themselves. */
export function childOptions(node: BlockNode): QdictValue {
  return { entries: node.fullOpenOptions as QdictEntries };
}

/**
 * Reopen (QEMU's bdrv_reopen_multiple): changing nodes between read-only and
 * read-write, with driver options, as one transaction.
 */
import type { BlockNode } from './node.js';
import { toBlockError } from './errors.js';
import { ChildRole } from './permissions.js';
import { preparePermUpdate } from './perm-update.js';
import { flush } from './request-flush.js';

/**
 * Links a reopen changes (blockdev-reopen's backing and file): applied after
 * every node's prepare, before the permission check, and undone with the
 * rest when anything fails (QEMU changes them inside the reopen transaction).
 */
export interface GraphChanges {
  apply(): Promise<void>;
  /** Puts back what apply changed, also when apply itself failed half-way. */
  undo(): Promise<void>;
}

/**
 * Reopens nodes read-only or read-write (QEMU's bdrv_reopen_multiple),
 * handing each named node's driver the `options` to change. Each
 * node's `file`/`data-file` subtree follows (the children it opened itself
 * without a read-only of their own); backing files keep their state.
 * Prepare runs for every node, then the permission check; any failure
 * aborts everything and leaves the graph as it was. Then each driver's
 * reopenCommitPost runs; its failure is thrown, but the reopen stays.
 * With `subtree` false only the listed nodes are reopened (the caller built
 * the whole queue, as blockdev-reopen does from its options). `check.before`
 * and `check.after` run for each node around its driver's prepare (QEMU's
 * generic checks); a throw aborts the reopen like a driver's. `links`
 * are the graph changes that go with the reopen, all or nothing with it.
 */
export async function reopen(
  entries: Array<{ node: BlockNode; readOnly: boolean; options?: Record<string, unknown>; direct?: boolean }>,
  subtree = true,
  check?: { before?: (node: BlockNode) => void; after?: (node: BlockNode) => void },
  links?: GraphChanges,
): Promise<void> {
  const wanted = new Map<BlockNode, boolean>();
  // cache.direct: a named node's new value, which its subtree takes unless a child set its own.
  const direct = new Map<BlockNode, boolean>();
  const addSubtree = (n: BlockNode, ro: boolean, d: boolean | undefined) => {
    if (wanted.has(n)) return;
    wanted.set(n, ro);
    if (d !== undefined) direct.set(n, d);
    // As QEMU's bdrv_reopen_queue_child: only children the node opened itself follow, and not
    // those given their own read-only (a node named by reference keeps its state).
    if (subtree) {
      for (const c of n.children) {
        if (c.role & ChildRole.COW || c.node.inheritsFrom !== n || c.node.explicitOptions['read-only'] !== undefined) continue;
        addSubtree(c.node, ro, hasOwnDirect(c.node) ? undefined : d);
      }
    }
  };
  for (const e of entries) addSubtree(e.node, e.readOnly, e.direct);
  // Driver options go to the named node only (its subtree keeps its own).
  const options = new Map(entries.map((e) => [e.node, e.options ?? {}]));
  const states = [...wanted].map(([node, readOnly]) => ({ node, readOnly, options: options.get(node) ?? {}, ...(direct.has(node) ? { direct: direct.get(node)! } : {}) }));
  // As QEMU's bdrv_reopen_multiple, every node is flushed first (free when clean): data is on
  // disk before a node stops being writable or its file is opened anew.
  for (const s of states) {
    try {
      await flush(s.node);
    } catch (e) {
      throw toBlockError(e).withPrefix('Error flushing drive');
    }
  }
  const prepared: typeof states = [];
  let linksApplied = false;
  const wasReadOnly = new Map(states.map((s) => [s.node, s.node.readOnly]));
  try {
    for (const s of states) {
      check?.before?.(s.node);
      await s.node.instance.reopenPrepare?.(s);
      prepared.push(s);
      check?.after?.(s.node);
    }
    if (links) {
      // The new links take their permissions as the nodes will be (a node becoming read-only
      // needs no write on its new file).
      for (const s of states) s.node.readOnly = s.readOnly;
      linksApplied = true;
      try {
        await links.apply();
      } finally {
        // The check below and its messages see the nodes as they are until the commit.
        for (const [node, ro] of wasReadOnly) node.readOnly = ro;
      }
    }
    const tx = preparePermUpdate(
      wanted.keys(),
      (n) => wanted.get(n) ?? n.readOnly,
    );
    for (const s of states) s.node.readOnly = s.readOnly;
    for (const s of states) s.node.instance.reopenCommit?.(s);
    for (const s of states) if (s.direct !== undefined) s.node.direct = s.direct;
    tx.commit();
    // A file now (or no longer) opened with O_DIRECT has other request limits: children first.
    if (direct.size > 0) for (const s of [...states].reverse()) s.node.graph.refreshLimits(s.node);
  } catch (e) {
    if (linksApplied) await links!.undo().catch(() => undefined);
    for (const s of prepared.reverse()) s.node.instance.reopenAbort?.(s);
    throw toBlockError(e);
  }
  // The reopen is done; what runs now cannot undo it, only report.
  let postError: unknown = null;
  for (const s of states) {
    try {
      await s.node.instance.reopenCommitPost?.(s);
    } catch (e) {
      postError ??= toBlockError(e, { node: s.node.nodeName });
    }
  }
  if (postError) throw postError;
}

/** Whether the node was opened with a cache.direct of its own (it keeps it when its parent's changes). */
function hasOwnDirect(node: BlockNode): boolean {
  const cache = node.explicitOptions['cache'];
  return typeof cache === 'object' && cache !== null && 'direct' in cache;
}

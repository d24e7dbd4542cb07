/**
 * Two-phase permission updates over a subgraph (QEMU's bdrv_refresh_perms).
 *
 * Given nodes whose parent links changed (or whose read-only state is about to
 * change), the update walks the nodes and everything below them in topological
 * order: it computes each node's cumulative permissions from its parent links,
 * refuses conflicts (EPERM naming both users) and writes on read-only nodes,
 * asks the driver (`checkPerm`), and derives the permissions the node needs on
 * its own children. Nothing is applied until {@link PermTransaction.commit};
 * {@link PermTransaction.abort} tells the drivers to forget.
 */
import type { BlockNode } from './node.js';
import type { BdrvChild } from './child.js';
import { parentDescription, parentName } from './child.js';
import { BlockError } from './errors.js';
import { defaultChildPerms, Perm, PERM_ALL, permNames, type PermMask } from './permissions.js';

export interface PermTransaction {
  commit(): void;
  abort(): void;
}

interface Pending {
  perm: PermMask;
  shared: PermMask;
}

/** Nodes reachable from `start` through child links, parents before children. */
export function topologicalOrder(start: Iterable<BlockNode>): BlockNode[] {
  const visited = new Set<BlockNode>();
  const post: BlockNode[] = [];
  const visit = (n: BlockNode) => {
    if (visited.has(n)) return;
    visited.add(n);
    for (const c of n.children) visit(c.node);
    post.push(n);
  };
  for (const n of start) visit(n);
  return post.reverse();
}

/** The permissions `node` needs on `link` given its own cumulative ones. */
export function childPermsFor(
  node: BlockNode,
  link: BdrvChild,
  perm: PermMask,
  shared: PermMask,
  writable: boolean,
): Pending {
  const inst = node.instance as BlockNode['instance'] | undefined;
  const p = inst?.childPerm
    ? inst.childPerm(link, link.role, perm, shared)
    : node.driver.childPerm
      ? node.driver.childPerm(node, link, link.role, perm, shared)
      : defaultChildPerms(link.role, perm, shared, writable);
  // A force-share child is shared entirely by its parents (QEMU's bdrv_child_perm).
  return link.node.forceShare ? { perm: p.perm, shared: PERM_ALL } : p;
}

/**
 * Checks new permissions for `start` and below. `readOnlyOf` gives the read-only
 * state each node will have after the operation (reopen changes it).
 * Throws a BlockError (EPERM / EACCES) when the new state is not allowed.
 */
export function preparePermUpdate(
  start: Iterable<BlockNode>,
  readOnlyOf: (n: BlockNode) => boolean = (n) => n.readOnly,
  linkOverride: Map<BdrvChild, Pending> = new Map(),
): PermTransaction {
  const order = topologicalOrder(start);
  const pending = new Map<BdrvChild, Pending>(linkOverride);
  const checked: Array<{ node: BlockNode; perm: PermMask; shared: PermMask }> = [];
  const get = (l: BdrvChild): Pending => pending.get(l) ?? { perm: l.perm, shared: l.shared };
  try {
    for (const node of order) {
      let perm = 0;
      let shared = PERM_ALL;
      const links = node.parents;
      for (const l of links) {
        const p = get(l);
        perm |= p.perm;
        shared &= p.shared;
      }
      // QEMU's bdrv_parent_perms_conflict: every ordered pair, newest links first; the first
      // user whose permissions another does not share is named with that other.
      for (let i = links.length - 1; i >= 0; i--) {
        const sharer = links[i]!;
        for (let j = links.length - 1; j >= 0; j--) {
          const taker = links[j]!;
          if (taker === sharer) continue;
          const denied = get(taker).perm & ~get(sharer).shared;
          if (denied) {
            const name = node.nodeName;
            throw new BlockError(
              'EPERM',
              `Permission conflict on node '${name}': permissions '${permNames(denied)}' are both required by ` +
                `${parentDescription(taker.parent)} (uses node '${name}' as '${taker.name}' child) and unshared by ` +
                `${parentDescription(sharer.parent)} (uses node '${name}' as '${sharer.name}' child).`,
              { node: name },
            );
          }
        }
      }
      const readOnly = readOnlyOf(node);
      if (readOnly && perm & (Perm.WRITE | Perm.WRITE_UNCHANGED)) {
        const writer = links.find((l) => get(l).perm & (Perm.WRITE | Perm.WRITE_UNCHANGED));
        // QEMU's two wordings (read-only now, or about to become so in a reopen); who writes goes in the detail.
        throw new BlockError(
          'EACCES',
          node.readOnly ? 'Block node is read-only' : `Read-only block node '${node.nodeName}' cannot support read-write users`,
          { node: node.nodeName },
          { detail: `node '${node.nodeName}' is wanted for writing by ${writer ? parentName(writer.parent) : 'a user'}` },
        );
      }
      const inst = node.instance as BlockNode['instance'] | undefined;
      inst?.checkPerm?.(perm, shared);
      checked.push({ node, perm, shared });
      for (const link of node.children) {
        if (linkOverride.has(link)) continue;
        pending.set(link, childPermsFor(node, link, perm, shared, !readOnly));
      }
    }
  } catch (e) {
    for (const c of checked) (c.node.instance as BlockNode['instance'] | undefined)?.abortPermUpdate?.();
    throw e;
  }
  let done = false;
  return {
    commit() {
      if (done) return;
      done = true;
      for (const [link, p] of pending) {
        link.perm = p.perm;
        link.shared = p.shared;
      }
      for (const c of checked) (c.node.instance as BlockNode['instance'] | undefined)?.setPerm?.(c.perm, c.shared);
    },
    abort() {
      if (done) return;
      done = true;
      for (const c of checked) (c.node.instance as BlockNode['instance'] | undefined)?.abortPermUpdate?.();
    },
  };
}

/** Checks and applies in one step. */
export function refreshPerms(start: Iterable<BlockNode>, linkOverride?: Map<BdrvChild, Pending>): void {
  preparePermUpdate(start, undefined, linkOverride).commit();
}

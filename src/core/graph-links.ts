/**
 * The edges of the block graph: attaching, detaching and replacing links
 * (BdrvChild), each followed by a permission update of the nodes involved
 * (attaching and replacing are undone when the update is refused).
 */
import type { BlockNode } from './node.js';
import { BdrvChild, type RootParent } from './child.js';
import { einval } from './errors.js';
import { ChildRole, type ChildRoleMask, type PermMask } from './permissions.js';
import { refreshPerms, topologicalOrder } from './perm-update.js';

/**
 * Attaches `child` under `parent` as `name` with `role`, taking the
 * permissions the parent's driver needs. The caller's reference to `child`
 * passes to the link. Refuses (EPERM) if permissions conflict, or if the
 * link would make a cycle.
 */
export async function attachChild(parent: BlockNode, child: BlockNode, name: string, role: ChildRoleMask): Promise<BdrvChild> {
  if (child === parent || topologicalOrder([child]).includes(parent)) {
    throw einval(`Making node '${child.nodeName}' a child of node '${parent.nodeName}' would create a loop`);
  }
  if (parent.children.some((c) => c.name === name)) {
    throw einval(`Node '${parent.nodeName}' already has a child named '${name}'`);
  }
  const link = new BdrvChild(name, role, parent, child);
  parent.children.push(link);
  child.parents.push(link);
  try {
    refreshPerms([parent]);
  } catch (e) {
    parent.children.splice(parent.children.indexOf(link), 1);
    child.parents.splice(child.parents.indexOf(link), 1);
    throw e;
  }
  return link;
}

/**
 * Attaches a root user (BlockBackend, job) to `node` with the given
 * permissions. Takes a reference on the node.
 */
export async function attachRoot(parent: RootParent, node: BlockNode, perm: PermMask, shared: PermMask, name = 'root'): Promise<BdrvChild> {
  return attachRootNow(parent, node, perm, shared, name);
}

/** {@link attachRoot} at once: refusals are thrown, not returned as a rejected promise. */
export function attachRootNow(parent: RootParent, node: BlockNode, perm: PermMask, shared: PermMask, name = 'root'): BdrvChild {
  const link = new BdrvChild(name, ChildRole.PRIMARY, parent, node);
  link.perm = perm;
  link.shared = shared;
  node.parents.push(link);
  try {
    refreshPerms([node]);
  } catch (e) {
    node.parents.splice(node.parents.indexOf(link), 1);
    throw e;
  }
  node.ref();
  return link;
}

/** Detaches a root link made by {@link attachRoot} and drops its reference. */
export async function detachRoot(link: BdrvChild): Promise<void> {
  link.assertNotFrozen('detach');
  const node = link.node;
  const i = node.parents.indexOf(link);
  if (i < 0) return;
  node.parents.splice(i, 1);
  refreshPerms([node]);
  await node.unref();
}

/** Changes the permissions of a link (two-phase: refused changes leave it as it was). */
export function setLinkPerms(link: BdrvChild, perm: PermMask, shared: PermMask): void {
  const override = new Map([[link, { perm, shared }]]);
  refreshPerms([link.node], override);
}

/** Detaches a child link from its node parent and releases the child node. */
export async function detachChild(link: BdrvChild): Promise<void> {
  link.assertNotFrozen('detach');
  const parent = link.parent;
  if (parent.kind === 'root') return detachRoot(link);
  const i = parent.children.indexOf(link);
  if (i < 0) return;
  parent.children.splice(i, 1);
  link.node.parents.splice(link.node.parents.indexOf(link), 1);
  refreshPerms([link.node]);
  await link.node.unref();
}

/**
 * Puts `to` in place of `from` under all of `from`'s parents (except `to`
 * itself and its own descendants, which would make a loop). Frozen links
 * refuse. Used by jobs when they complete (commit, mirror, stream).
 */
export async function replaceNode(from: BlockNode, to: BlockNode): Promise<void> {
  const below = new Set(topologicalOrder([to]));
  const moving = from.parents.filter((l) => (l.parent.kind === 'root' ? !l.parent.stayAtNode : !below.has(l.parent as BlockNode)));
  for (const l of moving) l.assertNotFrozen('replace');
  for (const l of moving) {
    from.parents.splice(from.parents.indexOf(l), 1);
    l.node = to;
    to.parents.push(l);
  }
  try {
    refreshPerms([to, from]);
  } catch (e) {
    for (const l of moving) {
      to.parents.splice(to.parents.indexOf(l), 1);
      l.node = from;
      from.parents.push(l);
    }
    refreshPerms([from, to]);
    throw e;
  }
  to.refcnt += moving.length;
  for (let i = 0; i < moving.length; i++) await from.unref();
}

/**
 * Points one link at `to` instead of its node (QEMU's bdrv_replace_child):
 * the parent keeps its BdrvChild, which its driver may hold. Refused
 * (nothing changed) if frozen or if the permissions conflict.
 */
export async function replaceChildNode(link: BdrvChild, to: BlockNode): Promise<void> {
  link.assertNotFrozen('replace');
  const from = link.node;
  if (from === to) return;
  from.parents.splice(from.parents.indexOf(link), 1);
  link.node = to;
  to.parents.push(link);
  // From the parent: its driver says again what it needs of the new child.
  const parent = link.parent.kind === 'root' ? undefined : (link.parent as BlockNode);
  try {
    refreshPerms(parent ? [parent, from] : [to, from]);
  } catch (e) {
    to.parents.splice(to.parents.indexOf(link), 1);
    link.node = from;
    from.parents.push(link);
    refreshPerms(parent ? [parent, to] : [from, to]);
    throw e;
  }
  to.ref();
  await from.unref();
}

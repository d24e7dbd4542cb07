/**
 * The backing chain a job works on: checking that a base lies below the top,
 * and freezing the links between them so nothing replaces or detaches them
 * while the job runs (QEMU's bdrv_freeze_backing_chain).
 */
import type { BdrvChild } from '../core/child.js';
import type { BlockNode } from '../core/node.js';
import { cowChild } from '../core/block-status.js';
import { BlockError } from '../core/errors.js';

/** Throws EINVAL unless `base` is somewhere below `top` in its backing chain. */
export function checkInChain(top: BlockNode, base: BlockNode): void {
  for (let n = cowChild(top); n; n = cowChild(n)) if (n === base) return;
  throw new BlockError('EINVAL', `Node '${base.nodeName}' is not a backing image of '${top.nodeName}'`);
}

/**
 * Freezes the links from `top` down to `base` (to the bottom when undefined)
 * and returns them; EBUSY, freezing nothing, if another job holds one.
 */
export function freezeChain(top: BlockNode, base: BlockNode | undefined): BdrvChild[] {
  const links: BdrvChild[] = [];
  for (let n: BlockNode | undefined = top; n && n !== base; n = cowChild(n)) {
    const link = n.backing ?? n.filtered;
    if (!link) break;
    if (link.frozen) throw new BlockError('EBUSY', `Node '${link.node.nodeName}' is busy: its chain is in use by another job`);
    links.push(link);
  }
  for (const link of links) link.frozen = true;
  return links;
}

/** The nodes from `top` down to `base` (excluded; to the bottom when undefined), filters included. */
export function chainNodes(top: BlockNode, base: BlockNode | undefined): BlockNode[] {
  const out: BlockNode[] = [];
  for (let n: BlockNode | undefined = top; n && n !== base && out.length < 4096; ) {
    out.push(n);
    n = (n.backing ?? n.filtered)?.node;
  }
  return out;
}

/** Undoes {@link freezeChain}. */
export function unfreezeChain(links: readonly BdrvChild[]): void {
  for (const link of links) link.frozen = false;
}

/**
 * Operation blockers (QEMU's bdrv_op_block / bdrv_op_is_blocked): a block job
 * blocks every operation on the nodes it works on, so that a snapshot, a
 * resize or a second job is refused with "Node 'x' is busy: block device is
 * in use by block job: mirror" instead of running under the job. A backing
 * file is blocked the same way by its overlay ("node is used as backing hd
 * of 'x'"), except for the operations that work on chains (commit into it,
 * stream through it, back it up or into it).
 */
import { BlockError } from './errors.js';
import type { BlockNode } from './node.js';
import { ChildRole } from './permissions.js';

/** The operations a blocker can refuse, as QEMU's BlockOpType names them. */
export type BlockOp =
  | 'backup-source'
  | 'backup-target'
  | 'change'
  | 'commit-source'
  | 'commit-target'
  | 'drive-del'
  | 'eject'
  | 'external-snapshot'
  | 'internal-snapshot'
  | 'internal-snapshot-delete'
  | 'mirror-source'
  | 'mirror-target'
  | 'resize'
  | 'stream'
  | 'replace';

/** One reason to refuse operations on a node, with the operations it lets through. */
export interface OpBlocker {
  readonly reason: string;
  readonly except: ReadonlySet<BlockOp>;
}

/** What a backing link lets through on its backing file (QEMU's bdrv_backing_attach). */
const BACKING_EXCEPT: ReadonlySet<BlockOp> = new Set<BlockOp>(['commit-target', 'stream', 'backup-source', 'backup-target']);

/**
 * The blockers on `node`, the one QEMU meets first first: QEMU puts each new
 * blocker at the head of its list, so the latest job's comes before older
 * ones, and jobs (started on a built graph) before the overlays' backing
 * blockers, latest link first.
 */
export function blockersOf(node: BlockNode): OpBlocker[] {
  const out = [...node.opBlockers].reverse();
  for (let i = node.parents.length - 1; i >= 0; i--) {
    const link = node.parents[i]!;
    if (link.parent.kind === 'root' || !(link.role & ChildRole.COW)) continue;
    out.push({ reason: `node is used as backing hd of '${link.parent.nodeName}'`, except: BACKING_EXCEPT });
  }
  return out;
}

/** EBUSY naming the node and the reason, if a blocker on `node` refuses `op`. */
export function checkOp(node: BlockNode, op: BlockOp): void {
  for (const b of blockersOf(node)) {
    if (!b.except.has(op)) throw new BlockError('EBUSY', `Node '${node.nodeName}' is busy: ${b.reason}`, { node: node.nodeName });
  }
}

/** Is `op` refused on `node` (QEMU's bdrv_op_is_blocked without the message)? */
export function isOpBlocked(node: BlockNode, op: BlockOp): boolean {
  return blockersOf(node).some((b) => !b.except.has(op));
}

/**
 * Blocks every operation but `except` on each of `nodes` for `reason`;
 * returns the function that lifts the block again (once).
 */
export function blockOps(nodes: Iterable<BlockNode>, reason: string, except: BlockOp[] = []): () => void {
  const blocker: OpBlocker = { reason, except: new Set(except) };
  const held = [...new Set(nodes)];
  for (const n of held) n.opBlockers.add(blocker);
  return () => {
    for (const n of held) n.opBlockers.delete(blocker);
    held.length = 0;
  };
}

/** The reason a block job gives (QEMU: "block device is in use by block job: <type>"). */
export function jobBlockReason(type: string): string {
  return `block device is in use by block job: ${type}`;
}

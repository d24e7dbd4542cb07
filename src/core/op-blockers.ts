/**
 * Operation blockers (QEMU's bdrv_op_block / bdrv_op_is_blocked): a block job
 * blocks every operation on the nodes it works on, so that a snapshot, a
 * resize or a second job is refused with "Node 'x' is busy: block device is
 * in use by block job: mirror" instead of running under the job.
 */
import { BlockError } from './errors.js';
import type { BlockNode } from './node.js';

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

/** EBUSY naming the node and the reason, if a blocker on `node` refuses `op`. */
export function checkOp(node: BlockNode, op: BlockOp): void {
  for (const b of node.opBlockers) {
    if (!b.except.has(op)) throw new BlockError('EBUSY', `Node '${node.nodeName}' is busy: ${b.reason}`, { node: node.nodeName });
  }
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

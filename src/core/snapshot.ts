/**
 * Internal snapshots of a node (QEMU's block/snapshot.c): list, find by name,
 * create, goto and delete, each on the first node down the fallback chain
 * (see {@link snapshotFallback}) whose driver has snapshots, inside a drained section (no guest request sees the
 * tables change). The messages are QEMU's, so the tools print what qemu-img
 * prints.
 */
import type { SnapshotInfo } from './driver.js';
import { drained } from './drain.js';
import { BlockError, STRERROR, toBlockError } from './errors.js';
import type { BlockNode } from './node.js';
import { ChildRole } from './permissions.js';
import { type BlockOp, checkOp } from './op-blockers.js';

/**
 * QEMU's bdrv_snapshot_fallback_child: the primary child, when it is the only
 * child holding data or metadata (a raw format over its file, a filter); a
 * node with other such children (a data file) has no fallback.
 */
export function snapshotFallback(node: BlockNode): BlockNode | undefined {
  const primary = node.children.find((c) => c.role & ChildRole.PRIMARY);
  if (!primary) return undefined;
  const others = node.children.some((c) => c !== primary && c.role & (ChildRole.DATA | ChildRole.METADATA | ChildRole.FILTERED));
  return others ? undefined : primary.node;
}

/** The node whose driver does `op`: `node`, or the first one down its fallback children. */
function snapshotNode(node: BlockNode, has: (n: BlockNode) => boolean): BlockNode | undefined {
  for (let n: BlockNode | undefined = node; n; n = snapshotFallback(n)) {
    if (has(n)) return n;
  }
  return undefined;
}

/**
 * Refuses `op` when a block job holds `node` or a node down to `target`
 * (QEMU's bdrv_op_is_blocked on the device's node; a job's filter sits above
 * the nodes it blocks).
 */
function checkOpDown(node: BlockNode, target: BlockNode | undefined, op: BlockOp): void {
  for (let n: BlockNode | undefined = node; n; n = n === target ? undefined : snapshotFallback(n)) checkOp(n, op);
}

/** The snapshots of `node` (none when its driver has none). */
export function listSnapshots(node: BlockNode): SnapshotInfo[] {
  const n = snapshotNode(node, (x) => !!x.instance.snapshotList);
  return n?.instance.snapshotList?.() ?? [];
}

/** The snapshot named `name` (QEMU's bdrv_snapshot_find: by name only), or undefined. */
export function findSnapshotByName(node: BlockNode, name: string): SnapshotInfo | undefined {
  return listSnapshots(node).find((s) => s.name === name);
}

/**
 * Creates a snapshot of the node's current state; `info.id` is chosen by
 * the driver. ENOTSUP where no driver down the chain has snapshots.
 */
export async function createSnapshot(node: BlockNode, info: SnapshotInfo): Promise<void> {
  const n = snapshotNode(node, (x) => !!x.instance.snapshotCreate);
  checkOpDown(node, n, 'internal-snapshot');
  if (!n) throw new BlockError('ENOTSUP', STRERROR.ENOTSUP, { node: node.nodeName });
  await drained(n, () => n.instance.snapshotCreate!(info));
}

/**
 * Reverts the node to snapshot `idOrName` (by id first, then by name). Refused
 * while the node, or one down to the node that keeps the snapshots, has dirty
 * bitmaps, which would no longer describe the data (a job's among them).
 */
export async function gotoSnapshot(node: BlockNode, idOrName: string): Promise<void> {
  const n = snapshotNode(node, (x) => !!x.instance.snapshotGoto);
  // Every node on the way down counts, as in QEMU's recursion through fallback
  // children: a mirror's bitmap sits on the format node under its filter.
  for (let x: BlockNode | undefined = node; x; x = x === n ? undefined : snapshotFallback(x)) {
    if (x.dirtyBitmaps.length > 0) throw new BlockError('EBUSY', 'Device has active dirty bitmaps', { node: x.nodeName });
  }
  if (!n) throw new BlockError('ENOTSUP', 'Block driver does not support snapshots', { node: node.nodeName });
  try {
    await drained(n, () => n.instance.snapshotGoto!(idOrName));
  } catch (e) {
    const err = toBlockError(e);
    // The driver's own words (QEMU's qcow2 reports them itself) stay on the error as its cause.
    throw new BlockError(err.code, `Failed to load snapshot: ${STRERROR[err.code]}`, { node: n.nodeName }, { cause: err });
  } finally {
    // The snapshot may have another size.
    await n.refreshLength();
    if (n !== node) await node.refreshLength();
  }
}

/** Deletes the snapshot with this id and / or name (both must match when both are given). */
export async function deleteSnapshot(node: BlockNode, id: string | undefined, name: string | undefined): Promise<void> {
  if (id === undefined && name === undefined) throw new BlockError('EINVAL', 'snapshot_id and name are both NULL');
  const n = snapshotNode(node, (x) => !!x.instance.snapshotDelete);
  checkOpDown(node, n, 'internal-snapshot-delete');
  if (!n) {
    throw new BlockError('ENOTSUP', `Block format '${node.driver.name}' used by device '' does not support internal snapshot deletion`, { node: node.nodeName });
  }
  await drained(n, () => n.instance.snapshotDelete!(id, name));
}

/**
 * QEMU's bdrv_snapshot_load_tmp: the read-only node reads the snapshot with
 * this id and / or name from now on (no fallback child: only the format
 * itself can do this).
 */
export async function loadSnapshotTmp(node: BlockNode, id: string | undefined, name: string | undefined): Promise<void> {
  if (id === undefined && name === undefined) throw new BlockError('EINVAL', 'snapshot_id and name are both NULL');
  if (!node.readOnly) throw new BlockError('EINVAL', 'Device is not readonly');
  if (!node.instance.snapshotLoadTmp) {
    throw new BlockError('ENOTSUP', `Block format '${node.driver.name}' used by device '' does not support temporarily loading internal snapshots`, { node: node.nodeName });
  }
  await node.instance.snapshotLoadTmp(id, name);
}

/** By id, then (when no snapshot has that id) by name (QEMU's bdrv_snapshot_load_tmp_by_id_or_name). */
export async function loadSnapshotTmpByIdOrName(node: BlockNode, idOrName: string): Promise<void> {
  try {
    await loadSnapshotTmp(node, idOrName, undefined);
  } catch (e) {
    const err = toBlockError(e);
    if (err.code !== 'ENOENT' && err.code !== 'EINVAL') throw err;
    await loadSnapshotTmp(node, undefined, idOrName);
  }
}

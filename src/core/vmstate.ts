/**
 * VM state of a node (QEMU's bdrv_co_writev_vmstate / bdrv_co_readv_vmstate):
 * bytes an emulator saves alongside a snapshot, kept by the format (qcow2:
 * past the end of the disk, see src/formats/qcow2/vmstate.ts) and taken into
 * the next snapshot created with that VM state size. A node whose driver has
 * no VM state passes the request to its primary child (a filter, raw over
 * its file). {@link loadSnapshotVmState} reads a snapshot's VM state without
 * applying the snapshot.
 */
import { drained } from './drain.js';
import { BlockError } from './errors.js';
import type { BlockNode } from './node.js';
import { ChildRole } from './permissions.js';
import { beginInFlight, endInFlight } from './request-accounting.js';

function checkRequest(node: BlockNode, pos: number, buf: Uint8Array): void {
  if (!Number.isSafeInteger(pos) || pos < 0) {
    throw new BlockError('EINVAL', `VM state position must be a non-negative integer, got ${pos}`, { node: node.nodeName });
  }
  if (!(buf instanceof Uint8Array)) throw new BlockError('EINVAL', `VM state buffer must be a Uint8Array, got ${typeof buf}`, { node: node.nodeName });
}

/** The node whose driver has `op`: `node` or the first down its primary children (QEMU's bdrv_primary_bs). */
function vmStateNode(node: BlockNode, has: (n: BlockNode) => boolean): BlockNode {
  for (let n: BlockNode | undefined = node; n; n = n.children.find((c) => c.role & ChildRole.PRIMARY)?.node) {
    if (has(n)) return n;
  }
  throw new BlockError('ENOTSUP', `Block format '${node.driver.name}' does not support VM state`, { node: node.nodeName });
}

async function inFlight<T>(node: BlockNode, fn: () => Promise<T>): Promise<T> {
  beginInFlight(node);
  try {
    return await fn();
  } finally {
    endInFlight(node);
  }
}

/** Writes `buf` at position `pos` of the node's VM state (QEMU's bdrv_save_vmstate). */
export async function saveVmState(node: BlockNode, pos: number, buf: Uint8Array): Promise<void> {
  checkRequest(node, pos, buf);
  const n = vmStateNode(node, (x) => !!x.instance.saveVmState);
  if (n.readOnly) throw new BlockError('EACCES', 'Permission denied', { node: n.nodeName }, { detail: 'VM state of a read-only node' });
  try {
    await inFlight(n, () => n.instance.saveVmState!(pos, buf));
  } finally {
    // QEMU writes the VM state through the node's request path: a later flush has something to do.
    n.writeGeneration++;
  }
}

/** Reads position `pos` of the node's VM state into `buf` (QEMU's bdrv_load_vmstate). */
export async function loadVmState(node: BlockNode, pos: number, buf: Uint8Array): Promise<void> {
  checkRequest(node, pos, buf);
  const n = vmStateNode(node, (x) => !!x.instance.loadVmState);
  await inFlight(n, () => n.instance.loadVmState!(pos, buf));
}

/**
 * Reads position `pos` of the VM state of snapshot `id` into `buf`, leaving
 * the node's current disk as it is (the snapshot is not applied). The node is
 * drained meanwhile: the format reads through the snapshot's tables.
 */
export async function loadSnapshotVmState(node: BlockNode, id: string, pos: number, buf: Uint8Array): Promise<void> {
  checkRequest(node, pos, buf);
  const n = vmStateNode(node, (x) => !!x.instance.snapshotLoadVmState);
  await drained(n, () => n.instance.snapshotLoadVmState!(id, pos, buf));
}

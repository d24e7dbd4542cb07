/**
 * The internal snapshots of one open disk (the worker side of the page's
 * `disk.snapshots`): create with an optional VM state, apply, delete, list,
 * and the VM state of a snapshot, on the disk's top node (the block layer
 * finds the format that keeps them: src/core/snapshot.ts, src/core/vmstate.ts).
 */
import type { BlockBackend } from '../src/core/backend.js';
import type { SnapshotInfo } from '../src/core/driver.js';
import { BlockError } from '../src/core/errors.js';
import { createSnapshot, deleteSnapshot, gotoSnapshot, listSnapshots } from '../src/core/snapshot.js';
import { loadSnapshotVmState, saveVmState } from '../src/core/vmstate.js';
import type { SnapshotEntry } from '../src/client/protocol.js';

/** Largest VM state one message carries back to the page (one ArrayBuffer). */
export const MAX_VM_STATE_BYTES = 2 ** 31 - 1;

function checkName(name: unknown, what: string): string {
  if (typeof name !== 'string' || name === '') throw new BlockError('EINVAL', `${what} must be a non-empty string, got ${JSON.stringify(name) ?? typeof name}`);
  return name;
}

function writable(bb: BlockBackend, what: string): void {
  if (bb.readOnly) throw new BlockError('EROFS', `Cannot ${what}: the disk is read-only`);
}

/** The snapshot `idOrName` names: by id first, then by name (QEMU's order). */
function find(bb: BlockBackend, idOrName: string): SnapshotInfo {
  const list = listSnapshots(bb.node);
  const sn = list.find((s) => s.id === idOrName) ?? list.find((s) => s.name === idOrName);
  if (!sn) throw new BlockError('ENOENT', `No snapshot with id or name '${idOrName}'`);
  return sn;
}

/**
 * Creates snapshot `name` of the disk as it is now, with `vmState` (if any)
 * saved into the VM state area first so that the snapshot takes it. Names
 * are unique here (QEMU's savevm replaces a snapshot of the same name; the
 * page is told instead).
 */
export async function snapshotCreate(bb: BlockBackend, name: string, vmState?: Uint8Array): Promise<SnapshotEntry> {
  checkName(name, 'Snapshot name');
  if (vmState !== undefined && !(vmState instanceof Uint8Array)) {
    throw new BlockError('EINVAL', `Snapshot '${name}': VM state must be a Uint8Array, got ${typeof vmState}`);
  }
  writable(bb, `create snapshot '${name}'`);
  if (listSnapshots(bb.node).some((s) => s.name === name)) throw new BlockError('EEXIST', `A snapshot named '${name}' already exists`);
  if (vmState && vmState.length > 0) await saveVmState(bb.node, 0, vmState);
  const ms = Date.now();
  await createSnapshot(bb.node, {
    id: '',
    name,
    vmStateSize: vmState?.length ?? 0,
    dateSec: Math.floor(ms / 1000),
    dateNsec: (ms % 1000) * 1e6,
    vmClockNsec: 0,
    icount: 0,
  });
  const list = listSnapshots(bb.node);
  return toEntry(list[list.length - 1]!);
}

/** Makes the disk what snapshot `idOrName` holds; returns the disk's size after it. */
export async function snapshotApply(bb: BlockBackend, idOrName: string): Promise<number> {
  checkName(idOrName, 'Snapshot id or name');
  writable(bb, `apply snapshot '${idOrName}'`);
  const sn = find(bb, idOrName);
  await gotoSnapshot(bb.node, sn.id);
  return bb.length;
}

/** Deletes snapshot `idOrName` (by id first, then by name). */
export async function snapshotDelete(bb: BlockBackend, idOrName: string): Promise<void> {
  checkName(idOrName, 'Snapshot id or name');
  writable(bb, `delete snapshot '${idOrName}'`);
  const sn = find(bb, idOrName);
  await deleteSnapshot(bb.node, sn.id, sn.name);
}

/** The disk's snapshots, oldest first. */
export function snapshotList(bb: BlockBackend): SnapshotEntry[] {
  return listSnapshots(bb.node).map(toEntry);
}

/** The VM state of snapshot `idOrName` (empty when it has none); the disk stays as it is. */
export async function snapshotReadVmState(bb: BlockBackend, idOrName: string): Promise<Uint8Array> {
  checkName(idOrName, 'Snapshot id or name');
  const sn = find(bb, idOrName);
  if (sn.vmStateSize > MAX_VM_STATE_BYTES) {
    throw new BlockError('EFBIG', `Snapshot '${idOrName}': VM state of ${sn.vmStateSize} bytes exceeds ${MAX_VM_STATE_BYTES}`);
  }
  const vmState = new Uint8Array(sn.vmStateSize);
  if (vmState.length > 0) await loadSnapshotVmState(bb.node, sn.id, 0, vmState);
  return vmState;
}

function toEntry(s: SnapshotInfo): SnapshotEntry {
  return {
    id: s.id,
    name: s.name,
    vmStateSize: s.vmStateSize,
    date: s.dateSec * 1000 + Math.floor(s.dateNsec / 1e6),
    vmClockNsec: s.vmClockNsec,
    ...(s.diskSize !== undefined ? { diskSize: s.diskSize } : {}),
    ...(s.icount !== undefined ? { icount: s.icount } : {}),
  };
}

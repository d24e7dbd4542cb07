/**
 * `disk.snapshots`: internal snapshots of an open qcow2 disk, from the page,
 * each with an optional VM state (an emulator's saved machine) kept in the
 * same image, as QEMU's savevm keeps it: `qemu-img snapshot -l` lists the
 * VM size and QEMU can apply or delete them.
 *
 * ```ts
 * await disk.snapshots.create('before-update', { vmState: machineBytes });
 * // ... the guest writes ...
 * const vm = await disk.snapshots.readVmState('before-update');
 * await disk.snapshots.apply('before-update');   // the disk of that moment
 * ```
 *
 * {@link DiskSnapshots.readVmState} reads a snapshot's VM state without
 * applying it (the disk stays as it is; reads and writes wait meanwhile). To
 * resume a machine, read its state, then apply the snapshot (v86:
 * restoreMachine does both). Creating, applying and deleting need a writable
 * disk; applying refuses while the disk has dirty bitmaps.
 * Failures are BlockErrors with codes (ENOENT: no such snapshot, EEXIST: the
 * name is taken, EROFS: read-only disk, ENOTSUP: a format without snapshots).
 */
import { transfer, type Remote } from 'comlink';
import type { DiskApi } from './api.js';
import type { SnapshotEntry } from './protocol.js';

/** Options of {@link DiskSnapshots.create}. */
export interface CreateSnapshotOptions {
  /** Bytes stored as the snapshot's VM state (copied; the caller keeps its buffer). */
  vmState?: Uint8Array;
}

/** The internal snapshots of one open disk. */
export class DiskSnapshots {
  constructor(
    private readonly remote: Remote<DiskApi>,
    /** Tells the disk its size after an apply (a snapshot may hold another size). */
    private readonly setLength: (n: number) => void,
  ) {}

  /** Creates snapshot `name` of the disk as it is now (names are unique per disk). */
  create(name: string, opts: CreateSnapshotOptions = {}): Promise<SnapshotEntry> {
    const vm = opts.vmState?.slice();
    return this.remote.snapshotCreate(name, vm ? transfer(vm, [vm.buffer]) : undefined);
  }

  /** Makes the disk what snapshot `idOrName` holds (by id first, then by name); later writes change the disk, not the snapshot. */
  async apply(idOrName: string): Promise<void> {
    this.setLength(await this.remote.snapshotApply(idOrName));
  }

  /** Deletes snapshot `idOrName` (by id first, then by name), freeing what only it used. */
  delete(idOrName: string): Promise<void> {
    return this.remote.snapshotDelete(idOrName);
  }

  /** The disk's snapshots, oldest first. */
  list(): Promise<SnapshotEntry[]> {
    return this.remote.snapshotList();
  }

  /**
   * The VM state of snapshot `idOrName` (by id first, then by name), empty
   * when it was created without one. The snapshot is not applied.
   */
  readVmState(idOrName: string): Promise<Uint8Array> {
    return this.remote.snapshotReadVmState(idOrName);
  }
}

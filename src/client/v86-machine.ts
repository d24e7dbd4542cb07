/**
 * "Save machine" and "restore machine" for v86: the emulator's state
 * (`emulator.save_state()`) is stored as the VM state of an internal qcow2
 * snapshot of its disk, taken at the same moment, so one image holds disk
 * and machine (on OPFS or IndexedDB, across page reloads) and QEMU's tools
 * list the snapshot with its VM size.
 *
 * ```ts
 * const hda = toV86Buffer(disk);
 * const emulator = new V86({ hda, ... });
 * await saveMachine(emulator, disk, hda, 'before-install');
 * // ... later, even after a reload with a new emulator on the same disk ...
 * await restoreMachine(emulator, disk, hda, 'before-install');
 * ```
 *
 * Both stop the emulator while they work (and let it run again if it was
 * running) and wait for the guest writes v86 has sent, so the disk snapshot
 * and the machine state describe the same instant.
 */
import { BlockError } from '../core/errors.js';
import type { SnapshotEntry } from './protocol.js';
import type { V86DiskBuffer } from './v86.js';

/** What the helpers need from a v86 emulator (V86 of v86 0.5.x). */
export interface V86Machine {
  save_state(): Promise<ArrayBuffer>;
  restore_state(state: ArrayBuffer): Promise<void> | void;
  is_running(): boolean;
  stop(): Promise<void> | void;
  run(): Promise<void> | void;
}

/** What they need from the disk: the page's Disk (its `snapshots`). */
export interface MachineDisk {
  readonly length: number;
  readonly snapshots: {
    create(name: string, opts?: { vmState?: Uint8Array }): Promise<SnapshotEntry>;
    list(): Promise<SnapshotEntry[]>;
    apply(idOrName: string): Promise<void>;
    readVmState(idOrName: string): Promise<Uint8Array>;
  };
}

async function paused<T>(emulator: V86Machine, fn: () => Promise<T>): Promise<T> {
  const running = emulator.is_running();
  if (running) await emulator.stop();
  try {
    return await fn();
  } finally {
    if (running) await emulator.run();
  }
}

/**
 * Saves the machine as snapshot `name` of `disk`: the guest writes sent so
 * far reach the image, then the emulator's state is taken and stored as the
 * snapshot's VM state together with the disk. Fails (and creates nothing)
 * when a guest write was lost, as the disk would not match the machine.
 */
export function saveMachine(emulator: V86Machine, disk: MachineDisk, buffer: V86DiskBuffer, name: string): Promise<SnapshotEntry> {
  return paused(emulator, async () => {
    await buffer.flush();
    const state = new Uint8Array(await emulator.save_state());
    return disk.snapshots.create(name, { vmState: state });
  });
}

/**
 * Restores the machine saved as snapshot `idOrName`: the disk becomes the
 * snapshot's (after the guest writes already sent have landed, so none
 * arrives after it), then the emulator loads the saved state. Refused
 * before anything changes when the snapshot has no VM state or holds a disk
 * of another size than the one v86 was given.
 */
export function restoreMachine(emulator: V86Machine, disk: MachineDisk, buffer: V86DiskBuffer, idOrName: string): Promise<void> {
  return paused(emulator, async () => {
    const list = await disk.snapshots.list();
    const sn = list.find((s) => s.id === idOrName) ?? list.find((s) => s.name === idOrName);
    if (!sn) throw new BlockError('ENOENT', `No snapshot with id or name '${idOrName}'`);
    if (sn.vmStateSize === 0) throw new BlockError('EINVAL', `Snapshot '${idOrName}' holds no machine state`);
    if (sn.diskSize !== undefined && sn.diskSize !== buffer.byteLength) {
      throw new BlockError('EINVAL', `Snapshot '${idOrName}' holds a ${sn.diskSize}-byte disk; v86 has a ${buffer.byteLength}-byte one`);
    }
    // The writes sent before the restore must not land on the restored disk; one that
    // failed does not matter any more (the disk goes back to the snapshot).
    await buffer.flush().catch(() => undefined);
    // The state first: a failure to read it leaves the disk as it was.
    const state = await disk.snapshots.readVmState(sn.id);
    await disk.snapshots.apply(sn.id);
    const whole = state.byteOffset === 0 && state.byteLength === state.buffer.byteLength ? state : state.slice();
    await emulator.restore_state(whole.buffer as ArrayBuffer);
  });
}

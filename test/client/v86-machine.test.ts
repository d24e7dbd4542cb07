/**
 * "Save machine" / "restore machine" (src/client/v86-machine.ts) and the
 * page's `disk.snapshots` under them, over the worker's DiskService wired
 * directly (no postMessage) on a qcow2 file qemu-img created, with a stand-in
 * emulator that records what it was asked. The guest writes v86 sent before
 * a save are in the snapshot; those sent before a restore never land on the
 * restored disk; the emulator is stopped while the helpers work and runs
 * again afterwards; the state it gets back is the one it saved; qemu-img
 * lists the VM state size and finds the image clean.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { releaseProxy, type Remote } from 'comlink';
import { Disk, restoreMachine, saveMachine, toV86Buffer, type V86Machine } from '../../src/client/index.js';
import type { DiskApi } from '../../src/client/api.js';
import { DiskService } from '../../workers/disk-service.js';
import { BlockBackend } from '../../src/core/backend.js';
import { hasQemu } from '../cli/harness.js';
import { fileGraph, pattern, qemuCheck, qemuImg, tempDir } from '../formats/qcow2/helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());

async function pageDisk(file: string): Promise<Disk> {
  const bb = await BlockBackend.open(fileGraph(), { driver: 'qcow2', file: { filename: file } });
  const service = new DiskService(bb, file, () => undefined);
  Object.assign(service, { [releaseProxy]: () => undefined });
  return new Disk(service as unknown as Remote<DiskApi>, file, bb.length, bb.readOnly, 'qcow2');
}

/** A stand-in for V86: its "machine" is a byte array; it logs every call. */
class FakeEmulator implements V86Machine {
  running = true;
  log: string[] = [];
  restored: Uint8Array | null = null;
  constructor(public machine: Uint8Array) {}
  save_state(): Promise<ArrayBuffer> {
    this.log.push(`save running=${this.running}`);
    return Promise.resolve(this.machine.slice().buffer);
  }
  restore_state(state: ArrayBuffer): void {
    this.log.push(`restore running=${this.running}`);
    this.restored = new Uint8Array(state);
  }
  is_running(): boolean {
    return this.running;
  }
  stop(): void {
    this.log.push('stop');
    this.running = false;
  }
  run(): void {
    this.log.push('run');
    this.running = true;
  }
}

const set = (hda: ReturnType<typeof toV86Buffer>, off: number, data: Uint8Array) => hda.set(off, data);

describe.skipIf(!hasQemu())('saveMachine / restoreMachine over disk.snapshots', () => {
  it('keeps disk and machine together in one qcow2 and restores both', async () => {
    const file = t.path('vm.qcow2');
    const size = 8 << 20;
    qemuImg('create', '-q', '-f', 'qcow2', file, String(size));
    const disk = await pageDisk(file);
    const hda = toV86Buffer(disk);
    const emu = new FakeEmulator(pattern(200_003, 5));
    // Sent, not yet written, when the save starts: it must be in the snapshot.
    set(hda, 0, pattern(4096, 1));
    set(hda, 1 << 20, pattern(512, 2));
    const entry = await saveMachine(emu, disk, hda, 'm1');
    expect(entry).toMatchObject({ id: '1', name: 'm1', vmStateSize: 200_003, diskSize: size });
    expect(emu.log).toEqual(['stop', 'save running=false', 'run']);

    // The guest goes on: writes (some still queued when the restore starts), the machine changes.
    set(hda, 0, pattern(4096, 3));
    set(hda, 6 << 20, pattern(8192, 4));
    const saved = emu.machine;
    emu.machine = pattern(1000, 6);
    emu.log = [];
    await restoreMachine(emu, disk, hda, 'm1');
    expect(emu.log).toEqual(['stop', 'restore running=false', 'run']);
    expect(Buffer.from(emu.restored!).equals(Buffer.from(saved))).toBe(true);
    expect(hda.pendingWrites).toBe(0);
    expect(Buffer.from(await disk.read(0, 4096)).equals(Buffer.from(pattern(4096, 1)))).toBe(true);
    expect(Buffer.from(await disk.read(1 << 20, 512)).equals(Buffer.from(pattern(512, 2)))).toBe(true);
    expect((await disk.read(6 << 20, 8192)).every((b) => b === 0)).toBe(true);

    // A snapshot without machine state, or a missing one, is refused before the disk changes.
    await disk.write(0, new Uint8Array(512).fill(7), { copy: true });
    await disk.snapshots.create('disk-only');
    await expect(restoreMachine(emu, disk, hda, 'disk-only')).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(restoreMachine(emu, disk, hda, 'nope')).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await disk.read(0, 1))[0]).toBe(7);
    expect(emu.running).toBe(true);
    await disk.close();

    const info = JSON.parse(qemuImg('info', '--output=json', file)) as { snapshots: Array<{ name: string; 'vm-state-size': number }> };
    expect(info.snapshots.map((s) => [s.name, s['vm-state-size']])).toEqual([
      ['m1', 200_003],
      ['disk-only', 0],
    ]);
    const c = qemuCheck(file);
    expect({ corruptions: c.corruptions ?? 0, leaks: c.leaks ?? 0, errors: c['check-errors'] }).toEqual({ corruptions: 0, leaks: 0, errors: 0 });
  });

  it('disk.snapshots: codes for bad requests, a read-only disk refuses changes', async () => {
    const file = t.path('ro.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', file, '1M');
    const disk = await pageDisk(file);
    await disk.snapshots.create('a', { vmState: new Uint8Array(10).fill(1) });
    await expect(disk.snapshots.create('a')).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(disk.snapshots.create(42 as unknown as string)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(disk.snapshots.apply('zz')).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(disk.snapshots.readVmState('zz')).rejects.toMatchObject({ code: 'ENOENT' });
    await disk.write(0, new Uint8Array(512).fill(5), { copy: true });
    expect(Array.from(await disk.snapshots.readVmState('1'))).toEqual(new Array(10).fill(1));
    // Not applied: the disk still holds the write made after the snapshot.
    expect((await disk.read(0, 1))[0]).toBe(5);
    await disk.close();
    const bb = await BlockBackend.open(fileGraph(), { driver: 'qcow2', file: { filename: file } }, { readOnly: true });
    const service = new DiskService(bb, file, () => undefined);
    Object.assign(service, { [releaseProxy]: () => undefined });
    const ro = new Disk(service as unknown as Remote<DiskApi>, file, bb.length, true, 'qcow2');
    expect((await ro.snapshots.list()).map((s) => s.name)).toEqual(['a']);
    await expect(ro.snapshots.create('b')).rejects.toMatchObject({ code: 'EROFS' });
    await expect(ro.snapshots.apply('a')).rejects.toMatchObject({ code: 'EROFS' });
    await expect(ro.snapshots.delete('a')).rejects.toMatchObject({ code: 'EROFS' });
    // Reading a VM state does not apply the snapshot: a read-only disk can.
    expect(Array.from(await ro.snapshots.readVmState('a'))).toEqual(new Array(10).fill(1));
    await ro.close();
  });
});

/**
 * Removable media (src/core/removable-media.ts) as QEMU 7.2's tray and medium
 * verbs behave (block/qapi-sysemu.c): open / close the tray, a medium locked
 * by the guest (open asks, eject refused unless forced), remove and insert
 * only with the tray open, change-medium opening the new image first, and a
 * drive without a tray; media are BlockBackends of a memory graph, closed as
 * they leave.
 */
import { describe, it, expect } from 'vitest';
import { RemovableBackend, RemovableMedia } from '../../src/core/removable-media.js';
import { expectBlockError, memoryGraph } from './helpers.js';

function setup(hasTray = true) {
  const { graph, storage } = memoryGraph();
  storage.create('a', 64 << 10);
  storage.create('b', 128 << 10);
  const events: string[] = [];
  const drive = new RemovableBackend('cd0', graph, {
    hasTray,
    events: {
      trayMoved: (open) => events.push(open ? 'tray-open' : 'tray-closed'),
      ejectRequest: (force) => events.push(`eject-request${force ? ' (force)' : ''}`),
      mediumChanged: (inserted) => events.push(inserted ? 'medium-in' : 'medium-out'),
    },
  });
  return { graph, storage, drive, events };
}

describe('removable media', () => {
  it('starts empty with the tray closed; change-medium inserts and closes the tray', async () => {
    const { graph, storage, drive, events } = setup();
    expect([drive.isInserted, drive.isTrayOpen, drive.isLocked]).toEqual([false, false, false]);
    const a = storage.get('a')!;
    a.write(0, new Uint8Array([7, 7, 7]));
    await drive.changeTo('memory:a', { format: 'raw' });
    expect([drive.isInserted, drive.isTrayOpen, drive.isReadable]).toEqual([true, false, true]);
    expect(Array.from(await drive.medium!.read(0, 4))).toEqual([7, 7, 7, 0]);
    expect(drive.medium!.readOnly).toBe(true);
    expect(events).toEqual(['tray-open', 'tray-closed', 'medium-in']);
    await drive.eject();
    expect(graph.listNodes()).toEqual([]);
  });

  it('a locked medium: open-tray only asks the guest, eject is refused, force breaks the lock', async () => {
    const { graph, drive, events } = setup();
    await drive.changeTo('memory:a', { format: 'raw' });
    drive.lockMedium(true);
    events.length = 0;
    expect(drive.openTray()).toBe('requested');
    expect(drive.isTrayOpen).toBe(false);
    await expectBlockError(drive.eject(), 'EBUSY', /^Device 'cd0' is locked and force was not specified, wait for tray to open and try again$/);
    await expectBlockError(drive.changeTo('memory:b', { format: 'raw' }), 'EBUSY', /is locked and force was not specified/);
    // The refused change released the medium it had opened; the old one is still in.
    expect(drive.node!.filename).toBe('memory:a');
    expect(graph.listNodes().length).toBe(2);
    expect(events).toEqual(['eject-request', 'eject-request', 'eject-request']);
    events.length = 0;
    // The guest unlocks: the tray opens.
    drive.lockMedium(false);
    expect(drive.openTray()).toBe('open');
    expect(drive.isReadable).toBe(false);
    drive.closeTray();
    drive.lockMedium(true);
    await drive.eject(true);
    expect([drive.isInserted, drive.isTrayOpen, drive.isLocked]).toEqual([false, true, false]);
    expect(events).toEqual(['tray-open', 'medium-out', 'tray-closed', 'medium-in', 'eject-request (force)', 'tray-open', 'medium-out']);
    expect(graph.listNodes()).toEqual([]);
  });

  it('remove and insert need the open tray; one medium at a time; a node a backend uses is refused', async () => {
    const { graph, drive } = setup();
    await expectBlockError(drive.removeMedium(), 'EINVAL', /^Tray of device 'cd0' is not open$/);
    const node = await graph.open('memory:b', { format: 'raw', readOnly: true });
    await expectBlockError(drive.insertNode(node), 'EINVAL', /^Tray of the device is not open$/);
    drive.openTray();
    // Removing from an empty drive does nothing.
    await drive.removeMedium();
    await drive.insertNode(node);
    expect(drive.node).toBe(node);
    const other = await graph.open('memory:a', { format: 'raw', readOnly: true });
    await expectBlockError(drive.insertNode(other), 'EBUSY', /^There already is a medium in the device$/);
    await expectBlockError(setup().drive.insertNode(node), 'EBUSY', /^Node '.*' is already in use$/);
    drive.closeTray();
    expect(drive.isReadable).toBe(true);
    await drive.eject();
    await node.unref();
    await other.unref();
    expect(graph.listNodes()).toEqual([]);
  });

  it('a failed open leaves the medium in place; a changed medium reads the new image', async () => {
    const { storage, drive } = setup();
    await drive.changeTo('memory:a', { format: 'raw' });
    await expectBlockError(drive.changeTo('memory:nosuch', { format: 'raw' }), 'ENOENT');
    expect([drive.isInserted, drive.isTrayOpen]).toEqual([true, false]);
    storage.get('b')!.write(100, new Uint8Array([9]));
    await drive.changeTo('memory:b', { format: 'raw' });
    expect(drive.medium!.length).toBe(128 << 10);
    expect(Array.from(await drive.medium!.read(100, 1))).toEqual([9]);
    await drive.eject();
  });

  it('a drive without a tray: no tray verbs, media swap at once', async () => {
    const { drive, events } = setup(false);
    expect(() => drive.openTray()).toThrow(/^Device 'cd0' does not have a tray$/);
    drive.closeTray();
    await drive.changeTo('memory:a', { format: 'raw' });
    expect(drive.isReadable).toBe(true);
    drive.lockMedium(true);
    // Nothing to open: the lock does not hold the medium in (QEMU ignores ENOSYS here).
    await drive.eject();
    expect(drive.isInserted).toBe(false);
    expect(events).toEqual(['medium-in', 'medium-out']);
  });

  it('the generic drive releases each medium once, and a rejected new one', async () => {
    const released: string[] = [];
    const drive = new RemovableMedia<string>('fd0', { release: async (m) => void released.push(m) });
    await drive.change(async () => 'one');
    await drive.change(async () => 'two');
    drive.lockMedium(true);
    await expect(drive.change(async () => 'three')).rejects.toThrow(/locked/);
    await drive.eject(true);
    expect(released).toEqual(['one', 'three', 'two']);
  });
});

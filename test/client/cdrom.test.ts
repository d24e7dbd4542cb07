/**
 * V86Cdrom's link to its emulator (without v86): medium changes reach the
 * ATAPI device while the machine runs; while it is stopped (or destroyed:
 * v86 has no timers left to raise the interrupt) they wait for the next
 * start; a detached drive leaves the emulator alone.
 */
import { describe, it, expect } from 'vitest';
import { V86Cdrom, type V86CdromEmulator } from '../../src/client/cdrom.js';
import type { OpenOptions } from '../../src/client/protocol.js';

/** Media the drive opens: `length` bytes, reads of zeros. */
function opener() {
  const opened: string[] = [];
  return {
    opened,
    open: async (o: OpenOptions) => {
      opened.push(o.path);
      return { length: 2048 * 16, read: async (_off: number, n: number) => new Uint8Array(n), write: async () => undefined, close: async () => undefined };
    },
  };
}

/** A stand-in for v86: what the ATAPI device was told, whether it runs, its listeners. */
function fakeEmulator() {
  const calls: string[] = [];
  const listeners = new Map<string, Set<() => void>>();
  let running = true;
  const emulator: V86CdromEmulator & { calls: string[]; setRunning(r: boolean): void } = {
    calls,
    setRunning(r: boolean) {
      running = r;
      if (r) for (const l of listeners.get('emulator-started') ?? []) l();
    },
    v86: { cpu: { devices: { cdrom: { set_cdrom: () => void calls.push('set'), eject: () => void calls.push('eject') } } } },
    is_running: () => running,
    add_listener: (e, l) => void (listeners.get(e) ?? listeners.set(e, new Set()).get(e)!).add(l),
    remove_listener: (e, l) => void listeners.get(e)?.delete(l),
  };
  return emulator;
}

describe('V86Cdrom and its emulator', () => {
  it('tells a running machine at once, a stopped one when it starts again, a detached one nothing', async () => {
    const dw = opener();
    const cd = new V86Cdrom(dw);
    await cd.insert({ path: 'opfs:/a.iso', format: 'raw' });
    const emu = fakeEmulator();
    cd.attach(emu);
    expect(emu.calls).toEqual(['set']);
    await cd.eject();
    expect(emu.calls).toEqual(['set', 'eject']);
    emu.setRunning(false);
    await cd.insert({ path: 'opfs:/b.iso', format: 'raw' });
    // Stopped: nothing reaches the device until the machine starts.
    expect(emu.calls).toEqual(['set', 'eject']);
    emu.setRunning(true);
    expect(emu.calls).toEqual(['set', 'eject', 'set']);
    cd.detach();
    await cd.close();
    emu.setRunning(true);
    expect(emu.calls).toEqual(['set', 'eject', 'set']);
    expect(dw.opened).toEqual(['opfs:/a.iso', 'opfs:/b.iso']);
  });

  it('closing after the machine was stopped and destroyed does not touch it', async () => {
    const cd = new V86Cdrom(opener());
    await cd.insert({ path: 'opfs:/a.iso', format: 'raw' });
    const emu = fakeEmulator();
    cd.attach(emu);
    emu.setRunning(false);
    // v86's destroy leaves the device's interrupt path broken: any call would throw.
    emu.v86!.cpu!.devices!.cdrom = { set_cdrom: () => { throw new Error('destroyed'); }, eject: () => { throw new Error('destroyed'); } };
    await cd.close();
    expect(cd.isInserted).toBe(false);
  });
});

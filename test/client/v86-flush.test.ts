/**
 * connectV86Flush on a real v86 (libv86 in Node, not started): the IDE
 * drive reports a write cache, and its FLUSH CACHE / FLUSH CACHE EXT wait
 * for the disk buffer's flush()
 * (BSY until then, DRDY|DSC and an interrupt after, ERR / ABRT when it
 * fails); other commands are v86's own.
 */
import { describe, it, expect, afterEach } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { toV86Buffer, type V86Disk } from '../../src/client/v86.js';
import { connectV86Flush, type V86WithIde } from '../../src/client/v86-flush.js';

const require = createRequire(import.meta.url);

/** A disk whose flushes wait until the test settles them. */
function gatedDisk(size: number) {
  const flushes: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  const written: number[] = [];
  const disk: V86Disk = {
    length: size,
    read: async (_o, n) => new Uint8Array(n),
    write: async (o) => void written.push(o),
    flush: () => new Promise<void>((resolve, reject) => flushes.push({ resolve, reject })),
  };
  return { disk, flushes, written };
}

interface Drive {
  status_reg: number;
  error_reg: number;
  data: Uint8Array;
  ata_command(cmd: number): void;
  channel: { dma_status: number; device_control_reg: number };
}

type Emulator = V86WithIde & { destroy(): Promise<void> };

let emulator: Emulator | null = null;
afterEach(async () => {
  await emulator?.destroy();
  emulator = null;
});

/** A v86 on `hda`, loaded and not started; `early` runs right after new V86 (before it has loaded). */
async function loaded(hda: unknown, early?: (e: Emulator) => void): Promise<Emulator> {
  const { V86 } = await import('v86');
  const v86Dir = path.dirname(require.resolve('v86/build/libv86.mjs'));
  const toAb = (p: string) => {
    const b = fs.readFileSync(p);
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
  };
  const e = new V86({
    wasm_path: path.join(v86Dir, 'v86.wasm'),
    bios: { buffer: toAb('/usr/share/seabios/bios-256k.bin') },
    vga_bios: { buffer: toAb('/usr/share/seabios/vgabios-stdvga.bin') },
    hda: hda as never,
    memory_size: 16 << 20,
    autostart: false,
    disable_keyboard: true,
    disable_mouse: true,
    disable_speaker: true,
  } as never) as unknown as Emulator;
  emulator = e;
  early?.(e);
  await new Promise<void>((resolve) => e.add_listener('emulator-loaded', () => resolve()));
  return e;
}

const drive = (e: Emulator) => (e.v86 as unknown as { cpu: { devices: { ide: { primary: { master: Drive } } } } }).cpu.devices.ide.primary.master;
const tick = () => new Promise((r) => setTimeout(r, 0));

describe('connectV86Flush', () => {
  it('FLUSH CACHE and FLUSH CACHE EXT complete when the buffer has flushed the guest writes and the disk', async () => {
    const { disk, flushes, written } = gatedDisk(8 << 20);
    const hda = toV86Buffer(disk);
    // Connected before the emulator has devices: the drive is hooked when it loads.
    const e = await loaded(hda, (em) => connectV86Flush(em, hda));
    const d = drive(e);
    // IDENTIFY DEVICE (0xEC) reports a volatile write cache, supported (word 82) and enabled (word 85).
    d.ata_command(0xec);
    expect([d.data[164]! & 0x20, d.data[170]! & 0x20]).toEqual([0x20, 0x20]);
    // Interrupts on (nIEN clear), as the guest's driver sets them: push_irq marks the channel's DMA status.
    d.channel.device_control_reg = 0;
    for (const cmd of [0xe7, 0xea]) {
      hda.set(4096, new Uint8Array(512));
      d.channel.dma_status &= ~4;
      d.ata_command(cmd);
      // Busy, no interrupt: the guest waits.
      expect(d.status_reg).toBe(0x80);
      await tick();
      // The guest's writes went first, then the disk's flush was asked for.
      expect(written.at(-1)).toBe(4096);
      expect(flushes).toHaveLength(1);
      expect(d.status_reg).toBe(0x80);
      expect(d.channel.dma_status & 4).toBe(0);
      flushes.shift()!.resolve();
      await tick();
      expect(d.status_reg).toBe(0x50);
      expect(d.error_reg).toBe(0);
      expect(d.channel.dma_status & 4).toBe(4);
    }
  });

  it('a failed flush ends the command with ERR and ABRT; other commands are v86\'s', async () => {
    const { disk, flushes } = gatedDisk(8 << 20);
    const hda = toV86Buffer(disk);
    const e = await loaded(hda);
    connectV86Flush(e, hda);
    const d = drive(e);
    d.ata_command(0xe7);
    await tick();
    flushes.shift()!.reject(new Error('storage gone'));
    await tick();
    expect(d.status_reg).toBe(0x41);
    expect(d.error_reg).toBe(4);
    // IDLE IMMEDIATE (0xE1): v86 completes it at once and asks nothing of the disk.
    d.ata_command(0xe1);
    expect(d.status_reg).toBe(0x50);
    await tick();
    expect(flushes).toHaveLength(0);
  });

  it('a buffer no drive uses is EINVAL, and that drive keeps v86\'s own flush', async () => {
    const { disk, flushes } = gatedDisk(8 << 20);
    const hda = toV86Buffer(disk);
    const e = await loaded(hda);
    const other = toV86Buffer(gatedDisk(1 << 20).disk);
    expect(() => connectV86Flush(e, other)).toThrow(expect.objectContaining({ code: 'EINVAL', message: expect.stringContaining('no IDE drive') }));
    // Not connected: v86's own IDENTIFY (no write cache) and FLUSH CACHE (completes at once, no disk flush).
    drive(e).ata_command(0xec);
    expect([drive(e).data[164]! & 0x20, drive(e).data[170]! & 0x20]).toEqual([0, 0]);
    drive(e).ata_command(0xe7);
    expect(drive(e).status_reg).toBe(0x50);
    await tick();
    expect(flushes).toHaveLength(0);
  });
});

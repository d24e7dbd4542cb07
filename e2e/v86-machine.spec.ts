/**
 * "Save machine" / "restore machine" with a real v86 guest on an OPFS qcow2
 * image, across a page reload: the guest (e2e/fixtures/boot.asm) boots,
 * writes sector 2 and halts; the machine is saved as snapshot 'booted' (v86's
 * state as the VM state, with the disk). Then the disk sector and the guest
 * memory are overwritten, the page reloads, a new emulator starts on the same
 * image and restoreMachine brings back both: the guest's buffer in memory and
 * its sector on the disk.
 */
import { test, expect } from '@playwright/test';
import { openHarness } from './helpers.js';

const P = 'opfs:/snapvm/v86.qcow2';
/** Where the boot program builds sector 2 in guest memory. */
const BUF = 0x8200;

test('saveMachine then a reload then restoreMachine brings back the guest memory and its disk', async ({ page }) => {
  test.setTimeout(120_000);
  await openHarness(page);
  const first = await page.evaluate(
    async ({ p, buf }) => {
      const h = window.harness;
      const dw = await h.start();
      await dw.remove(p).catch(() => undefined);
      await dw.create({ path: p, format: 'qcow2', size: 8 << 20 });
      const disk = await dw.open({ path: p });
      await disk.write(0, new Uint8Array(await (await fetch('/fixtures/boot.bin')).arrayBuffer()));
      const sector1 = h.pattern(77, 512);
      sector1.set(new TextEncoder().encode('SECTOR ONE DATA!'), 0);
      await disk.write(512, sector1);
      const hda = h.toV86Buffer(disk);
      let serial = '';
      const emulator = new h.V86({
        wasm_path: h.v86WasmUrl,
        bios: { url: '/seabios/bios-256k.bin' },
        vga_bios: { url: '/seabios/vgabios-stdvga.bin' },
        hda: hda as never,
        memory_size: 32 << 20,
        vga_memory_size: 2 << 20,
        autostart: true,
        disable_keyboard: true,
        disable_mouse: true,
        disable_speaker: true,
      } as never);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`guest did not finish; serial: ${JSON.stringify(serial)}`)), 60_000);
        emulator.add_listener('serial0-output-byte', (byte: number) => {
          serial += String.fromCharCode(byte);
          if (serial.includes('DONE\n') || /FAIL[^\n]*\n/.test(serial)) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      const entry = await h.saveMachine(emulator, disk, hda, 'booted');
      const running = emulator.is_running();
      // The guest goes on (as if): its buffer and its sector change.
      emulator.write_memory(new Uint8Array(512).fill(0xee), buf);
      hda.set(1024, new Uint8Array(512).fill(0xdd));
      await emulator.stop();
      await hda.flush();
      const overwritten = (await disk.read(1024, 1))[0];
      await emulator.destroy();
      await disk.close();
      return { serial, entry, running, overwritten };
    },
    { p: P, buf: BUF },
  );
  expect(first.serial).toContain('DONE');
  expect(first.entry.name).toBe('booted');
  expect(first.entry.vmStateSize).toBeGreaterThan(0);
  expect(first.running).toBe(true);
  expect(first.overwritten).toBe(0xdd);

  await page.reload();
  await openHarness(page);
  const second = await page.evaluate(
    async ({ p, buf }) => {
      const h = window.harness;
      const dw = await h.start();
      const disk = await dw.open({ path: p });
      const hda = h.toV86Buffer(disk);
      const emulator = new h.V86({
        wasm_path: h.v86WasmUrl,
        bios: { url: '/seabios/bios-256k.bin' },
        vga_bios: { url: '/seabios/vgabios-stdvga.bin' },
        hda: hda as never,
        memory_size: 32 << 20,
        vga_memory_size: 2 << 20,
        autostart: false,
        disable_keyboard: true,
        disable_mouse: true,
        disable_speaker: true,
      } as never);
      await new Promise<void>((resolve) => emulator.add_listener('emulator-loaded', () => resolve()));
      const memBefore = Array.from(emulator.read_memory(buf, 16));
      await h.restoreMachine(emulator, disk, hda, 'booted');
      const text = new TextDecoder().decode(emulator.read_memory(buf, 16));
      const sector = new TextDecoder().decode(await disk.read(1024, 16));
      const list = await disk.snapshots.list();
      await emulator.destroy();
      await disk.close();
      return { memBefore, text, sector, list };
    },
    { p: P, buf: BUF },
  );
  // A fresh machine: nothing of the guest's yet.
  expect(second.memBefore).not.toEqual(Array.from(new TextEncoder().encode('GUEST WROTE THIS')));
  expect(second.text).toBe('GUEST WROTE THIS');
  expect(second.sector).toBe('GUEST WROTE THIS');
  expect(second.list.map((s) => [s.name, s.vmStateSize])).toEqual([['booted', first.entry.vmStateSize]]);
});

/**
 * V86Cdrom: ISO images (made here by e2e/iso9660.ts) in OPFS and over HTTP
 * go in and out of v86's CD-ROM drive while the emulator runs. The spec
 * reads a file of each ISO through the buffer v86's ATAPI device holds,
 * ejects (refused while locked, forced then), and inserts another.
 */
import { test, expect } from '@playwright/test';
import fs from 'node:fs';
import path from 'node:path';
import { openHarness, fixturesDir } from './helpers.js';
import { makeIso } from './iso9660.js';

test('v86 CD-ROM: insert an OPFS ISO at boot, swap in an HTTP one, eject, insert another', async ({ page }) => {
  test.setTimeout(120_000);
  const enc = (s: string) => new TextEncoder().encode(s);
  const isoA = makeIso('DISC_A', { 'HELLO.TXT': enc('hello from disc A\n') });
  const isoB = makeIso('DISC_B', { 'README.TXT': enc('disc B over http\n'.repeat(300)) });
  const isoC = makeIso('DISC_C', { 'C.TXT': enc('third disc\n') });
  fs.mkdirSync(fixturesDir, { recursive: true });
  fs.writeFileSync(path.join(fixturesDir, 'cdrom-b.iso'), isoB);
  await openHarness(page);
  const r = await page.evaluate(
    async ({ a, c }) => {
      const h = window.harness;
      const dw = await h.start();
      for (const [name, bytes] of [['a', a], ['c', c]] as const) {
        const p = `opfs:/cdrom/${name}.iso`;
        await dw.create({ path: p, format: 'raw', size: bytes.length });
        const d = await dw.open({ path: p, format: 'raw' });
        await d.write(0, new Uint8Array(bytes));
        await d.close();
      }
      type Buf = { get(start: number, len: number, fn: (d: Uint8Array) => void): void };
      // Copied in the callback, as v86 does: the adapter reads into the buffer again afterwards.
      const get = (b: Buf, off: number, len: number) => new Promise<Uint8Array>((res) => b.get(off, len, (d) => res(d.slice())));
      /** The volume name and one file of the ISO `b` holds, read through `b` as the guest's drive would. */
      async function readIso(b: Buf, file: string): Promise<{ magic: string; volume: string; text: string | null }> {
        const pvd = await get(b, 16 * 2048, 2048);
        const str = (u: Uint8Array) => String.fromCharCode(...u);
        const dv = (u: Uint8Array) => new DataView(u.buffer, u.byteOffset, u.byteLength);
        const root = dv(pvd).getUint32(158, true);
        const dir = await get(b, root * 2048, 2048);
        let text: string | null = null;
        for (let at = 0; at < 2048 && dir[at]! > 0; at += dir[at]!) {
          if (str(dir.subarray(at + 33, at + 33 + dir[at + 32]!)) !== `${file};1`) continue;
          const size = dv(dir).getUint32(at + 10, true);
          const data = await get(b, dv(dir).getUint32(at + 2, true) * 2048, Math.ceil(size / 256) * 256);
          text = new TextDecoder().decode(data.subarray(0, size));
        }
        return { magic: str(pvd.subarray(1, 6)), volume: str(pvd.subarray(40, 72)).trim(), text };
      }

      const events: string[] = [];
      const cd = new h.V86Cdrom(dw, {
        events: {
          trayMoved: (open) => events.push(open ? 'tray-open' : 'tray-closed'),
          mediumChanged: (inserted) => events.push(inserted ? 'in' : 'out'),
        },
      });
      await cd.insert({ path: 'opfs:/cdrom/a.iso', format: 'raw' });
      const emulator = new h.V86({
        wasm_path: h.v86WasmUrl,
        bios: { url: '/seabios/bios-256k.bin' },
        vga_bios: { url: '/seabios/vgabios-stdvga.bin' },
        cdrom: cd.buffer as never,
        memory_size: 32 << 20,
        vga_memory_size: 2 << 20,
        autostart: true,
        disable_keyboard: true,
        disable_mouse: true,
        disable_speaker: true,
      } as never);
      await new Promise<void>((res) => emulator.add_listener('emulator-started', () => res()));
      const dev = (emulator as unknown as { v86: { cpu: { devices: { cdrom: { buffer: Buf | null; has_disk(): boolean } } } } }).v86.cpu.devices.cdrom;
      cd.attach(emulator as never);
      const out: Record<string, unknown> = {};
      out.bootMedium = dev.buffer === cd.buffer;
      out.a = await readIso(dev.buffer!, 'HELLO.TXT');

      // Swap in the HTTP image while the emulator runs.
      await cd.insert({ path: `${location.origin}/fixtures/cdrom-b.iso`, format: 'raw' });
      out.bMedium = dev.buffer === cd.buffer;
      out.b = await readIso(dev.buffer!, 'README.TXT');

      // Locked: eject refused, the guest keeps its medium; forced: out.
      cd.lock(true);
      try {
        await cd.eject();
        out.lockedEject = 'ejected';
      } catch (e) {
        out.lockedEject = `${(e as { code?: string }).code}: ${(e as Error).message}`;
      }
      out.stillIn = dev.has_disk();
      await cd.eject({ force: true });
      out.afterEject = { hasDisk: dev.has_disk(), inserted: cd.isInserted, tray: cd.isTrayOpen };

      // Another disc into the open tray.
      await cd.insert({ path: 'opfs:/cdrom/c.iso', format: 'raw' });
      out.c = await readIso(dev.buffer!, 'C.TXT');
      out.afterInsert = { hasDisk: dev.has_disk(), inserted: cd.isInserted, tray: cd.isTrayOpen };
      out.events = [...events];
      emulator.stop();
      await emulator.destroy?.();
      await cd.close();
      out.closed = !cd.isInserted;
      return out;
    },
    { a: Array.from(isoA), c: Array.from(isoC) },
  );
  expect(r.bootMedium).toBe(true);
  expect(r.a).toEqual({ magic: 'CD001', volume: 'DISC_A', text: 'hello from disc A\n' });
  expect(r.bMedium).toBe(true);
  expect(r.b).toEqual({ magic: 'CD001', volume: 'DISC_B', text: 'disc B over http\n'.repeat(300) });
  expect(r.lockedEject).toBe("EBUSY: Device 'cdrom' is locked and force was not specified, wait for tray to open and try again");
  expect(r.stillIn).toBe(true);
  expect(r.afterEject).toEqual({ hasDisk: false, inserted: false, tray: true });
  expect(r.c).toEqual({ magic: 'CD001', volume: 'DISC_C', text: 'third disc\n' });
  expect(r.afterInsert).toEqual({ hasDisk: true, inserted: true, tray: false });
  expect(r.closed).toBe(true);
  expect(r.events).toEqual(['tray-open', 'tray-closed', 'in', 'tray-open', 'out', 'tray-closed', 'in', 'tray-open', 'out', 'tray-closed', 'in']);
});

/**
 * V86Cdrom under a running Linux guest (the guest of
 * scripts/build-linux-guest.mjs, with sr_mod and isofs): the guest mounts
 * /dev/sr0 and reads a file of the ISO inserted from OPFS at boot; the page
 * swaps in an ISO served over HTTP while the guest runs, and the guest's
 * next mount reads the new disc; after an eject the guest finds no medium;
 * a third disc (OPFS again) goes into the open tray and reads. The medium
 * changes reach the guest through v86's ATAPI drive only (no guest command
 * tells it), as a real drive's would.
 */
import { test, expect } from '@playwright/test';
import fs from 'node:fs';
import path from 'node:path';
import { openHarness, fixturesDir, repoRoot } from './helpers.js';
import { makeIso } from './iso9660.js';

const OVERLAY = 'opfs:/cdrom-linux/overlay.qcow2';

test('Linux reads CD-ROM discs that the page inserts, swaps and ejects while it runs', async ({ page }) => {
  test.setTimeout(900_000);
  const root = path.join(repoRoot, 'build/linux-guest/root.raw');
  expect(fs.existsSync(root), 'build/linux-guest/root.raw (built by the e2e server)').toBe(true);
  const enc = (s: string) => new TextEncoder().encode(s);
  const isoA = makeIso('DISC_A', { 'HELLO.TXT': enc('hello from disc A\n') });
  const isoB = makeIso('DISC_B', { 'README.TXT': enc('disc B over http\n'.repeat(300)) });
  const isoC = makeIso('DISC_C', { 'C.TXT': enc('third disc\n') });
  fs.mkdirSync(fixturesDir, { recursive: true });
  fs.writeFileSync(path.join(fixturesDir, 'cdrom-linux-b.iso'), isoB);
  await openHarness(page);
  const r = await page.evaluate(
    async ({ a, c, size, overlay }) => {
      const h = window.harness;
      const dw = await h.start();
      for (const [name, bytes] of [['a', a], ['c', c]] as const) {
        const p = `opfs:/cdrom-linux/${name}.iso`;
        await dw.remove(p).catch(() => undefined);
        await dw.create({ path: p, format: 'raw', size: bytes.length });
        const d = await dw.open({ path: p, format: 'raw' });
        await d.write(0, new Uint8Array(bytes));
        await d.close();
      }
      await dw.remove(overlay).catch(() => undefined);
      await dw.create({ path: overlay, format: 'qcow2', size, backingFile: `${location.origin}/linux/root.qcow2`, backingFormat: 'qcow2' });
      const disk = await dw.open({ path: overlay, allowBackingProtocols: ['http'] });
      const hda = h.toV86Buffer(disk);

      const events: string[] = [];
      const cd = new h.V86Cdrom(dw, { events: { mediumChanged: (inserted) => events.push(inserted ? 'in' : 'out') } });
      await cd.insert({ path: 'opfs:/cdrom-linux/a.iso', format: 'raw' });
      const guest = await h.bootLinux({ hda, cdrom: cd.buffer, bootTimeoutMs: 600_000 });
      cd.attach(guest.emulator as never);
      const out: Record<string, { status: number; out: string }> = {};
      /** Mounts the disc, prints `file`, unmounts (a failed mount prints the error). */
      const read = (file: string) => guest.run(`mkdir -p /cd && mount -t iso9660 -o ro /dev/sr0 /cd && { cat /cd/${file}; umount /cd; }`, 180_000);

      out.a = await read('hello.txt');
      // Swapped while the guest runs: the next mount sees disc B.
      await cd.insert({ path: `${location.origin}/fixtures/cdrom-linux-b.iso`, format: 'raw' });
      out.b = await read('readme.txt');
      out.bLines = await guest.run('mount -t iso9660 -o ro /dev/sr0 /cd && wc -l < /cd/readme.txt; umount /cd', 180_000);
      await cd.eject();
      out.empty = await read('readme.txt');
      await cd.insert({ path: 'opfs:/cdrom-linux/c.iso', format: 'raw' });
      out.c = await read('c.txt');
      await guest.stop();
      await hda.flush();
      await disk.close();
      await cd.close();
      return { out, events, inserted: cd.isInserted };
    },
    { a: Array.from(isoA), c: Array.from(isoC), size: fs.statSync(root).size, overlay: OVERLAY },
  );
  expect(r.out.a, r.out.a!.out).toEqual({ status: 0, out: 'hello from disc A\n' });
  expect(r.out.b!.status, r.out.b!.out).toBe(0);
  expect(r.out.b!.out).toBe('disc B over http\n'.repeat(300));
  expect(r.out.bLines!.out.trim()).toBe('300');
  // No disc: the guest's mount fails (the drive reports no medium).
  expect(r.out.empty!.status).not.toBe(0);
  expect(r.out.empty!.out).toMatch(/No medium found|mount: mounting \/dev\/sr0/);
  expect(r.out.c, r.out.c!.out).toEqual({ status: 0, out: 'third disc\n' });
  // A in; B for A; out; C in; out at close.
  expect(r.events).toEqual(['in', 'out', 'in', 'out', 'in', 'out']);
  expect(r.inserted).toBe(false);
});

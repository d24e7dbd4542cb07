/**
 * A real Linux guest (Debian's i386 kernel, busybox, ext4: built from Debian
 * packages by scripts/build-linux-guest.mjs) boots in v86 with its disk a
 * DiskWorker qcow2 overlay in OPFS over the ext4 root image served over
 * HTTP. The guest writes files, syncs and powers off; a second boot reads
 * them back. The overlay is exported and checked in Node with qemu-img,
 * e2fsck and debugfs.
 */
import { test, expect } from '@playwright/test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { openHarness, repoRoot, sh } from './helpers.js';

const guestDir = path.join(repoRoot, 'build/linux-guest');

/** What the guest does on its first boot, in /mnt (the ext4 root on /dev/sda). */
const WRITE = [
  'mkdir -p docs/deep/deeper logs data/bin',
  // 3 MiB of text whose bytes Node can rebuild (a 64 KiB block 48 times: few system calls).
  'yes diskworker-line-0123456789 | head -c 65536 > /tmp/blk',
  'for i in $(seq 48); do cat /tmp/blk; done > docs/yes.txt',
  // 1 MiB of random bytes: the guest's md5sum is the reference.
  'dd if=/dev/urandom of=data/rand.bin bs=65536 count=16',
  'seq 1 20000 > logs/seq.txt',
  'echo "hello from the guest" > docs/deep/deeper/hello.txt',
  'cp /mnt/bin/busybox data/bin/busybox.copy',
  'sync',
];
const FILES = ['docs/yes.txt', 'data/rand.bin', 'logs/seq.txt', 'docs/deep/deeper/hello.txt', 'data/bin/busybox.copy'];

function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/** Parses `md5sum` lines into path → hash. */
function sums(out: string): Record<string, string> {
  const r: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const m = /^([0-9a-f]{32})\s+(\S+)$/.exec(line.trim());
    if (m) r[m[2]!] = m[1]!;
  }
  return r;
}

test('Linux writes ext4 files on a DiskWorker qcow2 overlay over an HTTP base, reads them after a reboot; qemu-img, e2fsck and debugfs agree', async ({ page }) => {
  test.setTimeout(900_000);
  // The e2e server builds the guest at start-up (scripts/build-linux-guest.mjs): missing means that build failed.
  expect(fs.existsSync(path.join(guestDir, 'root.qcow2')), 'build/linux-guest/root.qcow2').toBe(true);
  await openHarness(page);
  const downloadPromise = page.waitForEvent('download', { timeout: 890_000 });
  const r = await page.evaluate(
    async ({ write, files, size }) => {
      const h = window.harness;
      const dw = await h.start();
      const overlay = 'opfs:/linux-guest/overlay.qcow2';
      await dw.remove(overlay).catch(() => undefined);
      const base = `${location.origin}/linux/root.qcow2`;
      await dw.create({ path: overlay, format: 'qcow2', size, backingFile: base, backingFormat: 'qcow2' });

      const boot = async () => {
        const disk = await dw.open({ path: overlay, allowBackingProtocols: ['http'] });
        const hda = h.toV86Buffer(disk);
        const guest = await h.bootLinux({ hda, bootTimeoutMs: 400_000 });
        return { disk, hda, guest };
      };
      const powerOff = async (b: Awaited<ReturnType<typeof boot>>) => {
        const from = b.guest.serial().length;
        // Unmounted first: the exported image must need no journal replay.
        b.guest.send('cd / && umount /mnt && poweroff -f\n');
        // Without ACPI the kernel halts ("reboot: System halted"); with it, "reboot: Power down".
        await b.guest.waitFor('reboot: ', 120_000, from);
        await b.guest.stop();
        await b.hda.flush();
        await b.disk.close();
        return b.hda.writeError ? String(b.hda.writeError) : null;
      };

      const first = await boot();
      const steps: Array<{ cmd: string; status: number; out: string }> = [];
      for (const cmd of write) {
        const { out, status } = await first.guest.run(cmd, 240_000);
        steps.push({ cmd, status, out: out.slice(-300) });
      }
      const sums1 = (await first.guest.run(`md5sum ${files.join(' ')}`)).out;
      const df = (await first.guest.run('df -k /mnt')).out;
      const bootMs1 = first.guest.bootMs;
      const writeError1 = await powerOff(first);

      const second = await boot();
      const sums2 = (await second.guest.run(`md5sum ${files.join(' ')}`)).out;
      const ls = (await second.guest.run('ls -R /mnt/docs /mnt/logs /mnt/data')).out;
      const bootMs2 = second.guest.bootMs;
      const serial2 = second.guest.serial();
      const writeError2 = await powerOff(second);

      const info = await dw.info(overlay);
      const stream = await dw.exportStream(overlay);
      const blob = await new Response(stream).blob();
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = 'overlay.qcow2';
      document.body.append(a);
      a.click();
      return { steps, sums1, sums2, ls, df, bootMs1, bootMs2, writeError1, writeError2, serial2: serial2.slice(0, 3000), backing: info.backingFile, actualSize: info.actualSize };
    },
    { write: WRITE, files: FILES, size: fs.statSync(path.join(guestDir, 'root.raw')).size },
  );
  console.log(`linux guest: boot ${(r.bootMs1 / 1000).toFixed(1)} s and ${(r.bootMs2 / 1000).toFixed(1)} s; overlay ${r.actualSize} bytes\n${r.df}`);
  for (const s of r.steps) expect(s.status, `${s.cmd}\n${s.out}`).toBe(0);
  expect(r.writeError1).toBeNull();
  expect(r.writeError2).toBeNull();
  expect(r.backing).toContain('/linux/root.qcow2');
  const first = sums(r.sums1);
  expect(Object.keys(first).sort()).toEqual([...FILES].sort());
  // The second boot reads what the first wrote.
  expect(sums(r.sums2)).toEqual(first);
  expect(r.ls).toContain('hello.txt');
  // The text files are what Node computes for the same commands.
  const block = Buffer.from('diskworker-line-0123456789\n'.repeat(Math.ceil(65536 / 27))).subarray(0, 65536);
  const yes = Buffer.concat(Array.from({ length: 48 }, () => block));
  expect(first['docs/yes.txt']).toBe(md5(yes));
  const seq = Buffer.from(`${Array.from({ length: 20000 }, (_, i) => i + 1).join('\n')}\n`);
  expect(first['logs/seq.txt']).toBe(md5(seq));
  expect(first['docs/deep/deeper/hello.txt']).toBe(md5(Buffer.from('hello from the guest\n')));

  const download = await downloadPromise;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-linux-'));
  try {
    const over = path.join(dir, 'overlay.qcow2');
    await download.saveAs(over);
    // The overlay names its base by URL; point it at the same base on disk.
    fs.copyFileSync(path.join(guestDir, 'root.qcow2'), path.join(dir, 'root.qcow2'));
    sh('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-b', 'root.qcow2', '-F', 'qcow2', over]);
    const check = JSON.parse(sh('qemu-img', ['check', '--output=json', '-f', 'qcow2', over])) as Record<string, number>;
    expect(check.corruptions ?? 0).toBe(0);
    expect(check.leaks ?? 0).toBe(0);
    expect(check['check-errors'] ?? 0).toBe(0);
    const raw = path.join(dir, 'disk.raw');
    sh('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', over, raw]);
    // e2fsck exits 0 only for a clean file system.
    sh('e2fsck', ['-fn', raw]);
    for (const f of FILES) {
      const out = path.join(dir, 'out.bin');
      sh('debugfs', ['-R', `dump /${f} ${out}`, raw]);
      expect(md5(fs.readFileSync(out)), f).toBe(first[f]);
    }
    const hello = sh('debugfs', ['-R', 'cat /docs/deep/deeper/hello.txt', raw]);
    expect(hello).toBe('hello from the guest\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * A real Linux guest (Debian's i386 kernel, busybox, ext4: built from Debian
 * packages by scripts/build-linux-guest.mjs) boots in v86 with its disk a
 * DiskWorker qcow2 overlay in OPFS over the ext4 root image served over
 * HTTP. The guest writes files and syncs, then rewrites files in a loop with
 * a sync every few rounds, and the page is closed in the middle of it (a
 * crash: nothing is unmounted or flushed on the way out). The image left
 * behind is exported and checked in Node; a second boot replays the ext4
 * journal, reads the synced files back, unmounts and powers off, and that
 * image is checked with qemu-img, e2fsck and debugfs. Two boots in all.
 */
import { test, expect, type Page } from '@playwright/test';
import { spawnSync } from 'node:child_process';
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

/** The crash load: 16 files of 256 KiB rewritten in turn, a sync every 4 rounds; "@@dd<n>@@" after each. */
const CRASH_LOOP = 'mkdir -p crash; i=0; while :; do i=$((i+1)); dd if=/dev/zero of=crash/f$((i%16)) bs=64k count=4 2>/dev/null; [ $((i%4)) = 0 ] && sync; echo "@@dd$i@@"; done';
/** Rounds the loop has run when the page is closed: 4 syncs in, writes still going. */
const CRASH_AFTER_ROUNDS = 16;
const OVERLAY = 'opfs:/linux-guest/overlay.qcow2';

/** The last round the crash loop printed, or 0. */
function roundsIn(serial: string): number {
  const m = [...serial.matchAll(/@@dd(\d+)@@/g)];
  return m.length ? Number(m[m.length - 1]![1]) : 0;
}

/** qemu-img check --output=json: exit status and counts (exit 3 = leaks only). */
function qemuCheck(image: string): { status: number | null; out: Record<string, number> } {
  const r = spawnSync('qemu-img', ['check', '--output=json', '-f', 'qcow2', image], { encoding: 'utf8' });
  return { status: r.status, out: JSON.parse(r.stdout || '{}') as Record<string, number> };
}

function e2fsck(args: string[], image: string): { status: number | null; out: string } {
  const r = spawnSync('e2fsck', [...args, image], { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/**
 * What `e2fsck -fy` changed beyond what replaying an ext4 journal implies:
 * its output without the journal replay, the orphan list (files being
 * truncated or deleted at the crash, which the kernel also finishes at
 * mount), the superblock's free counts (ext4 does not keep them current on
 * disk) and extent-tree optimizations (not damage).
 */
function fixesBeyondJournal(out: string): string[] {
  const benign = [
    /^e2fsck \d/,
    /^Pass \d[A-E]?: /,
    /: recovering journal$/,
    /^Clearing orphaned inode \d+ /,
    /^Truncating orphaned inode \d+ /,
    /^Free (blocks|inodes) count wrong \(\d+, counted=\d+\)\.$/,
    /^Inode \d+ extent tree \(at level \d+\) could be (shorter|narrower)\./,
    /^(Fix|Clear|Optimize)\? yes$/,
    /\*\*\*\*\* FILE SYSTEM WAS MODIFIED \*\*\*\*\*$/,
    /^\S+: \d+\/\d+ files \(/,
  ];
  return out.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !benign.some((re) => re.test(l)));
}

/** Saves the download a page action triggers. */
async function download(page: Page, to: string, action: () => Promise<unknown>): Promise<unknown> {
  const dl = page.waitForEvent('download', { timeout: 600_000 });
  const r = await action();
  await (await dl).saveAs(to);
  return r;
}

test('Linux writes ext4 files on a DiskWorker qcow2 overlay over an HTTP base; the page is closed while it writes; the next boot replays the journal and reads them; qemu-img, e2fsck and debugfs agree', async ({ page, context }) => {
  test.setTimeout(1_200_000);
  // The e2e server builds the guest at start-up (scripts/build-linux-guest.mjs): missing means that build failed.
  expect(fs.existsSync(path.join(guestDir, 'root.qcow2')), 'build/linux-guest/root.qcow2').toBe(true);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-linux-'));
  try {
    await openHarness(page);
    // Boot 1: the files, synced; then the crash loop, left running.
    const r1 = await page.evaluate(
      async ({ write, files, size, overlay, loop }) => {
        const h = window.harness;
        const dw = await h.start();
        await dw.remove(overlay).catch(() => undefined);
        await dw.create({ path: overlay, format: 'qcow2', size, backingFile: `${location.origin}/linux/root.qcow2`, backingFormat: 'qcow2' });
        const disk = await dw.open({ path: overlay, allowBackingProtocols: ['http'] });
        const hda = h.toV86Buffer(disk);
        const guest = await h.bootLinux({ hda, bootTimeoutMs: 400_000 });
        const steps: Array<{ cmd: string; status: number; out: string }> = [];
        for (const cmd of write) {
          const { out, status } = await guest.run(cmd, 240_000);
          steps.push({ cmd, status, out: out.slice(-300) });
        }
        const sums1 = (await guest.run(`md5sum ${files.join(' ')}`)).out;
        const df = (await guest.run('df -k /mnt')).out;
        guest.send(`${loop}\n`);
        Object.assign(window, { linuxRun: { guest, hda, disk } });
        return { steps, sums1, df, bootMs1: guest.bootMs };
      },
      { write: WRITE, files: FILES, size: fs.statSync(path.join(guestDir, 'root.raw')).size, overlay: OVERLAY, loop: CRASH_LOOP },
    );
    for (const s of r1.steps) expect(s.status, `${s.cmd}\n${s.out}`).toBe(0);
    const first = sums(r1.sums1);
    expect(Object.keys(first).sort()).toEqual([...FILES].sort());

    type Run = { guest: { serial(): string }; hda: { pendingWrites: number; writeError: unknown }; disk: { stats(): Promise<{ write: { ops: number }; flush: { ops: number } }> } };
    const state = () => page.evaluate(async () => {
      const run = (window as unknown as { linuxRun: Run }).linuxRun;
      const st = await run.disk.stats();
      return { serial: run.guest.serial(), pendingWrites: run.hda.pendingWrites, writeError: run.hda.writeError ? String(run.hda.writeError) : null, writes: st.write.ops, flushes: st.flush.ops };
    });
    await expect.poll(async () => roundsIn((await state()).serial), { timeout: 600_000, intervals: [1000] }).toBeGreaterThanOrEqual(CRASH_AFTER_ROUNDS);
    const atCrash = await state();
    // The crash: the tab goes away with the guest, its emulator and its block worker.
    await page.close();
    console.log(`linux guest: boot 1 ${(r1.bootMs1 / 1000).toFixed(1)} s; page closed after ${roundsIn(atCrash.serial)} rounds of the loop, ${atCrash.writes} writes and ${atCrash.flushes} flushes on the overlay, ${atCrash.pendingWrites} guest writes in flight\n${r1.df}`);
    expect(atCrash.writeError).toBeNull();
    // The guest's syncs reached the image (connectV86Flush): one per sync of the loop at least.
    expect(atCrash.flushes).toBeGreaterThanOrEqual(CRASH_AFTER_ROUNDS / 4);

    const page2 = await context.newPage();
    await openHarness(page2);
    // The image as the crash left it (the dead worker's OPFS handle goes away shortly).
    const crashed = path.join(dir, 'crashed.qcow2');
    await download(page2, crashed, () =>
      page2.evaluate(async (overlay) => {
        const h = window.harness;
        const dw = await h.start();
        for (let tries = 0; ; tries++) {
          try {
            const blob = await new Response(await dw.exportStream(overlay)).blob();
            const a = document.createElement('a');
            a.href = URL.createObjectURL(blob);
            a.download = 'crashed.qcow2';
            document.body.append(a);
            a.click();
            return;
          } catch (e) {
            if (tries > 100 || h.describeError(e).code !== 'EBUSY') throw e;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      }, OVERLAY),
    );

    // Boot 2: the kernel replays the journal when it mounts; the synced files read back; a clean unmount.
    const final = path.join(dir, 'overlay.qcow2');
    const r2 = (await download(page2, final, () =>
      page2.evaluate(
        async ({ files, overlay }) => {
          const h = window.harness;
          const dw = await h.start();
          const disk = await dw.open({ path: overlay, allowBackingProtocols: ['http'] });
          const hda = h.toV86Buffer(disk);
          const guest = await h.bootLinux({ hda, bootTimeoutMs: 400_000 });
          const dmesg = (await guest.run('dmesg | grep "EXT4-fs (sda)"')).out;
          const sums2 = (await guest.run(`md5sum ${files.join(' ')}`)).out;
          const ls = (await guest.run('ls -R /mnt/docs /mnt/logs /mnt/data')).out;
          const crashFiles = await guest.run('ls crash | wc -l; cat crash/* | wc -c');
          const from = guest.serial().length;
          // Unmounted first: the exported image must need no journal replay.
          guest.send('cd / && umount /mnt && poweroff -f\n');
          // Without ACPI the kernel halts ("reboot: System halted"); with it, "reboot: Power down".
          await guest.waitFor('reboot: ', 120_000, from);
          await guest.stop();
          await hda.flush();
          await disk.close();
          const info = await dw.info(overlay);
          const blob = await new Response(await dw.exportStream(overlay)).blob();
          const a = document.createElement('a');
          a.href = URL.createObjectURL(blob);
          a.download = 'overlay.qcow2';
          document.body.append(a);
          a.click();
          return { dmesg, sums2, ls, crashFiles, bootMs2: guest.bootMs, writeError: hda.writeError ? String(hda.writeError) : null, backing: info.backingFile, actualSize: info.actualSize };
        },
        { files: FILES, overlay: OVERLAY },
      ),
    )) as { dmesg: string; sums2: string; ls: string; crashFiles: { out: string; status: number }; bootMs2: number; writeError: string | null; backing: string; actualSize: number };
    console.log(`linux guest: boot 2 ${(r2.bootMs2 / 1000).toFixed(1)} s; overlay ${r2.actualSize} bytes\n${r2.dmesg}`);
    expect(r2.writeError).toBeNull();
    expect(r2.backing).toContain('/linux/root.qcow2');
    // The mount found the journal of a file system that was never unmounted, and replayed it.
    expect(r2.dmesg).toContain('recovery complete');
    // Everything synced before the crash reads back; the files the loop was rewriting read without errors.
    expect(sums(r2.sums2)).toEqual(first);
    expect(r2.ls).toContain('hello.txt');
    expect(r2.crashFiles.status, r2.crashFiles.out).toBe(0);
    // The text files are what Node computes for the same commands.
    const block = Buffer.from('diskworker-line-0123456789\n'.repeat(Math.ceil(65536 / 27))).subarray(0, 65536);
    const yes = Buffer.concat(Array.from({ length: 48 }, () => block));
    expect(first['docs/yes.txt']).toBe(md5(yes));
    const seq = Buffer.from(`${Array.from({ length: 20000 }, (_, i) => i + 1).join('\n')}\n`);
    expect(first['logs/seq.txt']).toBe(md5(seq));
    expect(first['docs/deep/deeper/hello.txt']).toBe(md5(Buffer.from('hello from the guest\n')));

    // The overlays name their base by URL; point them at the same base on disk.
    fs.copyFileSync(path.join(guestDir, 'root.qcow2'), path.join(dir, 'root.qcow2'));
    for (const over of [crashed, final]) sh('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-b', 'root.qcow2', '-F', 'qcow2', over]);

    // The image the crash left: qcow2 metadata consistent (leaked clusters at most: exit 3)...
    const c1 = qemuCheck(crashed);
    console.log(`qemu-img check after the crash: exit ${c1.status}, ${JSON.stringify(c1.out)}`);
    expect([0, 3], JSON.stringify(c1.out)).toContain(c1.status);
    expect(c1.out.corruptions ?? 0).toBe(0);
    expect(c1.out['check-errors'] ?? 0).toBe(0);
    // ...and an ext4 mounted when it went down (needs_recovery), which e2fsck repairs by replaying
    // the journal, with no fix beyond what that implies; afterwards it is clean.
    const crashRaw = path.join(dir, 'crashed.raw');
    sh('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', crashed, crashRaw]);
    expect(sh('dumpe2fs', ['-h', crashRaw])).toMatch(/^Filesystem features:.*\bneeds_recovery\b/m);
    const fix = e2fsck(['-fy'], crashRaw);
    console.log(`e2fsck -fy on the crashed image: exit ${fix.status}\n${fix.out}`);
    expect(fix.out).toMatch(/: recovering journal$/m);
    expect([0, 1], fix.out).toContain(fix.status);
    expect(fixesBeyondJournal(fix.out), fix.out).toEqual([]);
    const after = e2fsck(['-fn'], crashRaw);
    expect(after.status, after.out).toBe(0);

    // The image after boot 2: the crash's leaked clusters at most, and a clean ext4 with the files.
    const c2 = qemuCheck(final);
    console.log(`qemu-img check after boot 2: exit ${c2.status}, ${JSON.stringify(c2.out)}`);
    expect([0, 3], JSON.stringify(c2.out)).toContain(c2.status);
    expect(c2.out.corruptions ?? 0).toBe(0);
    expect(c2.out['check-errors'] ?? 0).toBe(0);
    const raw = path.join(dir, 'disk.raw');
    sh('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', final, raw]);
    expect(sh('dumpe2fs', ['-h', raw])).not.toMatch(/^Filesystem features:.*\bneeds_recovery\b/m);
    // e2fsck exits 0 only for a clean file system.
    const clean = e2fsck(['-fn'], raw);
    expect(clean.status, clean.out).toBe(0);
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

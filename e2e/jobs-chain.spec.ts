/**
 * Block jobs on a backing chain from the page: an active commit of an OPFS
 * overlay into its base while the page writes (complete moves the disk onto
 * the base), a stream that pulls the base into the overlay, and an
 * incremental backup from a dirty bitmap applied onto a full one. The images
 * are downloaded and qemu-img compare / check / info judge them.
 */
import { test, expect, type Page } from '@playwright/test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { openHarness } from './helpers.js';

const MiB = 1 << 20;
const SIZE = 16 * MiB;
type Write = [number, number, number];

/** The harness's pattern (e2e/harness/main.ts). */
function pattern(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let x = 0; x < length; x++) out[x] = (x * 31 + seed * 17 + (x >>> 8) * 7 + (x >>> 16) * 13) & 0xff;
  return out;
}

function model(writes: Write[]): Uint8Array {
  const m = new Uint8Array(SIZE);
  for (const [o, n, seed] of writes) m.set(pattern(seed, n), o);
  return m;
}

async function download(page: Page, p: string, file: string): Promise<void> {
  const dl = page.waitForEvent('download');
  await page.evaluate(async (p) => {
    const dw = await window.harness.start();
    const blob = await new Response(await dw.exportStream(p)).blob();
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = 'image.qcow2';
    document.body.append(a);
    a.click();
    a.remove();
  }, p);
  await (await dl).saveAs(file);
}

function qemu(args: string[]): string {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  return r.stdout + r.stderr;
}

const BASE: Write[] = [
  [0, 4 * MiB, 1],
  [10 * MiB, 1 * MiB, 2],
];
const TOP: Write[] = [
  [2 * MiB, 1 * MiB, 3],
  [12 * MiB + 512, 70000, 4],
];

/** Makes base ← top on OPFS with BASE and TOP written, and leaves top open. */
async function makeChain(page: Page, name: string): Promise<void> {
  await page.evaluate(
    async ({ name, size, base, top }) => {
      const h = window.harness;
      const dw = await h.start();
      const b = `opfs:/jobs/${name}-base.qcow2`;
      const t = `opfs:/jobs/${name}-top.qcow2`;
      for (const p of [t, b]) await dw.remove(p).catch(() => undefined);
      await dw.create({ path: b, format: 'qcow2', size });
      const bd = await dw.open({ path: b });
      for (const [o, n, s] of base) await bd.write(o, h.pattern(s, n));
      await bd.close();
      await dw.create({ path: t, format: 'qcow2', backingFile: `${name}-base.qcow2`, backingFormat: 'qcow2' });
      const td = await dw.open({ path: t });
      for (const [o, n, s] of top) await td.write(o, h.pattern(s, n));
      (window as unknown as { disk: unknown }).disk = td;
    },
    { name, size: SIZE, base: BASE, top: TOP },
  );
}

test('active commit of an OPFS overlay into its base while the page writes: complete moves the disk onto the base', async ({ page }) => {
  await openHarness(page);
  await makeChain(page, 'commit');
  const r = await page.evaluate(async (size) => {
    const h = window.harness;
    const dw = await h.start();
    const disk = (window as unknown as { disk: Awaited<ReturnType<typeof dw.open>> }).disk;
    const writes: Array<[number, number, number]> = [];
    const job = await dw.jobs.startCommit(disk, { id: 'commit0', speed: 4 << 20 });
    const type = job.type;
    let x = 99;
    const rnd = (m: number) => ((x = (x * 1103515245 + 12345) >>> 0) % m);
    for (let i = 0; i < 100 && job.status === 'running'; i++) {
      const n = (1 + rnd(8)) * 4096;
      const o = rnd((size - n) / 512) * 512;
      await disk.write(o, h.pattern(300 + i, n));
      writes.push([o, n, 300 + i]);
    }
    // The image behind the disk is still qcow2 while the job's filter sits above it.
    const info = await dw.info('opfs:/jobs/commit-top.qcow2');
    await job.setSpeed(0);
    await job.waitFor('ready');
    await job.complete();
    await job.settled();
    const image = await disk.image();
    await disk.close();
    return { writes, type, format: info.format, image };
  }, SIZE);
  expect(r.type).toBe('commit');
  expect(r.format).toBe('qcow2');
  expect(r.writes.length).toBeGreaterThan(0);
  expect(r.image).toBe('opfs:/jobs/commit-base.qcow2');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-jobs-chain-'));
  try {
    const base = path.join(dir, 'commit-base.qcow2');
    await download(page, 'opfs:/jobs/commit-base.qcow2', base);
    expect(qemu(['check', base])).toContain('No errors were found on the image.');
    fs.writeFileSync(path.join(dir, 'model.raw'), model([...BASE, ...TOP, ...r.writes]));
    expect(qemu(['compare', '-f', 'raw', '-F', 'qcow2', path.join(dir, 'model.raw'), base])).toBe('Images are identical.\n');
    const top = path.join(dir, 'top.qcow2');
    await download(page, 'opfs:/jobs/commit-top.qcow2', top);
    expect(qemu(['check', top])).toContain('No errors were found on the image.');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('stream pulls the base into the OPFS overlay, which then has no backing file', async ({ page }) => {
  await openHarness(page);
  await makeChain(page, 'stream');
  const r = await page.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    const disk = (window as unknown as { disk: Awaited<ReturnType<typeof dw.open>> }).disk;
    const statuses: string[] = [];
    const job = await dw.jobs.startStream(disk, { onEvent: (e) => e.type === 'status' && statuses.push(e.status) });
    await job.settled();
    const info = await dw.info('opfs:/jobs/stream-top.qcow2');
    await disk.close();
    return { statuses, backing: info.backingFile ?? null, id: job.id };
  });
  expect(r.id).toMatch(/^stream-\d+$/);
  expect(r.statuses).toEqual(['created', 'running', 'waiting', 'pending', 'concluded', 'null']);
  expect(r.backing).toBeNull();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-jobs-chain-'));
  try {
    const top = path.join(dir, 'top.qcow2');
    await download(page, 'opfs:/jobs/stream-top.qcow2', top);
    expect(qemu(['check', top])).toContain('No errors were found on the image.');
    expect(JSON.parse(qemu(['info', '--output=json', top]))['backing-filename']).toBeUndefined();
    fs.writeFileSync(path.join(dir, 'model.raw'), model([...BASE, ...TOP]));
    expect(qemu(['compare', '-f', 'raw', '-F', 'qcow2', path.join(dir, 'model.raw'), top])).toBe('Images are identical.\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('incremental backup from a dirty bitmap: applied onto the full backup it equals the disk at its start', async ({ page }) => {
  await openHarness(page);
  const r = await page.evaluate(
    async ({ size, base }) => {
      const h = window.harness;
      const dw = await h.start();
      const src = 'opfs:/jobs/inc-src.qcow2';
      await dw.remove(src).catch(() => undefined);
      await dw.create({ path: src, format: 'qcow2', size });
      const disk = await dw.open({ path: src });
      for (const [o, n, s] of base) await disk.write(o, h.pattern(s, n));
      await disk.bitmaps.add('inc');
      const full = await dw.jobs.startBackup(disk, { id: 'full0', target: { path: 'opfs:/jobs/inc-full.qcow2', create: true }, sync: 'full', speed: 8 << 20 });
      const later: Array<[number, number, number]> = [];
      let x = 4242;
      const rnd = (m: number) => ((x = (x * 1103515245 + 12345) >>> 0) % m);
      for (let i = 0; i < 40; i++) {
        const n = (1 + rnd(8)) * 4096;
        const o = rnd((size - n) / 512) * 512;
        await disk.write(o, h.pattern(700 + i, n));
        later.push([o, n, 700 + i]);
      }
      await full.settled();
      const dirtyBefore = (await disk.bitmaps.list())[0]!.count;
      const inc = await dw.jobs.startBackup(disk, { id: 'inc0', target: { path: 'opfs:/jobs/inc-1.qcow2', create: true }, sync: 'bitmap', bitmap: 'inc' });
      await inc.settled();
      const dirtyAfter = (await disk.bitmaps.list())[0]!.count;
      await disk.close();
      return { later, dirtyBefore, dirtyAfter };
    },
    { size: SIZE, base: BASE },
  );
  expect(r.dirtyBefore).toBeGreaterThan(0);
  expect(r.dirtyAfter).toBe(0);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-jobs-inc-'));
  try {
    const full = path.join(dir, 'full.qcow2');
    const inc = path.join(dir, 'inc.qcow2');
    await download(page, 'opfs:/jobs/inc-full.qcow2', full);
    await download(page, 'opfs:/jobs/inc-1.qcow2', inc);
    for (const f of [full, inc]) expect(qemu(['check', f])).toContain('No errors were found on the image.');
    fs.writeFileSync(path.join(dir, 'full.raw'), model(BASE));
    expect(qemu(['compare', '-f', 'raw', '-F', 'qcow2', path.join(dir, 'full.raw'), full])).toBe('Images are identical.\n');
    // The incremental image holds only the dirty clusters: what the bitmap counted.
    const map = JSON.parse(qemu(['map', '--output=json', inc])) as Array<{ length: number; data: boolean }>;
    expect(map.filter((e) => e.data).reduce((a, e) => a + e.length, 0)).toBe(r.dirtyBefore);
    expect(qemu(['rebase', '-u', '-b', 'full.qcow2', '-F', 'qcow2', inc])).toBe('');
    fs.writeFileSync(path.join(dir, 'now.raw'), model([...BASE, ...r.later]));
    expect(qemu(['compare', '-f', 'raw', '-F', 'qcow2', path.join(dir, 'now.raw'), inc])).toBe('Images are identical.\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

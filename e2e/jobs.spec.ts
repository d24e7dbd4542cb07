/**
 * Block jobs from the page (`dw.jobs`) in real Chromium: a mirror of an
 * OPFS qcow2 disk to IndexedDB while the page writes, completed so the disk
 * runs on the IndexedDB image; a backup while the page writes, equal to the
 * disk at backup start; the verbs and QEMU's refusals; and a page reload in
 * the middle of a job. Images leave the browser as downloads and qemu-img
 * compare / check judge them against the writes the page made.
 */
import { test, expect, type Page } from '@playwright/test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { openHarness } from './helpers.js';

const MiB = 1 << 20;
const SIZE = 16 * MiB;

/** One write the page made: [offset, length, pattern seed]. */
type Write = [number, number, number];

/** The harness's pattern (e2e/harness/main.ts), rebuilt here to model the disk. */
function pattern(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let x = 0; x < length; x++) out[x] = (x * 31 + seed * 17 + (x >>> 8) * 7 + (x >>> 16) * 13) & 0xff;
  return out;
}

/** The disk's content after `writes`, in order, on a zeroed disk. */
function model(writes: Write[]): Uint8Array {
  const m = new Uint8Array(SIZE);
  for (const [o, n, seed] of writes) m.set(pattern(seed, n), o);
  return m;
}

/** Saves the stored file of image `p` (the page downloads it) into `dir`. */
async function download(page: Page, p: string, dir: string, name: string): Promise<string> {
  const dl = page.waitForEvent('download');
  await page.evaluate(
    async ({ p, name }) => {
      const dw = await window.harness.start();
      const blob = await new Response(await dw.exportStream(p)).blob();
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = name;
      document.body.append(a);
      a.click();
      a.remove();
    },
    { p, name },
  );
  const file = path.join(dir, name);
  await (await dl).saveAs(file);
  return file;
}

/** qemu-img compare of `image` (qcow2) with the raw `content`. */
function compare(dir: string, image: string, content: Uint8Array): string {
  const raw = path.join(dir, `${path.basename(image)}.model.raw`);
  fs.writeFileSync(raw, content);
  const r = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', raw, image], { encoding: 'utf8' });
  return r.stdout + r.stderr;
}

/** qemu-img check's verdict on `image`. */
function check(image: string): { status: number | null; out: string } {
  const r = spawnSync('qemu-img', ['check', image], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'dw-jobs-'));
}

/** Writes before a job: some data spread over the disk. */
const INITIAL: Write[] = [
  [0, 1 * MiB, 1],
  [3 * MiB + 4096, 2 * MiB, 2],
  [9 * MiB, 3 * MiB + 512, 3],
  [SIZE - 65536, 65536, 4],
];

test('mirror an OPFS disk to IndexedDB while the page writes: complete moves the disk onto the IndexedDB image with every write', async ({ page }) => {
  test.setTimeout(120_000);
  await openHarness(page);
  const src = 'opfs:/jobs/mirror-src.qcow2';
  const dst = 'idb:jobs-mirror.qcow2';
  const r = await page.evaluate(
    async ({ src, dst, size, initial }) => {
      const h = window.harness;
      const dw = await h.start();
      await dw.remove(src).catch(() => undefined);
      await dw.create({ path: src, format: 'qcow2', size });
      const disk = await dw.open({ path: src });
      const writes: Array<[number, number, number]> = [];
      const put = async (o: number, n: number, seed: number) => {
        await disk.write(o, h.pattern(seed, n));
        writes.push([o, n, seed]);
      };
      for (const [o, n, s] of initial) await put(o, n, s);
      const statuses: string[] = [];
      let progressEvents = 0;
      const job = await dw.jobs.startMirror(disk, {
        id: 'mirror0',
        target: { path: dst, create: true },
        speed: 8 << 20,
        onEvent: (e) => {
          if (e.type === 'status') statuses.push(e.status);
          if (e.type === 'progress') progressEvents++;
        },
      });
      let x = 12345;
      const rnd = (m: number) => ((x = (x * 1103515245 + 12345) >>> 0) % m);
      let during = 0;
      // The page keeps writing while the mirror copies.
      for (let i = 0; i < 300 && job.status !== 'ready'; i++, during++) {
        const n = (1 + rnd(16)) * 4096;
        await put(rnd((size - n) / 512) * 512, n, 100 + i);
      }
      await job.setSpeed(0);
      await job.waitFor('ready');
      // After ready the mirror still follows the writes.
      for (let i = 0; i < 20; i++) {
        const n = (1 + rnd(8)) * 512;
        await put(rnd((size - n) / 512) * 512, n, 500 + i);
      }
      const imageBefore = await disk.image();
      await job.complete();
      await job.settled();
      const imageAfter = await disk.image();
      const pivotWrites = writes.length;
      await put(5 * 4096, 4096, 900);
      // Read the disk back in the page and compare with what it wrote.
      const expect = new Uint8Array(size);
      for (const [o, n, s] of writes) expect.set(h.pattern(s, n), o);
      const got = await disk.read(0, size);
      const readBack = h.diff(got, expect);
      await disk.close();
      return { writes, pivotWrites, during, statuses, progressEvents, imageBefore, imageAfter, readBack, list: await dw.list('idb') };
    },
    { src, dst, size: SIZE, initial: INITIAL },
  );
  expect(r.during).toBeGreaterThan(0);
  expect(r.statuses).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);
  expect(r.progressEvents).toBeGreaterThan(0);
  expect(r.imageBefore).toContain('mirror-src.qcow2');
  expect(r.imageAfter).toBe(dst);
  expect(r.readBack).toBe(-1);
  expect(r.list.map((e) => e.path)).toContain(dst);
  const dir = tmp();
  try {
    const mirrored = await download(page, dst, dir, 'mirror.qcow2');
    expect(check(mirrored)).toMatchObject({ status: 0 });
    expect(compare(dir, mirrored, model(r.writes))).toBe('Images are identical.\n');
    // The source stays as it was at the pivot, clean.
    const source = await download(page, src, dir, 'source.qcow2');
    expect(check(source)).toMatchObject({ status: 0 });
    expect(compare(dir, source, model(r.writes.slice(0, r.pivotWrites)))).toBe('Images are identical.\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('backup to a new qcow2 while the page writes: the download equals the disk at backup start', async ({ page }) => {
  test.setTimeout(120_000);
  await openHarness(page);
  const src = 'opfs:/jobs/backup-src.qcow2';
  const dst = 'opfs:/jobs/backup.qcow2';
  const r = await page.evaluate(
    async ({ src, dst, size, initial }) => {
      const h = window.harness;
      const dw = await h.start();
      await dw.remove(src).catch(() => undefined);
      await dw.create({ path: src, format: 'qcow2', size });
      const disk = await dw.open({ path: src });
      for (const [o, n, s] of initial) await disk.write(o, h.pattern(s, n));
      const job = await dw.jobs.startBackup(disk, { id: 'backup0', target: { path: dst, create: true }, sync: 'full', speed: 4 << 20 });
      const later: Array<[number, number, number]> = [];
      let x = 777;
      const rnd = (m: number) => ((x = (x * 1103515245 + 12345) >>> 0) % m);
      // Overwrites of what the backup has still to copy go to the disk, not into the backup.
      for (let i = 0; job.status === 'running' && i < 400; i++) {
        const n = (1 + rnd(16)) * 4096;
        const o = rnd((size - n) / 512) * 512;
        await disk.write(o, h.pattern(200 + i, n));
        later.push([o, n, 200 + i]);
      }
      const progress = job.progress;
      await job.settled();
      await disk.close();
      return { later, progress };
    },
    { src, dst, size: SIZE, initial: INITIAL },
  );
  expect(r.later.length).toBeGreaterThan(0);
  const dir = tmp();
  try {
    const backup = await download(page, dst, dir, 'backup.qcow2');
    expect(check(backup)).toMatchObject({ status: 0 });
    expect(compare(dir, backup, model(INITIAL))).toBe('Images are identical.\n');
    const source = await download(page, src, dir, 'source.qcow2');
    expect(compare(dir, source, model([...INITIAL, ...r.later]))).toBe('Images are identical.\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('pause, resume, set speed and cancel through the page; a verb the state refuses fails with EPERM and QEMU\'s message', async ({ page }) => {
  await openHarness(page);
  const r = await page.evaluate(
    async ({ size, initial }) => {
      const h = window.harness;
      const dw = await h.start();
      const src = 'opfs:/jobs/verbs.qcow2';
      await dw.remove(src).catch(() => undefined);
      await dw.create({ path: src, format: 'qcow2', size });
      const disk = await dw.open({ path: src });
      for (const [o, n, s] of initial) await disk.write(o, h.pattern(s, n));
      const statuses: string[] = [];
      const job = await dw.jobs.startBackup(disk, {
        id: 'verbs0',
        target: { path: 'idb:jobs-verbs.qcow2', create: true },
        speed: 1 << 20,
        onEvent: (e) => e.type === 'status' && statuses.push(e.status),
      });
      const errors: Record<string, unknown> = {};
      const attempt = async (name: string, fn: () => Promise<unknown>) => {
        try {
          await fn();
          errors[name] = null;
        } catch (e) {
          errors[name] = h.describeError(e);
        }
      };
      await attempt('complete', () => job.complete());
      await attempt('resumeRunning', () => job.resume());
      await attempt('duplicate', () => dw.jobs.startBackup(disk, { id: 'verbs0', target: { path: 'idb:jobs-verbs2.qcow2', create: true } }));
      await attempt('badId', () => dw.jobs.startBackup(disk, { id: '0bad', target: { path: 'idb:jobs-verbs2.qcow2', create: true } }));
      await attempt('noDisk', () => dw.jobs.startStream('opfs:/jobs/not-open.qcow2'));
      await job.pause();
      await job.waitFor('paused');
      const paused = await job.blockInfo();
      const at = (await job.info())['current-progress'];
      await new Promise((res) => setTimeout(res, 600));
      const stillAt = (await job.info())['current-progress'];
      await attempt('pauseTwice', () => job.pause());
      await job.resume();
      await job.waitFor('running');
      await job.setSpeed(2 << 20);
      const speed = (await job.blockInfo()).speed;
      await job.cancel();
      await attempt('settled', () => job.settled());
      await attempt('afterGone', () => job.pause());
      // The disk still works after the job is gone.
      await disk.write(0, h.pattern(9, 4096));
      const back = h.diff(await disk.read(0, 4096), h.pattern(9, 4096));
      await disk.close();
      return { errors, statuses, paused, at, stillAt, speed, back, total: paused.len };
    },
    { size: SIZE, initial: INITIAL },
  );
  expect(r.errors.complete).toEqual({ code: 'EPERM', message: "Job 'verbs0' in state 'running' cannot accept command verb 'complete'", isBlockError: true });
  expect(r.errors.resumeRunning).toEqual({ code: 'EINVAL', message: "Can't resume a job that was not paused", isBlockError: true });
  expect(r.errors.duplicate).toEqual({ code: 'EEXIST', message: "Job ID 'verbs0' already in use", isBlockError: true });
  expect(r.errors.badId).toEqual({ code: 'EINVAL', message: "Invalid job ID '0bad'", isBlockError: true });
  expect(r.errors.noDisk).toMatchObject({ code: 'ENOENT', isBlockError: true });
  expect(r.errors.pauseTwice).toEqual({ code: 'EINVAL', message: 'Job is already paused', isBlockError: true });
  expect(r.errors.settled).toMatchObject({ code: 'ECANCELED', isBlockError: true });
  expect(r.errors.afterGone).toEqual({ code: 'ENOENT', message: "Job 'verbs0' not found", isBlockError: true });
  expect(r.paused).toMatchObject({ type: 'backup', device: 'verbs0', paused: true, status: 'paused', speed: 1 << 20 });
  expect(r.stillAt).toBe(r.at);
  expect(r.at).toBeLessThan(r.total);
  expect(r.speed).toBe(2 << 20);
  expect(r.statuses).toEqual(['created', 'running', 'paused', 'running', 'aborting', 'concluded', 'null']);
  expect(r.back).toBe(-1);
});

test('a page reload in the middle of a mirror leaves the source image intact', async ({ page }) => {
  test.setTimeout(90_000);
  await openHarness(page);
  const src = 'opfs:/jobs/reload-src.qcow2';
  const progress = await page.evaluate(
    async ({ src, size, initial }) => {
      const h = window.harness;
      const dw = await h.start();
      await dw.remove(src).catch(() => undefined);
      await dw.create({ path: src, format: 'qcow2', size });
      const disk = await dw.open({ path: src });
      for (const [o, n, s] of initial) await disk.write(o, h.pattern(s, n));
      await disk.flush();
      const job = await dw.jobs.startMirror(disk, { id: 'reload0', target: { path: 'idb:jobs-reload.qcow2', create: true }, speed: 2 << 20 });
      await new Promise<void>((res) => job.on((e) => e.type === 'progress' && e.current > 0 && res()));
      return job.progress;
    },
    { src, size: SIZE, initial: INITIAL },
  );
  expect(progress.current).toBeGreaterThan(0);
  expect(progress.current).toBeLessThan(progress.total);
  await page.reload();
  await openHarness(page);
  const r = await page.evaluate(
    async ({ src, size }) => {
      const h = window.harness;
      const dw = await h.start();
      const disk = await dw.open({ path: src });
      const image = await disk.image();
      const length = disk.length;
      const all = await disk.read(0, size);
      await disk.close();
      return { image, length, bytes: all.length };
    },
    { src, size: SIZE },
  );
  expect(r.image).toContain('reload-src.qcow2');
  expect(r.length).toBe(SIZE);
  const dir = tmp();
  try {
    const source = await download(page, src, dir, 'source.qcow2');
    const c = check(source);
    expect(c.out).toContain('No errors were found on the image.');
    expect(c.status).toBe(0);
    expect(compare(dir, source, model(INITIAL))).toBe('Images are identical.\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

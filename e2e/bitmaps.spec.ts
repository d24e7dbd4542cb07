/**
 * Dirty bitmaps from the page (`disk.bitmaps`) in real Chromium on OPFS and
 * IndexedDB qcow2 images: a persistent bitmap survives a page reload (the
 * disk closed before it, so the image stored it, as QEMU stores bitmaps on
 * close) with the written extents; a reload without a close leaves it in use,
 * so it comes back inconsistent, as QEMU would find it, unless
 * `disk.bitmaps.store()` ran after the last write. The image is then
 * brought out of the browser as a download and `qemu-img info` / `check`
 * and qemu-nbd's dirty extents must agree with what the page listed.
 */
import { test, expect, type Page } from '@playwright/test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openHarness, sh } from './helpers.js';
import { qemuDirtyExtents } from '../test/qemu-nbd.js';

const MiB = 1 << 20;
const SIZE = 16 * MiB;
/** Writes before the reload: [offset, length]. */
const WRITES: Array<[number, number]> = [
  [0, 4096],
  [3 * MiB + 100, 200000],
  [SIZE - 512, 512],
];

/** Saves the stored image file of `p` (the page downloads it) to a temp dir. */
async function downloadImage(page: Page, p: string): Promise<{ file: string; dir: string }> {
  const download = page.waitForEvent('download');
  await page.evaluate(async (p) => {
    const dw = await window.harness.start();
    const blob = await new Response(await dw.exportStream(p)).blob();
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = 'disk.qcow2';
    document.body.append(a);
    a.click();
  }, p);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-bitmaps-'));
  const file = path.join(dir, 'disk.qcow2');
  await (await download).saveAs(file);
  return { file, dir };
}

function qemuInfoBitmaps(file: string): unknown {
  const info = JSON.parse(sh('qemu-img', ['info', '--output=json', file])) as { 'format-specific': { data: { bitmaps?: unknown } } };
  return info['format-specific'].data.bitmaps ?? [];
}

function qemuCheckClean(file: string): { corruptions: number; leaks: number; errors: number } {
  const j = JSON.parse(sh('qemu-img', ['check', '--output=json', file])) as { corruptions?: number; leaks?: number; 'check-errors'?: number };
  return { corruptions: j.corruptions ?? 0, leaks: j.leaks ?? 0, errors: j['check-errors'] ?? 0 };
}

/** The extents whole 64 KiB granules of WRITES cover. */
function granules(writes: Array<[number, number]>, g = 65536): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const [o, n] of [...writes].sort((a, b) => a[0] - b[0])) {
    const a = Math.floor(o / g) * g;
    const b = Math.min(SIZE, Math.ceil((o + n) / g) * g);
    const last = out[out.length - 1];
    if (last && last[0] + last[1] >= a) last[1] = Math.max(last[1], b - last[0]);
    else out.push([a, b - a]);
  }
  return out;
}

for (const p of ['opfs:/bitmaps/disk.qcow2', 'idb:bitmaps-disk.qcow2']) {
  test(`a persistent bitmap on ${p.split(':')[0]} keeps its extents across a page reload, and qemu-img finds it stored and clean`, async ({ page }) => {
    await openHarness(page);
    const before = await page.evaluate(
      async ({ p, size, writes }) => {
        const h = window.harness;
        const dw = await h.start();
        await dw.remove(p).catch(() => undefined);
        await dw.create({ path: p, format: 'qcow2', size });
        const disk = await dw.open({ path: p });
        await disk.bitmaps.add('inc', { persistent: true });
        await disk.bitmaps.add('scratch');
        for (const [o, n] of writes) await disk.write(o, h.pattern(o, n));
        const extents: Array<[number, number]> = [];
        for await (const e of disk.bitmaps.dirtyExtents('inc')) extents.push(e);
        const list = await disk.bitmaps.list();
        await disk.close();
        return { extents, list };
      },
      { p, size: SIZE, writes: WRITES },
    );
    expect(before.extents).toEqual(granules(WRITES));
    expect(before.list.map((b) => b.name)).toEqual(['inc', 'scratch']);

    await page.reload();
    await openHarness(page);
    const after = await page.evaluate(
      async ({ p }) => {
        const dw = await window.harness.start();
        const disk = await dw.open({ path: p });
        const list = await disk.bitmaps.list();
        const extents: Array<[number, number]> = [];
        for await (const e of disk.bitmaps.dirtyExtents('inc')) extents.push(e);
        // Still recording after the reload.
        await disk.write(8 << 20, new Uint8Array(1000).fill(7));
        const more: Array<[number, number]> = [];
        for await (const e of disk.bitmaps.dirtyExtents('inc')) more.push(e);
        await disk.close();
        return { list, extents, more };
      },
      { p },
    );
    // Only the persistent one came back, valid and recording, with the same extents.
    expect(after.list).toEqual([{ name: 'inc', granularity: 65536, count: before.list[0]!.count, recording: true, busy: false, persistent: true, inconsistent: false }]);
    expect(after.extents).toEqual(before.extents);
    const final = granules([...WRITES, [8 << 20, 1000]]);
    expect(after.more).toEqual(final);

    const { file, dir } = await downloadImage(page, p);
    try {
      expect(qemuInfoBitmaps(file)).toEqual([{ flags: ['auto'], name: 'inc', granularity: 65536 }]);
      expect(qemuCheckClean(file)).toEqual({ corruptions: 0, leaks: 0, errors: 0 });
      expect(await qemuDirtyExtents(file, 'inc')).toEqual(final);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('a reload without closing the disk leaves the bitmap in use: it comes back inconsistent, and removing it leaves a clean image', async ({ page }) => {
  const p = 'opfs:/bitmaps/crash.qcow2';
  await openHarness(page);
  await page.evaluate(
    async ({ p, size }) => {
      const h = window.harness;
      const dw = await h.start();
      await dw.remove(p).catch(() => undefined);
      await dw.create({ path: p, format: 'qcow2', size });
      const first = await dw.open({ path: p });
      await first.bitmaps.add('inc', { persistent: true });
      await first.close();
      // Open again (the bitmap is now marked in use in the image), write, and go away without a close.
      const disk = await dw.open({ path: p });
      await disk.write(0, h.pattern(1, 65536));
      await disk.flush();
    },
    { p, size: SIZE },
  );
  await page.reload();
  await openHarness(page);
  const r = await page.evaluate(
    async ({ p }) => {
      const h = window.harness;
      const dw = await h.start();
      const disk = await dw.open({ path: p });
      const list = await disk.bitmaps.list();
      let extentsError: unknown = null;
      try {
        for await (const _ of disk.bitmaps.dirtyExtents('inc')) break;
      } catch (e) {
        extentsError = h.describeError(e);
      }
      await disk.bitmaps.remove('inc');
      const left = await disk.bitmaps.list();
      await disk.close();
      return { list, extentsError, left };
    },
    { p },
  );
  expect(r.list).toEqual([{ name: 'inc', granularity: 65536, count: 0, recording: false, busy: false, persistent: true, inconsistent: true }]);
  expect(r.extentsError).toMatchObject({ code: 'EINVAL', isBlockError: true });
  expect((r.extentsError as { message: string }).message).toMatch(/^Bitmap 'inc' is inconsistent and cannot be used/);
  expect(r.left).toEqual([]);
  const { file, dir } = await downloadImage(page, p);
  try {
    expect(qemuInfoBitmaps(file)).toEqual([]);
    expect(qemuCheckClean(file)).toEqual({ corruptions: 0, leaks: 0, errors: 0 });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('after disk.bitmaps.store() and no further write, a reload without closing keeps the bitmap valid with its extents', async ({ page }) => {
  const p = 'idb:bitmaps-store.qcow2';
  await openHarness(page);
  const stored = await page.evaluate(
    async ({ p, size, writes }) => {
      const h = window.harness;
      const dw = await h.start();
      await dw.remove(p).catch(() => undefined);
      await dw.create({ path: p, format: 'qcow2', size });
      const disk = await dw.open({ path: p });
      await disk.bitmaps.add('inc', { persistent: true, granularity: 4096 });
      for (const [o, n] of writes) await disk.write(o, h.pattern(o, n));
      await disk.flush();
      await disk.bitmaps.store();
      const extents: Array<[number, number]> = [];
      for await (const e of disk.bitmaps.dirtyExtents('inc')) extents.push(e);
      // No close: the reload drops the worker with the disk open.
      return extents;
    },
    { p, size: SIZE, writes: WRITES },
  );
  expect(stored).toEqual(granules(WRITES, 4096));
  await page.reload();
  await openHarness(page);
  const after = await page.evaluate(
    async ({ p }) => {
      const dw = await window.harness.start();
      const disk = await dw.open({ path: p });
      const list = await disk.bitmaps.list();
      const extents: Array<[number, number]> = [];
      for await (const e of disk.bitmaps.dirtyExtents('inc')) extents.push(e);
      await disk.close();
      return { list, extents };
    },
    { p },
  );
  expect(after.list).toEqual([{ name: 'inc', granularity: 4096, count: stored.reduce((s, [, n]) => s + n, 0), recording: true, busy: false, persistent: true, inconsistent: false }]);
  expect(after.extents).toEqual(stored);
  const { file, dir } = await downloadImage(page, p);
  try {
    expect(qemuInfoBitmaps(file)).toEqual([{ flags: ['auto'], name: 'inc', granularity: 4096 }]);
    expect(qemuCheckClean(file)).toEqual({ corruptions: 0, leaks: 0, errors: 0 });
    expect(await qemuDirtyExtents(file, 'inc')).toEqual(stored);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

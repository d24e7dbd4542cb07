/**
 * IndexedDB back end: persistence across reload, sparse reads, truncate,
 * a second writer gets EBUSY.
 */
import { test, expect } from '@playwright/test';
import { openHarness, imageFormat } from './helpers.js';

test('an image in IndexedDB keeps its flushed data across a page reload', async ({ page }) => {
  await openHarness(page);
  const format = await imageFormat(page);
  const ranges = await page.evaluate(async (format) => {
    const h = window.harness;
    const dw = await h.start();
    await dw.create({ path: 'idb:persist-disk', format, size: 32 << 20 });
    const disk = await dw.open({ path: 'idb:persist-disk' });
    const ranges: Array<[number, number, number]> = [
      [0, 4096, 11],
      [100_000, 70_000, 12], // unaligned, spans chunks
      [(32 << 20) - 1024, 1024, 13],
      [5 << 20, 3 << 20, 14], // larger than one batch of chunks
    ];
    for (const [off, len, seed] of ranges) await disk.write(off, h.pattern(seed, len));
    for (const [off, len, seed] of ranges) {
      if (h.diff(await disk.read(off, len), h.pattern(seed, len)) !== -1) throw new Error(`read back differs at ${off}`);
    }
    await disk.flush();
    await disk.close();
    return ranges;
  }, format);

  await page.reload();
  await openHarness(page);
  const r = await page.evaluate(async (ranges) => {
    const h = window.harness;
    const dw = await h.start();
    const disk = await dw.open({ path: 'idb:persist-disk' });
    const bad: number[] = [];
    for (const [off, len, seed] of ranges) if (h.diff(await disk.read(off, len), h.pattern(seed, len)) !== -1) bad.push(off);
    const hole = await disk.read(20 << 20, 1 << 20);
    const len = disk.length;
    await disk.close();
    return { bad, holeZero: hole.every((b) => b === 0), len, list: await dw.list('idb') };
  }, ranges);
  expect(r.bad).toEqual([]);
  expect(r.holeZero).toBe(true);
  expect(r.len).toBe(32 << 20);
  expect(r.list.map((e) => e.path)).toContain('idb:persist-disk');
});

test('idb raw image: truncate, zero writes and remove', async ({ page }) => {
  await openHarness(page);
  const r = await page.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    await dw.create({ path: 'idb:trunc', format: 'raw', size: 1 << 20, options: { 'chunk-size': 4096 } });
    const disk = await dw.open({ path: 'idb:trunc', format: 'raw' });
    await disk.write(0, h.pattern(1, 1 << 20));
    await disk.writeZeroes(4096 * 3 + 100, 10_000);
    const z = await disk.read(4096 * 3 + 100, 10_000);
    await disk.truncate(300_001);
    await disk.truncate(1 << 20);
    const tail = await disk.read(300_001, (1 << 20) - 300_001);
    const head = await disk.read(0, 4096);
    await disk.flush();
    await disk.close();
    const reopened = await dw.open({ path: 'idb:trunc', format: 'raw' });
    const again = await reopened.read(290_000, 20_000);
    await reopened.close();
    await dw.remove('idb:trunc');
    let gone = '';
    try {
      await dw.open({ path: 'idb:trunc', format: 'raw' });
    } catch (e) {
      gone = h.describeError(e).code ?? '';
    }
    const expectAgain = h.pattern(1, 1 << 20).subarray(290_000, 310_000);
    expectAgain.fill(0, 300_001 - 290_000);
    return {
      zeros: z.every((b) => b === 0),
      tailZero: tail.every((b) => b === 0),
      headOk: h.diff(head, h.pattern(1, 4096)) === -1,
      againOk: h.diff(again, expectAgain),
      gone,
    };
  });
  expect(r).toEqual({ zeros: true, tailZero: true, headOk: true, againOk: -1, gone: 'ENOENT' });
});

test('idb: another connection upgrading the database does not break an open image', async ({ page }) => {
  await openHarness(page);
  const r = await page.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    await dw.create({ path: 'idb:upgrade', format: 'raw', size: 1 << 20 });
    const disk = await dw.open({ path: 'idb:upgrade', format: 'raw' });
    await disk.write(0, h.pattern(3, 65536));
    await disk.flush();
    // Another library in the page upgrades the shared database (versionchange).
    const version = await new Promise<number>((resolve, reject) => {
      const req = indexedDB.open('diskworker-idb');
      req.onsuccess = () => {
        const v = req.result.version;
        req.result.close();
        const up = indexedDB.open('diskworker-idb', v + 1);
        up.onupgradeneeded = () => up.result.createObjectStore('someone-else');
        up.onsuccess = () => {
          up.result.close();
          resolve(v + 1);
        };
        up.onerror = () => reject(up.error);
        up.onblocked = () => undefined;
      };
      req.onerror = () => reject(req.error);
    });
    await disk.write(65536, h.pattern(4, 65536));
    await disk.flush();
    await disk.close();
    const again = await dw.open({ path: 'idb:upgrade', format: 'raw', readOnly: true });
    const a = await again.read(0, 65536);
    const b = await again.read(65536, 65536);
    await again.close();
    return { version, ok: h.diff(a, h.pattern(3, 65536)) === -1 && h.diff(b, h.pattern(4, 65536)) === -1 };
  });
  expect(r.version).toBeGreaterThan(1);
  expect(r.ok).toBe(true);
});

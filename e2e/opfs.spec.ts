/**
 * OPFS persistence: create an image from the page, write and read patterns,
 * reload, the data is still there.
 */
import { test, expect } from '@playwright/test';
import { openHarness, imageFormat } from './helpers.js';

test('an image in OPFS keeps its data across a page reload', async ({ page }) => {
  await openHarness(page);
  const format = await imageFormat(page);
  const written = await page.evaluate(async (format) => {
    const h = window.harness;
    const dw = await h.start();
    await dw.create({ path: 'opfs:/persist/disk.img', format, size: 64 << 20 });
    const disk = await dw.open({ path: 'opfs:/persist/disk.img' });
    const out: Array<[number, number, number]> = [];
    for (const [off, len, seed] of [
      [0, 4096, 1],
      [1 << 20, 65536, 2],
      [(64 << 20) - 512 * 3, 512 * 3, 3],
      [12345 * 512, 200 * 512, 4],
    ] as const) {
      await disk.write(off, h.pattern(seed, len));
      const back = await disk.read(off, len);
      if (h.diff(back, h.pattern(seed, len)) !== -1) throw new Error(`read back differs at ${off}`);
      out.push([off, len, seed]);
    }
    await disk.flush();
    await disk.close();
    return { out, format: disk.format, list: await dw.list('opfs') };
  }, format);
  expect(written.format).toBe(format);
  expect(written.list.map((e) => e.path)).toContain('opfs:/persist/disk.img');

  await page.reload();
  await openHarness(page);
  const check = await page.evaluate(async (ranges) => {
    const h = window.harness;
    const dw = await h.start();
    const disk = await dw.open({ path: 'opfs:/persist/disk.img' });
    const bad: number[] = [];
    for (const [off, len, seed] of ranges) {
      const back = await disk.read(off, len);
      if (h.diff(back, h.pattern(seed, len)) !== -1) bad.push(off);
    }
    const hole = await disk.read(8 << 20, 65536);
    const info = { length: disk.length, holeZero: hole.every((b) => b === 0) };
    await disk.close();
    return { bad, ...info };
  }, written.out);
  expect(check.bad).toEqual([]);
  expect(check.length).toBe(64 << 20);
  expect(check.holeZero).toBe(true);
});

test('errors cross the worker boundary as BlockErrors with their code', async ({ page }) => {
  await openHarness(page);
  const e = await page.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    try {
      await dw.open({ path: 'opfs:/does/not/exist.img' });
      return null;
    } catch (err) {
      return h.describeError(err);
    }
  });
  expect(e).not.toBeNull();
  expect(e!.code).toBe('ENOENT');
  expect(e!.isBlockError).toBe(true);
  expect(e!.message).toContain('exist.img');
});

test('a write transfers its buffer unless asked to copy', async ({ page }) => {
  await openHarness(page);
  const r = await page.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    await dw.create({ path: 'opfs:/xfer.img', format: 'raw', size: 1 << 20 });
    const disk = await dw.open({ path: 'opfs:/xfer.img' });
    const a = h.pattern(5, 4096);
    await disk.write(0, a);
    const b = h.pattern(6, 4096);
    await disk.write(4096, b, { copy: true });
    let buf: Uint8Array = new Uint8Array(8192);
    buf = await disk.readInto(0, buf);
    const ok = h.diff(buf.subarray(0, 4096), h.pattern(5, 4096)) === -1 && h.diff(buf.subarray(4096), h.pattern(6, 4096)) === -1;
    await disk.close();
    return { aDetached: a.byteLength, bKept: b.byteLength, ok };
  });
  expect(r.aDetached).toBe(0);
  expect(r.bKept).toBe(4096);
  expect(r.ok).toBe(true);
});

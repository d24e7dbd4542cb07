/**
 * Crash consistency: the worker is terminated in the middle of a stream of
 * allocating writes, and the page is reloaded in the middle of another. The
 * image opens again, check finds leaks at most, and every write flushed
 * before the kill reads back.
 */
import { test, expect, type Page } from '@playwright/test';
import { openHarness, imageFormat } from './helpers.js';

/** Starts a stream of 64 KiB allocating writes with a flush every 4; progress goes to localStorage. */
async function startWriter(page: Page, path: string, format: string): Promise<void> {
  await page.evaluate(
    async ({ path, format }) => {
      const h = window.harness;
      const dw = await h.start();
      await dw.create({ path, format: format as 'qcow2' | 'raw', size: 256 << 20 });
      const disk = await dw.open({ path });
      localStorage.setItem(`flushed:${path}`, '0');
      void (async () => {
        for (let i = 0; i < 4096; i++) {
          // Scattered offsets, so a qcow2 keeps allocating clusters and L2 tables.
          const off = ((i * 2654435761) % 4096) * 65536;
          await disk.write(off, h.pattern(i & 0xff, 65536));
          if ((i + 1) % 4 === 0) {
            await disk.flush();
            localStorage.setItem(`flushed:${path}`, String(i + 1));
          }
        }
      })().catch(() => undefined);
    },
    { path, format },
  );
}

/** Reopens the image (retrying while the dead worker's handle is released) and checks it. */
async function verify(page: Page, path: string, format: string) {
  return page.evaluate(
    async ({ path, format }) => {
      const h = window.harness;
      const dw = await h.start();
      const flushed = Number(localStorage.getItem(`flushed:${path}`) ?? '0');
      let disk = null;
      for (let tries = 0; !disk; tries++) {
        try {
          disk = await dw.open({ path });
        } catch (e) {
          if (tries > 50 || h.describeError(e).code !== 'EBUSY') throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      const bad: number[] = [];
      const seen = new Set<number>();
      // Later writes to the same offset win: check each offset's last flushed write.
      for (let i = flushed - 1; i >= 0; i--) {
        const off = ((i * 2654435761) % 4096) * 65536;
        if (seen.has(off)) continue;
        seen.add(off);
        const back = await disk.read(off, 65536);
        if (h.diff(back, h.pattern(i & 0xff, 65536)) !== -1) bad.push(i);
      }
      await disk.close();
      const check = format === 'qcow2' ? await dw.check(path) : null;
      return { flushed, bad, check };
    },
    { path, format },
  );
}

test('the worker is terminated during allocating writes: flushed writes survive', async ({ page }) => {
  await openHarness(page);
  const format = await imageFormat(page);
  const path = `opfs:/crash/kill.${format}`;
  await startWriter(page, path, format);
  await page.waitForFunction((p) => Number(localStorage.getItem(`flushed:${p}`)) >= 40, path);
  await page.evaluate(() => {
    window.harness.dw!.terminate();
    window.harness.dw = null;
  });
  const r = await verify(page, path, format);
  expect(r.flushed).toBeGreaterThanOrEqual(40);
  expect(r.bad).toEqual([]);
  if (r.check) {
    expect(r.check.corruptions).toBe(0);
    expect(r.check.checkErrors).toBe(0);
  }
});

test('the page is reloaded during allocating writes: flushed writes survive', async ({ page }) => {
  await openHarness(page);
  const format = await imageFormat(page);
  for (const path of [`opfs:/crash/reload.${format}`, `idb:crash-reload.${format}`]) {
    await startWriter(page, path, format);
    await page.waitForFunction((p) => Number(localStorage.getItem(`flushed:${p}`)) >= 24, path);
    await page.reload();
    await openHarness(page);
    const r = await verify(page, path, format);
    expect(r.flushed, path).toBeGreaterThanOrEqual(24);
    expect(r.bad, path).toEqual([]);
    if (r.check) {
      expect(r.check.corruptions, path).toBe(0);
      expect(r.check.checkErrors, path).toBe(0);
    }
  }
});

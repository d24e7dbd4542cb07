/**
 * check from the page: progress reports, cancellation of a check that repairs
 * nothing, and a repair that runs to its end.
 */
import { test, expect } from '@playwright/test';
import { openHarness } from './helpers.js';

test('check reports progress, can be cancelled, and repairs to the end', async ({ page }) => {
  await openHarness(page);
  const r = await page.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    const path = 'opfs:/check/wide.qcow2';
    // 40 L2 tables (64 KiB clusters: one table per 512 MiB), one cluster written under each.
    await dw.create({ path, format: 'qcow2', size: 20 * 2 ** 30 });
    const disk = await dw.open({ path });
    for (let i = 0; i < 40; i++) await disk.write(i * 2 ** 29, h.pattern(i, 65536));
    await disk.close();
    const progress: number[] = [];
    const report = await dw.check(path, { onProgress: (p) => progress.push((p.done / p.total) * 100) });
    const ac = new AbortController();
    ac.abort();
    let cancelled = '';
    try {
      await dw.check(path, { signal: ac.signal });
    } catch (e) {
      cancelled = h.describeError(e).code ?? '';
    }
    const repaired = await dw.check(path, { repair: true, signal: ac.signal });
    return { clean: report.corruptions + report.leaks + report.checkErrors, progress, cancelled, repairedClean: repaired.corruptions + repaired.leaks };
  });
  expect(r.clean).toBe(0);
  expect(r.progress.length).toBeGreaterThan(1);
  expect(r.progress[r.progress.length - 1]).toBe(100);
  expect(r.cancelled).toBe('ECANCELED');
  expect(r.repairedClean).toBe(0);
});

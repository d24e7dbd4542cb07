/**
 * The synchronous channel: another worker reads and writes a disk with
 * Atomics.wait through a SharedArrayBuffer (cross-origin isolated page).
 */
import { test, expect } from '@playwright/test';
import { openHarness } from './helpers.js';

test('a worker reads and writes a disk synchronously through the sync channel', async ({ page }) => {
  await openHarness(page);
  const r = await page.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    await dw.create({ path: 'opfs:/sync/disk.img', format: 'raw', size: 8 << 20 });
    const disk = await dw.open({ path: 'opfs:/sync/disk.img' });
    await disk.write(0, h.pattern(1, 3 << 20));
    const sab = await disk.syncChannel(256 * 1024);
    const worker = h.syncReader();
    const results = await new Promise<Array<{ data?: Uint8Array; error?: { code: string; message: string } }>>((resolve) => {
      worker.onmessage = (ev) => resolve(ev.data);
      worker.postMessage({
        sab,
        ops: [
          { op: 'read', offset: 1000, length: 1_000_000 }, // larger than the channel: split
          { op: 'write', offset: 5 << 20, data: h.pattern(2, 300_000) },
          { op: 'flush', offset: 0 },
          { op: 'read', offset: 5 << 20, length: 300_000 },
          { op: 'read', offset: (8 << 20) - 10, length: 100 }, // past the end
        ],
      });
    });
    worker.terminate();
    const pageView = await disk.read(5 << 20, 300_000);
    await disk.close();
    return {
      read1: h.diff(results[0]!.data!, h.pattern(1, 1_000_000, 1000)),
      write: results[1]!.error ?? null,
      read2: h.diff(results[3]!.data!, h.pattern(2, 300_000)),
      pageView: h.diff(pageView, h.pattern(2, 300_000)),
      pastEnd: results[4]!.error ?? null,
    };
  });
  expect(r.read1).toBe(-1);
  expect(r.write).toBeNull();
  expect(r.read2).toBe(-1);
  expect(r.pageView).toBe(-1);
  expect(r.pastEnd?.code).toBe('EIO');
});

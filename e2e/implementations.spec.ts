/**
 * The worker in real Chromium runs the WASM paths README's "Which implementation runs
 * where" table promises for browsers (every module loads from the built assets), and
 * those paths give the right answers: a fully written qcow2 maps as one data extent
 * (long L2 runs are counted in WASM), detect-zeroes=unmap turns a zero write into a
 * zero extent, and the bytes read back.
 */
import { test, expect } from '@playwright/test';
import { openHarness } from './helpers.js';

test('the worker uses the WASM implementations, and they answer correctly', async ({ page }) => {
  await openHarness(page);
  const r = await page.evaluate(async () => {
    const dw = await window.harness.start();
    const MiB = 1 << 20;
    await dw.create({ path: 'opfs:/impl/a.qcow2', size: 64 * MiB });
    const disk = await dw.open({ path: 'opfs:/impl/a.qcow2', options: { 'detect-zeroes': 'unmap', discard: 'unmap' } });
    const chunk = new Uint8Array(MiB);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7 + 1) & 0xff;
    // write() transfers its buffer: send a copy each time.
    for (let off = 0; off < 48 * MiB; off += MiB) await disk.write(off, chunk.slice());
    // A zero write: detect-zeroes turns it into a zero-write with unmap.
    await disk.write(8 * MiB, new Uint8Array(MiB));
    await disk.flush();
    const map = await disk.map();
    const back = await disk.read(47 * MiB, MiB);
    const zeros = await disk.read(8 * MiB, MiB);
    await disk.close();
    const impl = await dw.implementations();
    return {
      impl,
      map: map.map((e) => [e.offset / MiB, e.length / MiB, e.data, e.zero]),
      backOk: back.every((v, i) => v === ((i * 7 + 1) & 0xff)),
      zerosOk: zeros.every((v) => v === 0),
    };
  });
  expect(r.impl).toEqual({
    inflate: 'wasm',
    deflate: 'wasm',
    zstd: 'wasm',
    l2: 'wasm',
    refcount: 'wasm',
    copyZeroCheck: 'wasm',
    detectZeroes: 'wasm',
    bitmap: 'wasm',
    aes: 'wasm',
    serpent: 'wasm',
    twofish: 'wasm',
    cast5: 'wasm',
  });
  expect(r.map).toEqual([
    [0, 8, true, false],
    [8, 1, false, true],
    [9, 39, true, false],
    [48, 16, false, true],
  ]);
  expect(r.backOk).toBe(true);
  expect(r.zerosOk).toBe(true);
});

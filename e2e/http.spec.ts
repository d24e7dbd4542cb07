/**
 * http back end (Range requests, errors for servers that ignore Range or
 * compress), blob import, and a qcow2 overlay in OPFS over an http base.
 */
import { test, expect } from '@playwright/test';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { openHarness, fixturesDir } from './helpers.js';

const sha = (p: string) => crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');

test('a raw image over HTTP reads byte-exact through Range requests', async ({ page }) => {
  await openHarness(page);
  const r = await page.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    const url = `${location.origin}/fixtures/base.raw`;
    const disk = await dw.open({ path: url, format: 'raw', readOnly: true });
    const bad: number[] = [];
    for (const [off, len] of [[0, 4096], [123_457, 300_000], [(4 << 20) - 512, 512], [1 << 20, 2 << 20]] as const) {
      if (h.diff(await disk.read(off, len), h.pattern(7, len, off)) !== -1) bad.push(off);
    }
    let writeErr = null;
    try {
      await disk.write(0, new Uint8Array(512));
    } catch (e) {
      writeErr = h.describeError(e);
    }
    const len = disk.length;
    await disk.close();
    let rwErr = null;
    try {
      await dw.open({ path: url, format: 'raw' });
    } catch (e) {
      rwErr = h.describeError(e);
    }
    return { bad, len, writeErr, rwErr };
  });
  expect(r.bad).toEqual([]);
  expect(r.len).toBe(4 << 20);
  expect(r.writeErr?.code).toBeTruthy();
  expect(r.rwErr?.code).toBe('EROFS');
});

test('a server that ignores Range or compresses gives a clear error', async ({ page }) => {
  await openHarness(page);
  const r = await page.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    const errs: Record<string, { code?: string; message: string } | null> = {};
    for (const kind of ['norange', 'gzip']) {
      try {
        const disk = await dw.open({ path: `${location.origin}/${kind}/base.raw`, format: 'raw', readOnly: true });
        await disk.read(0, 4096);
        errs[kind] = null;
      } catch (e) {
        errs[kind] = h.describeError(e);
      }
    }
    return errs;
  });
  expect(r.norange?.code).toBe('EIO');
  expect(r.norange?.message).toContain('ignores Range');
  expect(r.gzip?.code).toBe('EIO');
  expect(r.gzip?.message).toContain('Content-Encoding');
});

test('a Blob imports into OPFS and IndexedDB', async ({ page }) => {
  await openHarness(page);
  const r = await page.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    const data = h.pattern(21, 3 * 1024 * 1024 + 512);
    const file = new File([data as BlobPart], 'picked.img');
    const progress: number[] = [];
    const out: Record<string, boolean> = {};
    for (const to of ['opfs:/import/picked.img', 'idb:picked.img']) {
      await dw.importFile(file, { to }, { onProgress: (p) => progress.push(p.done / p.total) });
      const disk = await dw.open({ path: to, format: 'raw', readOnly: true });
      out[to] = disk.length === data.length && h.diff(await disk.read(0, data.length), data) === -1;
      await disk.close();
    }
    const ac = new AbortController();
    ac.abort();
    let cancelled = '';
    try {
      await dw.importFile(file, { to: 'opfs:/import/cancelled.img' }, { signal: ac.signal });
    } catch (e) {
      cancelled = h.describeError(e).code ?? '';
    }
    return { out, lastProgress: progress[progress.length - 1], cancelled };
  });
  expect(r.out).toEqual({ 'opfs:/import/picked.img': true, 'idb:picked.img': true });
  expect(r.lastProgress).toBe(1);
  expect(r.cancelled).toBe('ECANCELED');
});

test('a qcow2 overlay in OPFS over a raw base on the web server', async ({ page }) => {
  await openHarness(page);
  const base = path.join(fixturesDir, 'base.raw');
  const before = sha(base);
  const r = await page.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    const url = `${location.origin}/fixtures/base.raw`;
    const path = 'opfs:/overlay/over.qcow2';
    let refused = '';
    await dw.create({ path, format: 'qcow2', size: 4 << 20, backingFile: url, backingFormat: 'raw' });
    try {
      await dw.open({ path });
    } catch (e) {
      refused = h.describeError(e).code ?? '';
    }
    const disk = await dw.open({ path, allowBackingProtocols: ['http'] });
    const fromBase = h.diff(await disk.read(0, 1 << 20), h.pattern(7, 1 << 20)) === -1;
    await disk.write(1 << 20, h.pattern(99, 65536));
    await disk.write(3 << 20, h.pattern(98, 1000));
    await disk.flush();
    await disk.close();
    const again = await dw.open({ path, allowBackingProtocols: ['http'] });
    const mine = h.diff(await again.read(1 << 20, 65536), h.pattern(99, 65536)) === -1;
    const expectMixed = h.pattern(7, 65536, 3 << 20);
    expectMixed.set(h.pattern(98, 1000), 0);
    const mixed = h.diff(await again.read(3 << 20, 65536), expectMixed) === -1;
    const stillBase = h.diff(await again.read(2 << 20, 65536), h.pattern(7, 65536, 2 << 20)) === -1;
    const map = await again.map();
    await again.close();
    const info = await dw.info(path);
    const hostSize = info.actualSize;
    return { refused, fromBase, mine, mixed, stillBase, allocated: map.filter((e) => e.allocated).map((e) => [e.offset, e.length]), info, hostSize };
  });
  expect(r.refused).toBe('EACCES');
  expect(r.fromBase).toBe(true);
  expect(r.mine).toBe(true);
  expect(r.mixed).toBe(true);
  expect(r.stillBase).toBe(true);
  expect(r.info.backingFile).toContain('/fixtures/base.raw');
  expect(r.hostSize).toBeLessThan(1 << 20);
  expect(sha(base)).toBe(before);
});

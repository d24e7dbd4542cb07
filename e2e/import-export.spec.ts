/**
 * Import and export: a qemu-img-made qcow2 (compressed clusters, a backing
 * file) reads byte-exact after import; an image written in the browser is
 * exported as a download stream and checked with qemu-img / qemu-io.
 */
import { test, expect } from '@playwright/test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openHarness, imageFormat, sh } from './helpers.js';

test('a qemu-img qcow2 with compressed clusters and a backing file imports byte-exact', async ({ page }) => {
  await openHarness(page);
  const r = await page.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    const get = async (n: string) => new File([await (await fetch(`/fixtures/${n}`)).blob()], n);
    // "Picked files": imported unchanged, the overlay keeps its relative backing name.
    await dw.importFile(await get('qbase.qcow2'), { to: 'opfs:/imp/qbase.qcow2' });
    await dw.importFile(await get('qover.qcow2'), { to: 'opfs:/imp/qover.qcow2' });
    const expected = new Uint8Array(await (await fetch('/fixtures/qover.expected.raw')).arrayBuffer());
    const disk = await dw.open({ path: 'opfs:/imp/qover.qcow2', readOnly: true });
    const got = await disk.read(0, disk.length);
    await disk.close();
    const info = await dw.info('opfs:/imp/qover.qcow2');
    // Converted on import: the overlay alone from its blob cannot reach its backing
    // file, so convert the base into a fresh qcow2 and compare with the base's bytes.
    await dw.importFile(await get('qbase.qcow2'), { to: 'opfs:/imp/converted.qcow2', format: 'qcow2' });
    const conv = await dw.open({ path: 'opfs:/imp/converted.qcow2', readOnly: true });
    const convBytes = await conv.read(0, conv.length);
    await conv.close();
    const base = await dw.open({ path: 'opfs:/imp/qbase.qcow2', readOnly: true });
    const baseBytes = await base.read(0, base.length);
    await base.close();
    const check = await dw.check('opfs:/imp/converted.qcow2');
    return { diff: h.diff(got, expected), len: got.length, info, convDiff: h.diff(convBytes, baseBytes), check };
  });
  expect(r.len).toBe(8 << 20);
  expect(r.diff).toBe(-1);
  expect(r.info.format).toBe('qcow2');
  expect(r.info.backingFile).toBe('qbase.qcow2');
  expect(r.convDiff).toBe(-1);
  expect(r.check.corruptions + r.check.leaks + r.check.checkErrors).toBe(0);
});

test('an image written in the browser exports as a download that qemu-img checks and qemu-io reads', async ({ page }) => {
  await openHarness(page);
  const format = await imageFormat(page);
  const writes: Array<[number, number, number]> = [
    [0, 65536, 0x5a],
    [1 << 20, 3 * 65536, 0xa5],
    [(16 << 20) - 4096, 4096, 0x3c],
    [7 * 65536 + 512, 1024, 0x77],
  ];
  const downloadPromise = page.waitForEvent('download');
  await page.evaluate(
    async ({ format, writes }) => {
      const h = window.harness;
      const dw = await h.start();
      const p = `opfs:/export/disk.${format}`;
      await dw.create({ path: p, format: format as 'qcow2' | 'raw', size: 16 << 20 });
      const disk = await dw.open({ path: p });
      for (const [off, len, byte] of writes) await disk.write(off, new Uint8Array(len).fill(byte));
      await disk.close();
      const stream = await dw.exportStream(p);
      const blob = await new Response(stream).blob();
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = `disk.${format}`;
      document.body.append(a);
      a.click();
    },
    { format, writes },
  );
  const download = await downloadPromise;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-export-'));
  const file = path.join(dir, `disk.${format}`);
  await download.saveAs(file);
  try {
    if (format === 'qcow2') {
      const out = sh('qemu-img', ['check', '--output=json', file]);
      const j = JSON.parse(out) as { corruptions?: number; leaks?: number; 'check-errors'?: number };
      expect(j.corruptions ?? 0).toBe(0);
      expect(j.leaks ?? 0).toBe(0);
      expect(j['check-errors'] ?? 0).toBe(0);
    }
    for (const [off, len, byte] of writes) {
      const out = sh('qemu-io', ['-f', format, '-r', '-c', `read -P 0x${byte.toString(16)} ${off} ${len}`, file]);
      expect(out).not.toContain('Pattern verification failed');
      expect(out).toContain(`read ${len}/${len} bytes`);
    }
    const zeros = sh('qemu-io', ['-f', format, '-r', '-c', `read -P 0 ${4 << 20} 65536`, file]);
    expect(zeros).not.toContain('Pattern verification failed');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('export as the guest view (raw) and as a converted qcow2; convert with progress and cancellation', async ({ page }) => {
  await openHarness(page);
  const downloadPromise = page.waitForEvent('download');
  const r = await page.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    await dw.create({ path: 'opfs:/exp2/src.qcow2', format: 'qcow2', size: 8 << 20 });
    const disk = await dw.open({ path: 'opfs:/exp2/src.qcow2' });
    await disk.write(3 << 20, h.pattern(61, 1 << 20));
    const status = await disk.blockStatus(3 << 20, 1 << 20);
    const stats = await disk.stats();
    await disk.close();
    // The guest view of a qcow2, streamed.
    const rawView = new Uint8Array(await new Response(await dw.exportStream('opfs:/exp2/src.qcow2', { format: 'raw' })).arrayBuffer());
    const expected = new Uint8Array(8 << 20);
    expected.set(h.pattern(61, 1 << 20), 3 << 20);
    // Convert with progress, then cancel one midway.
    const progress: number[] = [];
    await dw.convert({ from: 'opfs:/exp2/src.qcow2', to: 'idb:exp2-copy', format: 'raw' }, { onProgress: (p) => progress.push(p.done) });
    const copy = await dw.open({ path: 'idb:exp2-copy', format: 'raw', readOnly: true });
    const copyOk = h.diff(await copy.read(0, 8 << 20), expected) === -1;
    await copy.close();
    await dw.create({ path: 'opfs:/exp2/big.raw', format: 'raw', size: 64 << 20 });
    const big = await dw.open({ path: 'opfs:/exp2/big.raw', format: 'raw' });
    for (let i = 0; i < 64; i++) await big.write(i << 20, h.pattern(i, 1 << 20));
    await big.close();
    const ac = new AbortController();
    let cancelled = '';
    try {
      await dw.convert(
        { from: 'opfs:/exp2/big.raw', fromFormat: 'raw', to: 'opfs:/exp2/big-copy.qcow2', format: 'qcow2' },
        { signal: ac.signal, onProgress: (p) => p.done >= 8 << 20 && ac.abort() },
      );
    } catch (e) {
      cancelled = h.describeError(e).code ?? '';
    }
    // A raw image exported as qcow2 (converted through a temporary OPFS file).
    const q = await new Response(await dw.exportStream('opfs:/exp2/big.raw', { format: 'qcow2' })).blob();
    const a = document.createElement('a');
    a.href = URL.createObjectURL(q);
    a.download = 'big.qcow2';
    document.body.append(a);
    a.click();
    const leftovers = (await dw.list('opfs')).filter((e) => e.path.includes('.diskworker-tmp'));
    return {
      rawViewDiff: h.diff(rawView, expected),
      allocated: (status.status & 0x08) !== 0,
      writes: stats.write.ops,
      progressEnd: progress[progress.length - 1],
      copyOk,
      cancelled,
      leftovers: leftovers.length,
    };
  });
  expect(r.rawViewDiff).toBe(-1);
  expect(r.allocated).toBe(true);
  expect(r.writes).toBe(1);
  expect(r.progressEnd).toBe(8 << 20);
  expect(r.copyOk).toBe(true);
  expect(r.cancelled).toBe('ECANCELED');
  expect(r.leftovers).toBe(0);
  const download = await downloadPromise;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-export2-'));
  const file = path.join(dir, 'big.qcow2');
  await download.saveAs(file);
  try {
    const j = JSON.parse(sh('qemu-img', ['check', '--output=json', file])) as { corruptions?: number; leaks?: number };
    expect(j.corruptions ?? 0).toBe(0);
    expect(j.leaks ?? 0).toBe(0);
    // Byte-exact against the same pattern written here (harness pattern(i) in MiB i).
    const raw = Buffer.alloc(64 << 20);
    for (let i = 0; i < 64; i++) {
      for (let k = 0; k < 1 << 20; k++) raw[(i << 20) + k] = (k * 31 + i * 17 + (k >>> 8) * 7 + (k >>> 16) * 13) & 0xff;
    }
    fs.writeFileSync(path.join(dir, 'expected.raw'), raw);
    expect(sh('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', file, path.join(dir, 'expected.raw')])).toContain('Images are identical');
    const info = JSON.parse(sh('qemu-img', ['info', '--output=json', file])) as { 'virtual-size': number; format: string };
    expect(info.format).toBe('qcow2');
    expect(info['virtual-size']).toBe(64 << 20);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('export as qcow2 with compressed clusters (qemu-img convert -c) that qemu-img reads', async ({ page }) => {
  await openHarness(page);
  const downloadPromise = page.waitForEvent('download');
  await page.evaluate(async () => {
    const dw = await window.harness.start();
    await dw.create({ path: 'opfs:/exp3/src.qcow2', format: 'qcow2', size: 4 << 20 });
    const disk = await dw.open({ path: 'opfs:/exp3/src.qcow2' });
    const text = new TextEncoder().encode('DiskWorker writes compressed clusters. '.repeat(27000)).subarray(0, 1 << 20);
    await disk.write(1 << 20, text);
    await disk.close();
    const stream = await dw.exportStream('opfs:/exp3/src.qcow2', { format: 'qcow2', compress: true });
    const a = document.createElement('a');
    a.href = URL.createObjectURL(await new Response(stream).blob());
    a.download = 'compressed.qcow2';
    document.body.append(a);
    a.click();
  });
  const download = await downloadPromise;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-export3-'));
  const file = path.join(dir, 'compressed.qcow2');
  await download.saveAs(file);
  try {
    const j = JSON.parse(sh('qemu-img', ['check', '--output=json', file])) as { corruptions?: number; leaks?: number; 'compressed-clusters'?: number };
    expect(j.corruptions ?? 0).toBe(0);
    expect(j.leaks ?? 0).toBe(0);
    expect(j['compressed-clusters']).toBe(16);
    const expected = Buffer.alloc(4 << 20);
    Buffer.from('DiskWorker writes compressed clusters. '.repeat(27000)).copy(expected, 1 << 20, 0, 1 << 20);
    fs.writeFileSync(path.join(dir, 'expected.raw'), expected);
    expect(sh('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', file, path.join(dir, 'expected.raw')])).toContain('Images are identical');
    expect(fs.statSync(file).size).toBeLessThan(400 << 10);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

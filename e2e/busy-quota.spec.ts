/**
 * Exclusive access (a second writer gets EBUSY) and quota exhaustion (ENOSPC,
 * the image stays consistent).
 */
import { test, expect } from '@playwright/test';
import { openHarness, imageFormat } from './helpers.js';

test('two pages open the same image for writing: the second gets EBUSY', async ({ context }) => {
  const p1 = await context.newPage();
  const p2 = await context.newPage();
  await openHarness(p1);
  await openHarness(p2);
  const format = await imageFormat(p1);
  await p1.evaluate(async (format) => {
    const h = window.harness;
    const dw = await h.start();
    for (const path of ['opfs:/busy/disk.img', 'idb:busy-disk']) {
      await dw.create({ path, format, size: 8 << 20 });
      (window as unknown as { held: unknown[] }).held ??= [];
      (window as unknown as { held: unknown[] }).held.push(await dw.open({ path }));
    }
  }, format);
  const r = await p2.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    const out: Record<string, { code?: string; message: string } | null> = {};
    for (const path of ['opfs:/busy/disk.img', 'idb:busy-disk']) {
      try {
        const d = await dw.open({ path });
        await d.close();
        out[path] = null;
      } catch (e) {
        out[path] = h.describeError(e);
      }
    }
    return out;
  });
  for (const path of ['opfs:/busy/disk.img', 'idb:busy-disk']) {
    expect(r[path]?.code, path).toBe('EBUSY');
    expect(r[path]?.message, path).toContain('in use');
  }
  // Once the first page closes its disks, the second page can open them.
  await p1.evaluate(async () => {
    for (const d of (window as unknown as { held: Array<{ close(): Promise<void> }> }).held) await d.close();
  });
  const after = await p2.evaluate(async () => {
    const dw = await window.harness.start();
    const d = await dw.open({ path: 'opfs:/busy/disk.img' });
    await d.close();
    const i = await dw.open({ path: 'idb:busy-disk' });
    await i.close();
    return 'ok';
  });
  expect(after).toBe('ok');
});

test('read-only opens of an OPFS image share it across pages (where the browser has read-only handles)', async ({ context }) => {
  const p1 = await context.newPage();
  const p2 = await context.newPage();
  await openHarness(p1);
  await openHarness(p2);
  const format = await imageFormat(p1);
  await p1.evaluate(async (format) => {
    const h = window.harness;
    const dw = await h.start();
    await dw.create({ path: 'opfs:/shared/ro.img', format, size: 8 << 20 });
    const d = await dw.open({ path: 'opfs:/shared/ro.img' });
    await d.write(0, h.pattern(9, 4096));
    await d.close();
    (window as unknown as { ro: unknown }).ro = await dw.open({ path: 'opfs:/shared/ro.img', readOnly: true });
  }, format);
  const r = await p2.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    const d = await dw.open({ path: 'opfs:/shared/ro.img', readOnly: true });
    const ok = h.diff(await d.read(0, 4096), h.pattern(9, 4096)) === -1;
    await d.close();
    let writer = null;
    try {
      const w = await dw.open({ path: 'opfs:/shared/ro.img' });
      await w.close();
    } catch (e) {
      writer = h.describeError(e);
    }
    return { ok, writer };
  });
  expect(r.ok).toBe(true);
  // A writer is refused while a reader holds the image.
  expect(r.writer?.code).toBe('EBUSY');
});

test('a raw image larger than the quota: create fails with ENOSPC', async ({ page }) => {
  await openHarness(page);
  const r = await page.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    await h.setTestQuota(4 << 20);
    try {
      await dw.create({ path: 'opfs:/quota/big.raw', format: 'raw', size: 64 << 20 });
      return null;
    } catch (e) {
      return h.describeError(e);
    } finally {
      await h.setTestQuota(undefined);
    }
  });
  expect(r?.code).toBe('ENOSPC');
});

test('quota exhausted: ENOSPC, the written data stays, the image checks clean', async ({ page }) => {
  await openHarness(page);
  const format = await imageFormat(page);
  const r = await page.evaluate(async (format) => {
    const h = window.harness;
    const dw = await h.start();
    const path = 'opfs:/quota/disk.img';
    await dw.create({ path, format, size: 64 << 20 });
    const disk = await dw.open({ path });
    await h.setTestQuota(3 << 20);
    let written = 0;
    let err: { code?: string; message: string } | null = null;
    for (let i = 0; i < 16; i++) {
      try {
        await disk.write(i << 20, h.pattern(i + 40, 1 << 20));
        written = i + 1;
      } catch (e) {
        err = h.describeError(e);
        break;
      }
    }
    await h.setTestQuota(undefined);
    // The close flushes; a failing flush is reported but the image must stay consistent.
    await disk.close().catch(() => undefined);
    const check = format === 'qcow2' ? await dw.check(path) : null;
    const again = await dw.open({ path });
    const bad: number[] = [];
    for (let i = 0; i < written; i++) if (h.diff(await again.read(i << 20, 1 << 20), h.pattern(i + 40, 1 << 20)) !== -1) bad.push(i);
    await again.close();
    const storage = await dw.storage();
    return { written, err, check, bad, storage };
  }, format);
  expect(r.err?.code).toBe('ENOSPC');
  expect(r.err?.message).toContain('quota');
  expect(r.written).toBeGreaterThan(0);
  expect(r.bad).toEqual([]);
  if (r.check) {
    expect(r.check.corruptions).toBe(0);
    expect(r.check.checkErrors).toBe(0);
  }
  expect(typeof r.storage.quota).toBe('number');
});

test('quota exhausted during an import and a convert: ENOSPC to the caller, targets consistent, sources intact', async ({ page }) => {
  await openHarness(page);
  const r = await page.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    // 6 MiB of incompressible data, as a picked file and as an OPFS image.
    const data = new Uint8Array(6 << 20);
    for (let i = 0; i < 6; i++) data.set(h.pattern(i + 70, 1 << 20), i << 20);
    const file = new Blob([data]);
    await dw.create({ path: 'opfs:/quota2/src.raw', format: 'raw', size: data.length });
    const src = await dw.open({ path: 'opfs:/quota2/src.raw' });
    await src.write(0, data.slice());
    await src.close();
    const results: Record<string, { err: { code?: string; message: string } | null; check: { corruptions: number; checkErrors: number } | null }> = {};
    // The test quota counts the OPFS files open in the worker: the target, and for a
    // convert the 6 MiB source too. Either way about 3 MiB of room is left for the target.
    const jobs: Array<[string, () => Promise<void>]> = [
      ['import qcow2', () => dw.importFile(file, { to: 'opfs:/quota2/imported.qcow2', format: 'qcow2' })],
      ['import copy', () => dw.importFile(file, { to: 'opfs:/quota2/imported.raw' })],
      ['convert qcow2', () => dw.convert({ from: 'opfs:/quota2/src.raw', to: 'opfs:/quota2/converted.qcow2', format: 'qcow2' })],
      ['convert compressed', () => dw.convert({ from: 'opfs:/quota2/src.raw', to: 'opfs:/quota2/compressed.qcow2', format: 'qcow2', compress: true })],
    ];
    for (const [name, job] of jobs) {
      let err: { code?: string; message: string } | null = null;
      // The compressed copy is smaller than the data: leave it less room.
      await h.setTestQuota(name.startsWith('import') ? 3 << 20 : name === 'convert compressed' ? (6 << 20) + (256 << 10) : 9 << 20);
      try {
        await job();
      } catch (e) {
        err = h.describeError(e);
      }
      const target = name === 'import qcow2' ? 'opfs:/quota2/imported.qcow2' : name === 'import copy' ? 'opfs:/quota2/imported.raw' : name === 'convert qcow2' ? 'opfs:/quota2/converted.qcow2' : 'opfs:/quota2/compressed.qcow2';
      await h.setTestQuota(undefined);
      const check = target.endsWith('.qcow2') ? await dw.check(target) : null;
      results[name] = { err, check: check ? { corruptions: check.corruptions, checkErrors: check.checkErrors } : null };
      await dw.remove(target).catch(() => undefined);
    }
    await h.setTestQuota(undefined);
    const again = await dw.open({ path: 'opfs:/quota2/src.raw', readOnly: true });
    const intact = h.diff(await again.read(0, data.length), data) === -1;
    await again.close();
    return { results, intact };
  });
  for (const [name, res] of Object.entries(r.results)) {
    expect(res.err?.code, name).toBe('ENOSPC');
    if (res.check) {
      expect(res.check.corruptions, name).toBe(0);
      expect(res.check.checkErrors, name).toBe(0);
    }
  }
  expect(r.intact).toBe(true);
});

test('werror=enospc: a full quota pauses the disk (event and status), flush fails, resume after space is freed completes the write', async ({ page }) => {
  await openHarness(page);
  const r = await page.evaluate(async () => {
    const h = window.harness;
    const dw = await h.start();
    const path = 'opfs:/quota3/disk.qcow2';
    await dw.create({ path, format: 'qcow2', size: 64 << 20 });
    const disk = await dw.open({ path, werror: 'enospc' });
    const events: Array<{ operation: string; code?: string }> = [];
    await disk.onStop((e) => events.push({ operation: e.operation, code: e.error.code }));
    await h.setTestQuota(1 << 20);
    let settled = false;
    const write = disk.write(0, h.pattern(91, 2 << 20)).then(() => (settled = true));
    for (let i = 0; i < 100 && events.length === 0; i++) await new Promise((res) => setTimeout(res, 20));
    const stopped = await disk.stoppedBy();
    const flushErr = await disk.flush().then(
      () => null,
      (e: unknown) => h.describeError(e),
    );
    const settledWhileStopped = settled;
    await h.setTestQuota(undefined);
    await disk.resume();
    await write;
    const after = await disk.stoppedBy();
    const ok = h.diff(await disk.read(0, 2 << 20), h.pattern(91, 2 << 20)) === -1;
    await disk.close();
    const check = await dw.check(path);
    return { events, stoppedCode: stopped?.code, flushErr, settledWhileStopped, after, ok, corruptions: check.corruptions };
  });
  expect(r.events).toEqual([{ operation: 'write', code: 'ENOSPC' }]);
  expect(r.stoppedCode).toBe('ENOSPC');
  expect(r.flushErr?.code).toBe('ENOSPC');
  expect(r.settledWhileStopped).toBe(false);
  expect(r.after).toBeNull();
  expect(r.ok).toBe(true);
  expect(r.corruptions).toBe(0);
});

/**
 * The page's `disk.bitmaps` (src/client/bitmaps.ts) over the worker's
 * DiskService (wired directly here instead of through postMessage), on a
 * qcow2 file qemu-img created: add / list / dirtyExtents / merge / clear /
 * enable / disable / remove against a per-granule model, QEMU's errors, and
 * after close QEMU's view of the stored bitmap (qemu-img info, qemu-img
 * check, and the extents qemu-nbd exports) equals what the page listed.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { releaseProxy, type Remote } from 'comlink';
import { Disk, type BitmapInfo } from '../../src/client/index.js';
import type { DiskApi } from '../../src/client/api.js';
import { DiskService } from '../../workers/disk-service.js';
import { BlockBackend } from '../../src/core/backend.js';
import { BlockError } from '../../src/core/errors.js';
import { fileGraph, prng, qemuCheck, qemuImg, tempDir } from '../formats/qcow2/helpers.js';
import { GranuleModel, infoBitmaps, qemuDirtyExtents } from '../formats/qcow2/bitmap-persist.js';

const t = tempDir();
afterAll(() => t.cleanup());

async function pageDisk(file: string, format = 'qcow2', readOnly = false, forceShare = false): Promise<Disk> {
  // discard=unmap: discards reach the image and mark the bitmaps (ignored ones do not, as in QEMU).
  // forceShare: a look at an image another disk of this process writes (its locks refuse a plain open, as QEMU's).
  const spec = { driver: format, discard: 'unmap', file: { filename: file }, ...(forceShare ? { 'force-share': true } : {}) };
  const bb = await BlockBackend.open(fileGraph(), spec, { readOnly });
  const service = new DiskService(bb, file, () => undefined);
  // What Comlink's proxy has on top of the service.
  Object.assign(service, { [releaseProxy]: () => undefined });
  return new Disk(service as unknown as Remote<DiskApi>, file, bb.length, bb.readOnly, format);
}

async function extents(disk: Disk, name: string, opts = {}): Promise<[number, number][]> {
  const out: [number, number][] = [];
  for await (const e of disk.bitmaps.dirtyExtents(name, opts)) out.push(e);
  return out;
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (!(e instanceof BlockError)) throw e;
    return `${e.code}: ${e.message}`;
  }
}

const SIZE = 32 << 20;

describe('disk.bitmaps', () => {
  it('tracks a seeded workload like a per-granule model, and QEMU reads the stored bitmap back the same', async () => {
    const file = t.path('a.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', file, String(SIZE));
    const disk = await pageDisk(file);
    await disk.bitmaps.add('p', { persistent: true, granularity: 4096 });
    await disk.bitmaps.add('t', { granularity: 65536 });
    await disk.bitmaps.add('off', { disabled: true, persistent: true });
    const models = { p: new GranuleModel(SIZE, 4096), t: new GranuleModel(SIZE, 65536) };
    const r = prng(42);
    for (let i = 0; i < 60; i++) {
      const off = Math.floor(r() * SIZE);
      const len = Math.min(SIZE - off, 1 + Math.floor(r() * 200000));
      const k = r();
      if (k < 0.6) await disk.write(off, new Uint8Array(len).fill(i + 1));
      else if (k < 0.8) await disk.writeZeroes(off, len, r() < 0.5);
      else await disk.discard(off, len);
      models.p.mark(off, len);
      models.t.mark(off, len);
    }
    const list = await disk.bitmaps.list();
    const byName = new Map(list.map((b) => [b.name, b]));
    const sum = (xs: [number, number][]) => xs.reduce((s, [, n]) => s + n, 0);
    expect(byName.get('p')).toEqual<BitmapInfo>({ name: 'p', granularity: 4096, count: sum(models.p.extents()), recording: true, busy: false, persistent: true, inconsistent: false });
    expect(byName.get('t')).toMatchObject({ granularity: 65536, count: sum(models.t.extents()), persistent: false, recording: true });
    expect(byName.get('off')).toMatchObject({ granularity: 65536, count: 0, persistent: true, recording: false });
    // Paged in small pages, and split at maxLength: the same extents.
    const pExt = await extents(disk, 'p', { pageSize: 3 });
    expect(pExt).toEqual(models.p.extents());
    expect(pExt.length).toBeGreaterThan(10);
    const split = await extents(disk, 'p', { maxLength: 8192 });
    expect(split.every(([, n]) => n <= 8192)).toBe(true);
    expect(sum(split)).toBe(sum(pExt));
    // A sub-range, clipped to it.
    const sub = await extents(disk, 'p', { offset: 4 << 20, bytes: 4 << 20 });
    expect(sub.every(([o, n]) => o >= 4 << 20 && o + n <= 8 << 20)).toBe(true);
    // merge t into off, then clear t; disable / enable.
    await disk.bitmaps.merge('off', ['t']);
    expect(await extents(disk, 'off')).toEqual(models.t.extents());
    await disk.bitmaps.clear('t');
    expect(await extents(disk, 't')).toEqual([]);
    await disk.bitmaps.disable('p');
    await disk.write(SIZE - 4096, new Uint8Array(4096).fill(9));
    expect(await extents(disk, 'p')).toEqual(models.p.extents());
    await disk.bitmaps.enable('p');
    await disk.bitmaps.remove('t');
    expect((await disk.bitmaps.list()).map((b) => b.name)).toEqual(['p', 'off']);
    const pFinal = await extents(disk, 'p');
    const offFinal = await extents(disk, 'off');
    await disk.close();

    // QEMU's view: both persistent bitmaps with their flags, a clean image, the same extents.
    expect(infoBitmaps(file)).toEqual([
      { flags: ['auto'], name: 'p', granularity: 4096 },
      { flags: [], name: 'off', granularity: 65536 },
    ]);
    const chk = qemuCheck(file);
    expect([chk['check-errors'], chk.corruptions ?? 0, chk.leaks ?? 0]).toEqual([0, 0, 0]);
    expect(await qemuDirtyExtents(file, 'p', `${file}.sock`)).toEqual(pFinal);
    expect(await qemuDirtyExtents(file, 'off', `${file}.sock2`)).toEqual(offFinal);

    // Reopened: loaded from the image with the same state and extents.
    const again = await pageDisk(file);
    expect((await again.bitmaps.list()).map((b) => [b.name, b.persistent, b.recording, b.inconsistent, b.count])).toEqual([
      ['p', true, true, false, sum(pFinal)],
      ['off', true, false, false, sum(offFinal)],
    ]);
    expect(await extents(again, 'p')).toEqual(pFinal);
    // A persistent bitmap leaves the image at once (QEMU's remove), before the close.
    await again.bitmaps.remove('off');
    expect(infoBitmaps(file)).toEqual([{ flags: ['in-use', 'auto'], name: 'p', granularity: 4096 }]);
    await again.close();
    expect(infoBitmaps(file)).toEqual([{ flags: ['auto'], name: 'p', granularity: 4096 }]);
    const chk2 = qemuCheck(file);
    expect([chk2['check-errors'], chk2.corruptions ?? 0, chk2.leaks ?? 0]).toEqual([0, 0, 0]);
  });

  it('refuses what QEMU refuses, naming the bitmap; persistent needs a writable qcow2 v3', async () => {
    const file = t.path('e.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', file, '1M');
    const disk = await pageDisk(file);
    await disk.bitmaps.add('a');
    expect(await code(disk.bitmaps.add('a'))).toBe('EEXIST: Bitmap already exists: a');
    expect(await code(disk.bitmaps.add(''))).toBe('EINVAL: Bitmap name cannot be empty');
    expect(await code(disk.bitmaps.add('g', { granularity: 1000 }))).toBe('EINVAL: Granularity must be power of 2 and at least 512');
    expect(await code(disk.bitmaps.remove('nope'))).toBe("ENOENT: Dirty bitmap 'nope' not found");
    expect(await code(disk.bitmaps.merge('a', ['nope']))).toBe("ENOENT: Dirty bitmap 'nope' not found");
    expect(await code(disk.bitmaps.clear('nope'))).toBe("ENOENT: Dirty bitmap 'nope' not found");
    expect(await code(extents(disk, 'a', { pageSize: 0 }))).toMatch(/^EINVAL: Bitmap 'a': extents per page must be 1\.\.65536, got 0$/);
    expect(await code(extents(disk, 'a', { offset: 1 << 20, bytes: 1 }))).toMatch(/^EINVAL: Bitmap 'a': range 1048576\+1 is outside its 1048576 bytes$/);
    expect(await code(extents(disk, 'a', { maxLength: -1 }))).toMatch(/maximum extent length must be a positive integer, got -1/);
    await disk.close();

    const ro = await pageDisk(file, 'qcow2', true);
    expect(await code(ro.bitmaps.add('p', { persistent: true }))).toMatch(/^EPERM: Can't make bitmap 'p' persistent in '.*': the image is open read-only$/);
    await ro.close();

    const v2 = t.path('v2.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', v2, '1M');
    const d2 = await pageDisk(v2);
    expect(await code(d2.bitmaps.add('p', { persistent: true }))).toMatch(/^EINVAL: Can't make bitmap 'p' persistent in '.*': Cannot store dirty bitmaps in qcow2 v2 files$/);
    await d2.close();

    const raw = t.path('r.img');
    qemuImg('create', '-q', '-f', 'raw', raw, '1M');
    const dr = await pageDisk(raw, 'raw');
    expect(await code(dr.bitmaps.add('p', { persistent: true }))).toMatch(/^ENOTSUP: Can't store persistent bitmaps to .*: Operation not supported$/);
    await dr.bitmaps.add('p');
    expect((await dr.bitmaps.list()).map((b) => b.name)).toEqual(['p']);
    await dr.close();
  });

  it('a bitmap found in use (its writer not closed) lists as inconsistent and its extents are refused; the writer stores it valid at its close', async () => {
    const file = t.path('i.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', file, '4M');
    qemuImg('bitmap', '--add', file, 'b');
    const first = await pageDisk(file);
    await first.write(0, new Uint8Array(65536).fill(1));
    // Dropped without a close (as a page reload drops the worker): the bitmap stays in use.
    const second = await pageDisk(file, 'qcow2', true, true);
    const l = await second.bitmaps.list();
    expect(l).toEqual([{ name: 'b', granularity: 65536, count: 0, recording: false, busy: false, persistent: true, inconsistent: true }]);
    expect(await code(extents(second, 'b'))).toMatch(/^EINVAL: Bitmap 'b' is inconsistent and cannot be used/);
    await second.close();
    expect(infoBitmaps(file)).toEqual([{ flags: ['in-use', 'auto'], name: 'b', granularity: 65536 }]);
    await first.close();
    // The first disk closed last and stored it (it still had it): valid again, the write marked.
    expect(infoBitmaps(file)).toEqual([{ flags: ['auto'], name: 'b', granularity: 65536 }]);
  });

  it('store() leaves the bitmaps valid in the image until the next write, which marks them in use again first', async () => {
    const file = t.path('k.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', file, String(SIZE));
    const disk = await pageDisk(file);
    await disk.bitmaps.add('k', { persistent: true, granularity: 4096 });
    await disk.write(1 << 20, new Uint8Array(10000).fill(3));
    await disk.write(20 << 20, new Uint8Array(4096).fill(4));
    const want = await extents(disk, 'k');
    expect(want).toEqual([[1 << 20, 12288], [20 << 20, 4096]]);
    await disk.bitmaps.store();
    // As a page that goes away now would leave it: valid, with the extents (QEMU's view too).
    expect(infoBitmaps(file)).toEqual([{ flags: ['auto'], name: 'k', granularity: 4096 }]);
    expect(await qemuDirtyExtents(file, 'k', `${file}.sock`)).toEqual(want);
    // -U: the disk still has the image open for writing (QEMU sees its locks).
    const chk = qemuCheck(file, true);
    expect([chk['check-errors'], chk.corruptions ?? 0, chk.leaks ?? 0]).toEqual([0, 0, 0]);
    const look = await pageDisk(file, 'qcow2', true, true);
    expect(await extents(look, 'k')).toEqual(want);
    await look.close();
    // The next write marks it in use before it lands.
    await disk.write(30 << 20, new Uint8Array(512).fill(5));
    expect(infoBitmaps(file)).toEqual([{ flags: ['in-use', 'auto'], name: 'k', granularity: 4096 }]);
    await disk.bitmaps.store();
    await disk.bitmaps.store();
    expect(await qemuDirtyExtents(file, 'k', `${file}.sock`)).toEqual([...want, [30 << 20, 4096]]);
    await disk.writeZeroes(0, 512);
    await disk.close();
    expect(infoBitmaps(file)).toEqual([{ flags: ['auto'], name: 'k', granularity: 4096 }]);
    expect(await qemuDirtyExtents(file, 'k', `${file}.sock`)).toEqual([[0, 4096], ...want, [30 << 20, 4096]]);
    const end = qemuCheck(file);
    expect([end['check-errors'], end.corruptions ?? 0, end.leaks ?? 0]).toEqual([0, 0, 0]);

    // Formats that store no bitmaps refuse it.
    const raw = t.path('k.img');
    qemuImg('create', '-q', '-f', 'raw', raw, '1M');
    const dr = await pageDisk(raw, 'raw');
    expect(await code(dr.bitmaps.store())).toMatch(/^ENOTSUP: Can't store persistent bitmaps to .*: Operation not supported$/);
    await dr.close();
  });
});

/**
 * Dirty bitmaps of a node: operations, states and errors (QEMU's messages),
 * iterators, merge and clear with undo, and the request path's marking
 * compared against a plain per-granule model under a seeded workload.
 */
import { describe, it, expect } from 'vitest';
import { BlockBackend } from '../../src/node.js';
import {
  addDirtyBitmap,
  clearDirtyBitmap,
  disableDirtyBitmap,
  enableDirtyBitmap,
  lookupDirtyBitmap,
  removeDirtyBitmap,
  type BdrvDirtyBitmap,
} from '../../src/core/dirty-bitmap.js';
import { expectBlockError, memoryGraph, prng } from './helpers.js';
import { memGraph } from '../formats/qcow2/helpers.js';
import { createImage } from '../../src/core/create.js';
import { isAllocatedAbove } from '../../src/node.js';

async function rawDisk(size: number, discard = true) {
  const { graph, storage } = memoryGraph();
  storage.create('d', size);
  const bb = await BlockBackend.open(graph, { driver: 'raw', ...(discard ? { discard: 'unmap' } : {}), file: { driver: 'memory', filename: 'd' } });
  return bb;
}

/** The extents of a per-granule boolean model, clipped to `size`. */
function modelExtents(model: boolean[], g: number, size: number): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < model.length; i++) {
    if (!model[i]) continue;
    let j = i;
    while (j < model.length && model[j]) j++;
    out.push([i * g, Math.min(size, j * g) - i * g]);
    i = j;
  }
  return out;
}

describe('dirty bitmaps: operations', () => {
  it('adds, finds, refuses duplicates, bad names and bad granularities with QEMU messages', async () => {
    const bb = await rawDisk(1 << 20);
    const n = bb.node;
    const b = addDirtyBitmap(n, 'b0');
    expect(b.granularity).toBe(65536);
    expect(b.size).toBe(1 << 20);
    expect(lookupDirtyBitmap(n, 'b0')).toBe(b);
    await expectBlockError(() => addDirtyBitmap(n, 'b0'), 'EEXIST', /^Bitmap already exists: b0$/);
    await expectBlockError(() => addDirtyBitmap(n, ''), 'EINVAL', /^Bitmap name cannot be empty$/);
    await expectBlockError(() => addDirtyBitmap(n, 'x'.repeat(1024)), 'EINVAL', /too long/);
    expect(addDirtyBitmap(n, 'é'.repeat(511)).name.length).toBe(511); // 1022 bytes
    await expectBlockError(() => addDirtyBitmap(n, 'é'.repeat(512)), 'EINVAL', /too long/);
    for (const g of [256, 1000, 4097, 0, 2 ** 32, -512, 1.5]) {
      await expectBlockError(() => addDirtyBitmap(n, 'g', { granularity: g }), 'EINVAL', /^Granularity must be power of 2 and at least 512$/);
    }
    expect(addDirtyBitmap(n, 'big', { granularity: 2 ** 31 }).granularity).toBe(2 ** 31);
    expect(addDirtyBitmap(n, 'small', { granularity: 512 }).nbits).toBe(2048);
    await expectBlockError(() => lookupDirtyBitmap(n, 'nope'), 'ENOENT', /^Dirty bitmap 'nope' not found$/);
    await expectBlockError(() => removeDirtyBitmap(n, 'nope'), 'ENOENT', /nope/);
    removeDirtyBitmap(n, 'b0');
    expect(n.dirtyBitmaps.map((x) => x.name)).not.toContain('b0');
    await bb.close();
  });

  it('default granularity is the cluster size clamped to 4k..64k', async () => {
    for (const [cs, want] of [
      [1024, 4096],
      [4096, 4096],
      [65536, 65536],
      [2 << 20, 65536],
    ] as const) {
      const { graph } = memGraph();
      await createImage(graph, 'qcow2', 'memory:q', { size: 8 << 20, cluster_size: cs });
      const bb = await BlockBackend.open(graph, 'memory:q', { format: 'qcow2' });
      expect(addDirtyBitmap(bb.node, 'd').granularity).toBe(want);
      await bb.close();
    }
  });

  it('busy, readonly and inconsistent bitmaps refuse what QEMU refuses', async () => {
    const bb = await rawDisk(1 << 20);
    const n = bb.node;
    const b = addDirtyBitmap(n, 'b');
    b.busy = true;
    await expectBlockError(() => clearDirtyBitmap(n, 'b'), 'EBUSY', /^Bitmap 'b' is currently in use by another operation and cannot be used$/);
    await expectBlockError(() => enableDirtyBitmap(n, 'b'), 'EBUSY', /'b'/);
    await expectBlockError(() => removeDirtyBitmap(n, 'b'), 'EBUSY', /'b'/);
    b.busy = false;
    b.readonly = true;
    await expectBlockError(() => clearDirtyBitmap(n, 'b'), 'EPERM', /^Bitmap 'b' is readonly and cannot be modified$/);
    disableDirtyBitmap(n, 'b'); // allowed on readonly
    enableDirtyBitmap(n, 'b');
    await expectBlockError(() => removeDirtyBitmap(n, 'b'), 'EPERM', /readonly/);
    b.readonly = false;
    b.inconsistent = true;
    await expectBlockError(() => clearDirtyBitmap(n, 'b'), 'EINVAL', /^Bitmap 'b' is inconsistent and cannot be used$/);
    await expectBlockError(() => enableDirtyBitmap(n, 'b'), 'EINVAL', /inconsistent/);
    const other = addDirtyBitmap(n, 'o');
    await expectBlockError(() => other.merge([b]), 'EINVAL', /inconsistent/);
    removeDirtyBitmap(n, 'b'); // the one thing an inconsistent bitmap allows
    await bb.close();
  });

  it('iterators: next dirty, next clean, dirty extents with a maximum length', async () => {
    const size = 10 * 4096 + 100;
    const bb = await rawDisk(size);
    const b = addDirtyBitmap(bb.node, 'b', { granularity: 4096 });
    b.setDirty(5000, 1); // granule 1
    b.setDirty(3 * 4096, 4 * 4096); // granules 3..6
    b.setDirty(size - 1, 1); // last, partial granule
    expect(b.count).toBe(4096 + 4 * 4096 + 100);
    expect(b.nextDirty(0)).toBe(4096);
    expect(b.nextDirty(4097)).toBe(4097);
    expect(b.nextDirty(2 * 4096, 4096)).toBe(-1);
    expect(b.nextClean(4096)).toBe(2 * 4096);
    expect(b.nextClean(3 * 4096 + 7)).toBe(7 * 4096);
    expect(b.nextClean(3 * 4096, 4 * 4096)).toBe(-1);
    expect([...b.dirtyExtents()]).toEqual([
      [4096, 4096],
      [3 * 4096, 4 * 4096],
      [10 * 4096, 100],
    ]);
    expect([...b.dirtyExtents(3 * 4096 + 10, size, 6000)]).toEqual([
      [3 * 4096 + 10, 6000],
      [3 * 4096 + 6010, 6000],
      [3 * 4096 + 12010, 4096 * 7 - (3 * 4096 + 12010)],
      [10 * 4096, 100],
    ]);
    expect(b.nextDirtyArea(0, 4096)).toBeUndefined();
    await expectBlockError(() => b.nextDirty(size + 1), 'EINVAL', /'b'.*outside/);
    await expectBlockError(() => b.nextDirtyArea(0, size, 0), 'EINVAL', /'b'/);
    await bb.close();
  });

  it('clear and merge with undo; merge across granularities and nodes; size mismatch', async () => {
    const bb = await rawDisk(1 << 20);
    const bb2 = await rawDisk(1 << 20);
    const bb3 = await rawDisk(2 << 20);
    const a = addDirtyBitmap(bb.node, 'a', { granularity: 65536 });
    const s = addDirtyBitmap(bb2.node, 's', { granularity: 512 });
    a.setDirty(0, 1);
    s.setDirty(200_000, 10);
    const u = a.merge([s], true);
    expect([...a.dirtyExtents()]).toEqual([
      [0, 65536],
      [196608, 65536],
    ]);
    u.undo();
    expect([...a.dirtyExtents()]).toEqual([[0, 65536]]);
    a.merge([s]);
    expect(a.count).toBe(2 * 65536);
    const c = a.clear(true);
    expect(a.count).toBe(0);
    c.undo();
    expect(a.count).toBe(2 * 65536);
    a.clear(true).commit();
    expect(a.count).toBe(0);
    const big = addDirtyBitmap(bb3.node, 'big');
    await expectBlockError(
      () => a.merge([big]),
      'EINVAL',
      /^Bitmaps are of different sizes \(destination size is 1048576, source size is 2097152\) and can't be merged$/,
    );
    await Promise.all([bb.close(), bb2.close(), bb3.close()]);
  });
});

describe('dirty bitmaps: the request path marks them', () => {
  it('writes, zero writes and discards mark the enabled bitmaps; truncate resizes', async () => {
    const bb = await rawDisk(1 << 20);
    const n = bb.node;
    const on = addDirtyBitmap(n, 'on', { granularity: 4096 });
    const off = addDirtyBitmap(n, 'off', { granularity: 4096, disabled: true });
    await bb.write(4095, new Uint8Array(2).fill(7));
    await bb.writeZeroes(100_000, 10);
    await bb.discard(200 * 1024, 8192);
    await bb.read(0, 4096);
    expect([...on.dirtyExtents()]).toEqual([
      [0, 8192],
      [24 * 4096, 4096],
      [50 * 4096, 8192],
    ]);
    expect(off.count).toBe(0);
    await bb.truncate((1 << 20) + 1000);
    expect(on.size).toBe((1 << 20) + 1000);
    expect(on.nbits).toBe(257);
    await bb.write((1 << 20) + 10, new Uint8Array(1));
    expect(on.isDirty((1 << 20) + 999)).toBe(true);
    await bb.truncate(4096);
    expect([...on.dirtyExtents()]).toEqual([[0, 4096]]);
    await bb.close();
    expect(n.dirtyBitmaps.length).toBe(0);
  });

  it('seeded workload on qcow2: bitmaps equal a per-granule model', async () => {
    const { graph } = memGraph();
    const size = 8 << 20;
    await createImage(graph, 'qcow2', 'memory:w', { size, cluster_size: 65536 });
    const bb = await BlockBackend.open(graph, { driver: 'qcow2', discard: 'unmap', file: { driver: 'memory', filename: 'w' } });
    const grans = [512, 4096, 65536, 1 << 20];
    const bms: BdrvDirtyBitmap[] = grans.map((g) => addDirtyBitmap(bb.node, `g${g}`, { granularity: g }));
    const models = grans.map((g) => new Array<boolean>(Math.ceil(size / g)).fill(false));
    const r = prng(1234);
    for (let i = 0; i < 150; i++) {
      const off = Math.floor(r() * (size - 1));
      const len = 1 + Math.floor(r() * Math.min(300_000, size - off - 1));
      const k = r();
      if (k < 0.5) await bb.write(off, new Uint8Array(len).fill(i & 255));
      else if (k < 0.8) await bb.writeZeroes(off, len);
      else await bb.discard(off, len);
      grans.forEach((g, j) => {
        for (let x = Math.floor(off / g); x < Math.ceil((off + len) / g); x++) models[j]![x] = true;
      });
    }
    grans.forEach((g, j) => {
      expect([...bms[j]!.dirtyExtents()], `granularity ${g}`).toEqual(modelExtents(models[j]!, g, size));
    });
    await bb.close();
  });
});

describe('dirty bitmaps: what does not and what does mark', () => {
  it('copy-on-read leaves them clean (the guest data does not change); a failed write marks its range', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('top', 1 << 20);
    storage.create('base', 1 << 20).writeRaw(0, new Uint8Array(1 << 20).fill(4));
    const base = await graph.open({ driver: 'raw', 'node-name': 'base', file: { driver: 'memory', filename: 'base' } }, { readOnly: true });
    const top = await graph.open({ driver: 'stubfmt', file: { driver: 'memory', filename: 'top' }, backing: 'base' });
    await base.unref();
    const bb = await BlockBackend.attach(graph, top);
    const b = addDirtyBitmap(top, 'b', { granularity: 4096 });
    top.copyOnRead++;
    await bb.read(100_000, 10_000);
    top.copyOnRead--;
    // The copy landed in top, yet the bitmap is clean.
    expect((await isAllocatedAbove(top, base, false, 100_000, 10_000)).allocated).toBe(true);
    expect(b.count).toBe(0);
    const f = storage.get('top')!;
    f.faults = { failAfterWrites: f.writeCount, failCode: 'EIO' };
    await expectBlockError(bb.write(8192, new Uint8Array(4096).fill(1)), 'EIO');
    f.faults = {};
    expect([...b.dirtyExtents()]).toEqual([[8192, 4096]]);
    await bb.close();
    await top.unref();
  });
});

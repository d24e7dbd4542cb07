/**
 * A snapshot operation keeps every refcount block cached while it runs
 * (withRefcountRoom in snapshot-refcount.ts): on an image with more refcount
 * blocks than QEMU's default cache holds, create, apply and delete read each
 * block once, leave the configured cache size as it was, and leave what
 * qemu-img leaves (same refcounts and mapping, a clean check).
 */
import { afterAll, describe, expect, it, vi } from 'vitest';
import { copyFileSync } from 'node:fs';
import { BlockBackend } from '../../../src/node.js';
import { createSnapshot, deleteSnapshot, findSnapshotByName, gotoSnapshot } from '../../../src/core/snapshot.js';
import { MetaCache } from '../../../src/formats/qcow2/cache.js';
import type { Qcow2Image } from '../../../src/formats/qcow2/qcow2.js';
import { hasQemu } from '../../cli/harness.js';
import { fileGraph, qemuCheck, qemuImg, tempDir } from './helpers.js';

const t = tempDir();
afterAll(() => {
  vi.restoreAllMocks();
  t.cleanup();
});

describe.skipIf(!hasQemu())('snapshot operations and the refcount cache', () => {
  it('read each refcount block once and leave what qemu-img leaves', async () => {
    // 4 KiB clusters, 16-bit refcounts: 2048 clusters per refcount block, so the 48 MiB of
    // preallocated clusters span six blocks, more than the cache's four entries (the option
    // asks for two; the driver keeps at least four).
    const base = t.path('room.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096,preallocation=metadata', base, '48M');
    const ours = t.path('room-ours.qcow2');
    const qemu = t.path('room-qemu.qcow2');
    copyFileSync(base, ours);
    copyFileSync(base, qemu);
    const loads = new Map<number, number>();
    const load = (MetaCache.prototype as unknown as { load: (off: number) => Promise<Uint8Array> }).load;
    vi.spyOn(MetaCache.prototype as unknown as { load: (off: number) => Promise<Uint8Array> }, 'load').mockImplementation(function (this: MetaCache, off: number) {
      if (this.name === 'refcount block') loads.set(off, (loads.get(off) ?? 0) + 1);
      return load.call(this, off);
    });
    const steps: [string, string][] = [['create', 's1'], ['apply', 's1'], ['create', 's2'], ['delete', 's1']];
    for (const [op, name] of steps) {
      const bb = await BlockBackend.open(fileGraph(), { driver: 'qcow2', 'refcount-cache-size': 8192, file: { driver: 'file', filename: ours } });
      const img = bb.node.instance as unknown as Qcow2Image;
      const configured = img.refs.cache.capacity;
      const blocks = [...img.refs.table].filter((o) => o !== 0).length;
      loads.clear();
      if (op === 'create') await createSnapshot(bb.node, { id: '', name, vmStateSize: 0, dateSec: 1, dateNsec: 0, vmClockNsec: 0 });
      else if (op === 'apply') await gotoSnapshot(bb.node, name);
      else await deleteSnapshot(bb.node, findSnapshotByName(bb.node, name)!.id, name);
      const where = { op, name };
      expect({ ...where, blocksOverCache: blocks > configured }).toEqual({ ...where, blocksOverCache: true });
      expect({ ...where, readTwice: [...loads].filter(([, n]) => n > 1).map(([o]) => o) }).toEqual({ ...where, readTwice: [] });
      expect({ ...where, capacity: img.refs.cache.capacity }).toEqual({ ...where, capacity: configured });
      await bb.close();
      qemuImg('snapshot', { create: '-c', apply: '-a', delete: '-d' }[op]!, name, qemu);
      expect({ ...where, map: qemuImg('map', '--output=json', ours) }).toEqual({ ...where, map: qemuImg('map', '--output=json', qemu) });
      const check = qemuCheck(ours);
      expect({ ...where, errors: check['check-errors'], corruptions: check.corruptions ?? 0, leaks: check.leaks ?? 0 }).toEqual({ ...where, errors: 0, corruptions: 0, leaks: 0 });
    }
  }, 60_000);
});

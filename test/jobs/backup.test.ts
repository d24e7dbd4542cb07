/**
 * The backup job on real qcow2 images made by qemu-img, under a seeded guest
 * workload (the cases of QEMU's iotests 055, 056, 124 and 257): the target
 * holds the source as it was when the backup started (qemu-img compare with
 * a copy taken then), compressed targets hold compressed clusters, an
 * incremental backup applied over the full one equals the source at its
 * start, and the bitmap afterwards holds what bitmap-mode says.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { addDirtyBitmap, findDirtyBitmap } from '../../src/core/dirty-bitmap.js';
import { JobRegistry } from '../../src/jobs/job-registry.js';
import { backupJob } from '../../src/jobs/backup.js';
import { hasQemu } from '../cli/harness.js';
import { startGuest } from './guest-workload.js';
import { MiB, SIZE, chainOf, expectClean, expectSameAsModel, makeChain, openTop, rawContent, sh } from './chain-fixture.js';

async function openTarget(graph: Awaited<ReturnType<typeof openTop>>['graph'], dir: string, name: string) {
  return graph.open({ driver: 'qcow2', file: { driver: 'file', filename: join(dir, name) } });
}

describe.skipIf(!hasQemu())('backup job', () => {
  for (const compress of [false, true]) {
    it(`sync=full${compress ? ' compressed' : ''}: the target is the source as it was at the start`, async () => {
      const dir = makeChain();
      sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'backup.qcow2', String(SIZE)], dir);
      const atStart = rawContent(dir, 'top.qcow2');
      const model = atStart.slice();
      const { graph, guest } = await openTop(dir);
      const target = await openTarget(graph, dir, 'backup.qcow2');
      const reg = new JobRegistry();
      const job = reg.create(await backupJob({ graph, source: guest.node, target, sync: 'full', compress }), { id: 'backup0', speed: 16 * MiB });
      await target.unref();
      const g = startGuest(guest, model, compress ? 31 : 32);
      job.start();
      await job.settled();
      g.stop();
      expect(await g.done).toBeGreaterThan(0);
      await guest.close();
      await graph.closeAll();
      expectSameAsModel(dir, atStart, 'backup.qcow2');
      expectSameAsModel(dir, model, 'top.qcow2');
      if (compress) {
        const check = JSON.parse(sh('qemu-img', ['check', '--output=json', 'backup.qcow2'], dir)) as { 'compressed-clusters': number };
        expect(check['compressed-clusters']).toBeGreaterThan(0);
      }
    });
  }

  it('sync=none keeps a point-in-time view in an overlay of the source until cancelled', async () => {
    const dir = makeChain();
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'top.qcow2', '-F', 'qcow2', 'pit.qcow2'], dir);
    const atStart = rawContent(dir, 'top.qcow2');
    const model = atStart.slice();
    const { graph, guest } = await openTop(dir);
    const target = await graph.open({ driver: 'qcow2', backing: null, file: { driver: 'file', filename: join(dir, 'pit.qcow2') } });
    const reg = new JobRegistry();
    const job = reg.create(await backupJob({ graph, source: guest.node, target, sync: 'none' }), { id: 'pit' });
    await target.unref();
    const g = startGuest(guest, model, 33);
    job.start();
    await new Promise((r) => setTimeout(r, 60));
    g.stop();
    await g.done;
    job.cancel();
    await expect(job.settled()).rejects.toMatchObject({ code: 'ECANCELED' });
    await guest.close();
    await graph.closeAll();
    expectSameAsModel(dir, model, 'top.qcow2');
    expectSameAsModel(dir, atStart, 'pit.qcow2');
    expect(chainOf(dir, 'pit.qcow2')).toEqual(['pit.qcow2', 'top.qcow2', 'mid.qcow2', 'base.qcow2']);
  });

  it('incremental: a full backup, then sync=bitmap into an overlay of it, equals the source at each start', async () => {
    const dir = makeChain();
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'full.qcow2', String(SIZE)], dir);
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'full.qcow2', '-F', 'qcow2', 'inc0.qcow2'], dir);
    const atFull = rawContent(dir, 'top.qcow2');
    const model = atFull.slice();
    const { graph, guest } = await openTop(dir);
    const source = guest.node;
    // The bitmap starts with the full backup (QEMU users add both in one transaction).
    addDirtyBitmap(source, 'b0', { granularity: 65536 });
    const reg = new JobRegistry();
    const full = reg.create(await backupJob({ graph, source, target: await openTarget(graph, dir, 'full.qcow2'), sync: 'full' }), { id: 'full' });
    full.start();
    await full.settled();
    // The guest changes things; the bitmap records where.
    const g1 = startGuest(guest, model, 34);
    await new Promise((r) => setTimeout(r, 40));
    g1.stop();
    await g1.done;
    const bm = findDirtyBitmap(source, 'b0')!;
    expect(bm.count).toBeGreaterThan(0);
    const atInc = model.slice();
    const incTarget = await graph.open({ driver: 'qcow2', backing: null, file: { driver: 'file', filename: join(dir, 'inc0.qcow2') } });
    const inc = reg.create(await backupJob({ graph, source, target: incTarget, sync: 'bitmap', bitmap: 'b0', bitmapMode: 'on-success' }), { id: 'inc0' });
    await incTarget.unref();
    // Writes during the incremental backup stay in the bitmap for the next one.
    const g2 = startGuest(guest, model, 35);
    inc.start();
    await inc.settled();
    g2.stop();
    await g2.done;
    const after = findDirtyBitmap(source, 'b0')!;
    expect(after.busy).toBe(false);
    expect(after.enabled).toBe(true);
    await guest.close();
    await graph.closeAll();
    expectSameAsModel(dir, atFull, 'full.qcow2');
    expectSameAsModel(dir, atInc, 'inc0.qcow2');
    expectClean(dir, 'inc0.qcow2');
    // The incremental image holds only what the bitmap named, not a full copy.
    const incMap = JSON.parse(sh('qemu-img', ['map', '--output=json', 'inc0.qcow2'], dir)) as Array<{ depth: number; length: number; data: boolean }>;
    const own = incMap.filter((e) => e.depth === 0 && e.data).reduce((s, e) => s + e.length, 0);
    expect(own).toBeLessThan(SIZE / 2);
  });

  it('bitmap-mode never leaves the bitmap with its old bits plus new writes', async () => {
    const dir = makeChain();
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'inc.qcow2', String(SIZE)], dir);
    const { graph, guest } = await openTop(dir);
    const source = guest.node;
    const bm = addDirtyBitmap(source, 'b1', { granularity: 65536 });
    await guest.write(MiB, new Uint8Array(65536).fill(9));
    const before = bm.count;
    const reg = new JobRegistry();
    const job = reg.create(await backupJob({ graph, source, target: await openTarget(graph, dir, 'inc.qcow2'), sync: 'bitmap', bitmap: 'b1', bitmapMode: 'never' }), { id: 'n' });
    job.start();
    await job.settled();
    expect(bm.count).toBe(before);
    await guest.close();
    await graph.closeAll();
  });

  it('refuses bad option combinations with QEMU messages', async () => {
    const dir = makeChain();
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'b.qcow2', String(SIZE)], dir);
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'small.qcow2', '1M'], dir);
    const { graph, guest } = await openTop(dir);
    const target = await openTarget(graph, dir, 'b.qcow2');
    const small = await openTarget(graph, dir, 'small.qcow2');
    await expect(backupJob({ graph, source: guest.node, target, sync: 'bitmap' })).rejects.toThrow("must provide a valid bitmap name for 'bitmap' sync mode");
    await expect(backupJob({ graph, source: guest.node, target, sync: 'full', bitmapMode: 'always' })).rejects.toThrow('Cannot specify bitmap sync mode without a bitmap');
    await expect(backupJob({ graph, source: guest.node, target, sync: 'bitmap', bitmap: 'nope' })).rejects.toThrow("Dirty bitmap 'nope' not found");
    await expect(backupJob({ graph, source: guest.node, target: small, sync: 'full' })).rejects.toThrow('Source and target image have different sizes');
    await target.unref();
    await small.unref();
    await guest.close();
    await graph.closeAll();
  });
});

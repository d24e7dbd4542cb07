/**
 * Mirror, commit and active commit on real qcow2 chains made by qemu-img,
 * each under a seeded guest workload (the cases of QEMU's iotests 040 and
 * 041): the target (or base) ends equal to what the guest saw (qemu-img
 * compare), the chain is as QEMU leaves it (qemu-img info --backing-chain),
 * and qemu-img check is clean on every image.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockBackend } from '../../src/core/backend.js';
import { JobRegistry } from '../../src/jobs/job-registry.js';
import { mirrorJob, type MirrorSync } from '../../src/jobs/mirror.js';
import { commitJob } from '../../src/jobs/commit.js';
import type { JobEvent } from '../../src/jobs/job-types.js';
import { hasQemu } from '../cli/harness.js';
import { startGuest } from './guest-workload.js';
import { MiB, SIZE, chainOf, covered, expectClean, expectSameAsModel, makeChain, openTop, rawContent, sh, topExtents } from './chain-fixture.js';

function eventsOf(reg: JobRegistry): JobEvent[] {
  const events: JobEvent[] = [];
  reg.on((e) => events.push(e));
  return events;
}

const statusList = (events: JobEvent[]): string[] =>
  events.filter((e) => e.event === 'JOB_STATUS_CHANGE').map((e) => (e.data as { status: string }).status);

describe.skipIf(!hasQemu())('mirror job', () => {
  for (const [sync, seed] of [['full', 11], ['top', 12]] as Array<[MirrorSync, number]>) {
    it(`sync=${sync}: ready while the guest writes, complete pivots the guest onto the target`, async () => {
      const dir = makeChain();
      if (sync === 'full') sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'target.qcow2', String(SIZE)], dir);
      else sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', 'target.qcow2'], dir);
      const model = rawContent(dir, 'top.qcow2');
      const { graph, guest } = await openTop(dir);
      const target = await graph.open({ driver: 'qcow2', discard: 'unmap', file: { driver: 'file', filename: join(dir, 'target.qcow2') } });
      const reg = new JobRegistry();
      const events = eventsOf(reg);
      const job = reg.create(mirrorJob({ graph, source: guest.node, target, sync }), { id: 'mirror0' });
      await target.unref();
      const g = startGuest(guest, model, seed);
      job.start();
      await job.waitFor((s) => s === 'ready' || s === 'concluded' || s === 'null');
      expect(job.status, String(job.error?.stack)).toBe('ready');
      // The guest keeps writing a while after ready; the mirror follows.
      await new Promise((r) => setTimeout(r, 30));
      g.stop();
      await g.done;
      job.complete();
      await job.settled();
      expect(guest.node.filename).toContain('target.qcow2');
      // After the pivot the guest writes land on the target.
      const after = new Uint8Array(4096).fill(0x5a);
      await guest.write(4096, after);
      model.set(after, 4096);
      await guest.close();
      await graph.closeAll();
      expect(statusList(events)).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);
      expectSameAsModel(dir, model, 'target.qcow2');
      expectClean(dir, 'top.qcow2');
      expect(chainOf(dir, 'target.qcow2')).toEqual(sync === 'full' ? ['target.qcow2'] : ['target.qcow2', 'mid.qcow2', 'base.qcow2']);
    });
  }

  it('a soft cancel after ready leaves a consistent copy and the guest on the source', async () => {
    const dir = makeChain();
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'target.qcow2', String(SIZE)], dir);
    const model = rawContent(dir, 'top.qcow2');
    const { graph, guest } = await openTop(dir);
    const target = await graph.open({ driver: 'qcow2', file: { driver: 'file', filename: join(dir, 'target.qcow2') } });
    const reg = new JobRegistry();
    const events = eventsOf(reg);
    const job = reg.create(mirrorJob({ graph, source: guest.node, target }), { id: 'm1' });
    await target.unref();
    const g = startGuest(guest, model, 13);
    job.start();
    await job.waitFor((s) => s === 'ready');
    g.stop();
    await g.done;
    job.cancel();
    await job.settled();
    expect(events.some((e) => e.event === 'BLOCK_JOB_COMPLETED')).toBe(true);
    expect(events.some((e) => e.event === 'BLOCK_JOB_CANCELLED')).toBe(false);
    expect(guest.node.filename).toContain('top.qcow2');
    await guest.close();
    await graph.closeAll();
    expectSameAsModel(dir, model, 'target.qcow2');
    expectSameAsModel(dir, model, 'top.qcow2');
  });

  it('refuses a target of another size', async () => {
    const dir = makeChain();
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'small.qcow2', '1M'], dir);
    const { graph, guest } = await openTop(dir);
    const target = await graph.open({ driver: 'qcow2', file: { driver: 'file', filename: join(dir, 'small.qcow2') } });
    const reg = new JobRegistry();
    const job = reg.create(mirrorJob({ graph, source: guest.node, target }), { id: 'm2' });
    await target.unref();
    job.start();
    await expect(job.settled()).rejects.toThrow('Source and target image have different sizes');
    expect(guest.node.filename).toContain('top.qcow2');
    await guest.write(0, new Uint8Array(512).fill(1));
    await guest.close();
    await graph.closeAll();
    expectClean(dir, 'top.qcow2');
  });
});

describe.skipIf(!hasQemu())('commit job', () => {
  it('commits mid into base while the guest writes top; top then backs onto base', async () => {
    const dir = makeChain();
    const model = rawContent(dir, 'top.qcow2');
    const midContent = rawContent(dir, 'mid.qcow2');
    const { graph, guest } = await openTop(dir);
    const top = guest.node;
    const mid = top.backing!.node;
    const base = mid.backing!.node;
    const reg = new JobRegistry();
    const events = eventsOf(reg);
    const job = reg.create(commitJob({ graph, top: mid, base }), { id: 'commit0', speed: 64 * MiB });
    const g = startGuest(guest, model, 21);
    job.start();
    await job.settled();
    g.stop();
    await g.done;
    expect(top.backing?.node).toBe(base);
    await guest.close();
    await graph.closeAll();
    expect(statusList(events)).toEqual(['created', 'running', 'waiting', 'pending', 'concluded', 'null']);
    expect(chainOf(dir)).toEqual(['top.qcow2', 'base.qcow2']);
    expectSameAsModel(dir, model, 'top.qcow2');
    // base now holds what mid showed.
    expectSameAsModel(dir, midContent, 'base.qcow2');
  });

  it('active commit: ready, guest writes, complete pivots the guest onto base', async () => {
    const dir = makeChain();
    const model = rawContent(dir, 'top.qcow2');
    const { graph, guest } = await openTop(dir);
    const base = guest.node.backing!.node.backing!.node;
    const reg = new JobRegistry();
    const events = eventsOf(reg);
    const job = reg.create(commitJob({ graph, top: guest.node, base }), { id: 'commit1' });
    const g = startGuest(guest, model, 22);
    job.start();
    await job.waitFor((s) => s === 'ready');
    expect(events.find((e) => e.event === 'BLOCK_JOB_READY')?.data).toMatchObject({ type: 'commit', device: 'commit1' });
    await new Promise((r) => setTimeout(r, 30));
    g.stop();
    await g.done;
    job.complete();
    await job.settled();
    expect(guest.node).toBe(base);
    const after = new Uint8Array(8192).fill(0x77);
    await guest.write(SIZE - 8192, after);
    model.set(after, SIZE - 8192);
    await guest.close();
    await graph.closeAll();
    expect(chainOf(dir, 'base.qcow2')).toEqual(['base.qcow2']);
    expectSameAsModel(dir, model, 'base.qcow2');
    expectClean(dir, 'top.qcow2');
    expectClean(dir, 'mid.qcow2');
    // top and mid's data is in base now.
    expect(covered(topExtents(dir, 'base.qcow2'), 1 * MiB, 3 * MiB)).toBe(true);
  });

  it('a cancelled active commit leaves the guest on top and the chain whole', async () => {
    const dir = makeChain();
    const model = rawContent(dir, 'top.qcow2');
    const { graph, guest } = await openTop(dir);
    const reg = new JobRegistry();
    const job = reg.create(commitJob({ graph, top: guest.node }), { id: 'c2', speed: 1 * MiB });
    const g = startGuest(guest, model, 23);
    job.start();
    await new Promise((r) => setTimeout(r, 40));
    job.cancel();
    await expect(job.settled()).rejects.toMatchObject({ code: 'ECANCELED' });
    g.stop();
    await g.done;
    expect(guest.node.filename).toContain('top.qcow2');
    await guest.close();
    await graph.closeAll();
    expect(chainOf(dir)).toEqual(['top.qcow2', 'mid.qcow2', 'base.qcow2']);
    expectSameAsModel(dir, model, 'top.qcow2');
    expectClean(dir, 'base.qcow2');
  });

  it('refuses a base outside the chain and an image without backing', async () => {
    const dir = makeChain();
    const { graph, guest } = await openTop(dir);
    const base = guest.node.backing!.node.backing!.node;
    expect(() => commitJob({ graph, top: base })).toThrow(/no backing file/);
    expect(() => commitJob({ graph, top: guest.node.backing!.node, base: guest.node })).toThrow(/is not a backing image/);
    await guest.close();
    await graph.closeAll();
    void BlockBackend;
  });
});

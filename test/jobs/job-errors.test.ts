/**
 * Jobs meeting errors, on a memory copy of a qemu-img-made chain with faults
 * injected into one image: every on-error policy (report, stop, ignore,
 * enospc) on source reads and target writes, cancel at seeded random points,
 * and a job whose nodes are closed under it. In every case the guest's data
 * stays intact and the job settles — no hang, no stray rejection.
 */
import { describe, expect, it } from 'vitest';
import { JobRegistry } from '../../src/jobs/job-registry.js';
import type { Job } from '../../src/jobs/job.js';
import type { JobDriver, JobEvent, OnErrorPolicy } from '../../src/jobs/job-types.js';
import { mirrorJob } from '../../src/jobs/mirror.js';
import { streamJob } from '../../src/jobs/stream.js';
import { commitJob } from '../../src/jobs/commit.js';
import { backupJob } from '../../src/jobs/backup.js';
import { hasQemu } from '../cli/harness.js';
import { prng } from '../prng.js';
import { memoryChain, type MemoryChain } from './memory-chain.js';
import { MiB, SIZE } from './chain-fixture.js';

/** Everything the guest reads, compared with what it read before the job. */
async function expectGuestIntact(c: MemoryChain): Promise<void> {
  const now = await c.guest.read(0, SIZE);
  expect(Buffer.compare(Buffer.from(now), Buffer.from(c.content))).toBe(0);
}

async function targetContent(c: MemoryChain): Promise<Uint8Array> {
  const { BlockBackend } = await import('../../src/core/backend.js');
  const t = await BlockBackend.open(c.graph, { driver: 'qcow2', file: { driver: 'memory', filename: 'target.qcow2' } }, { readOnly: true });
  try {
    return await t.read(0, SIZE);
  } finally {
    await t.close();
  }
}

function watch(reg: JobRegistry): JobEvent[] {
  const events: JobEvent[] = [];
  reg.on((e) => events.push(e));
  return events;
}

async function until(pred: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 20000 && !pred(); i++) await new Promise((r) => setTimeout(r, 1));
  if (!pred()) throw new Error(`timed out waiting for ${what}`);
}

const errorActions = (events: JobEvent[]): string[] =>
  events.filter((e) => e.event === 'BLOCK_JOB_ERROR').map((e) => (e.data as { action: string }).action);

describe.skipIf(!hasQemu())('job error policies', () => {
  for (const [policy, code, expected] of [
    ['report', 'EIO', 'report'],
    ['stop', 'EIO', 'stop'],
    ['enospc', 'ENOSPC', 'stop'],
    ['enospc', 'EIO', 'report'],
    ['ignore', 'EIO', 'ignore'],
  ] as Array<[OnErrorPolicy, 'EIO' | 'ENOSPC', string]>) {
    it(`mirror: a target write ${code} under on-target-error=${policy} → ${expected}`, async () => {
      const c = await memoryChain();
      const targetNode = await c.graph.open({ driver: 'qcow2', file: { driver: 'memory', filename: 'target.qcow2' } });
      const tf = c.file('target.qcow2');
      tf.faults = { failAfterWrites: tf.writeCount + 2, failCode: code };
      const reg = new JobRegistry();
      const events = watch(reg);
      const job = reg.create(mirrorJob({ graph: c.graph, source: c.guest.node, target: targetNode, onTargetError: policy }), { id: 'm' });
      await targetNode.unref();
      job.start();
      if (expected === 'report') {
        await expect(job.settled()).rejects.toMatchObject({ code });
        expect(c.guest.node.filename).toBe('memory:top.qcow2');
      } else {
        if (expected === 'stop') {
          await job.waitFor((s) => s === 'paused');
          expect(job.blockInfo()['io-status']).toBe(code === 'ENOSPC' ? 'nospace' : 'failed');
        } else {
          await until(() => errorActions(events).length >= 2, 'ignored errors');
        }
        tf.faults = {};
        if (expected === 'stop') job.resume();
        await job.waitFor((s) => s === 'ready');
        job.cancel();
        await job.settled();
        expect(Buffer.compare(Buffer.from(await targetContent(c)), Buffer.from(c.content))).toBe(0);
      }
      expect(errorActions(events)[0]).toBe(expected);
      expect(events.find((e) => e.event === 'BLOCK_JOB_ERROR')?.data).toMatchObject({ device: 'm', operation: 'write' });
      await expectGuestIntact(c);
      await c.guest.close();
      await c.graph.closeAll();
    });
  }

  for (const policy of ['report', 'stop', 'ignore'] as OnErrorPolicy[]) {
    it(`stream: a read EIO in mid under on-error=${policy}`, async () => {
      const c = await memoryChain();
      const top = c.guest.node;
      const mf = c.file('mid.qcow2');
      mf.faults = { failReads: { start: 0x50000, end: mf.length } };
      const reg = new JobRegistry();
      const events = watch(reg);
      const job = reg.create(streamJob({ graph: c.graph, top, onError: policy }), { id: 's' });
      job.start();
      if (policy === 'stop') {
        await job.waitFor((s) => s === 'paused');
        mf.faults = {};
        job.resume();
        await job.settled();
        expect(top.backing).toBeUndefined();
      } else {
        // report fails at once; ignore goes on and fails at the end with the first error (QEMU's stream).
        await expect(job.settled()).rejects.toMatchObject({ code: 'EIO' });
        mf.faults = {};
        expect(top.backing?.node.filename).toBe('memory:mid.qcow2');
        if (policy === 'ignore') expect(errorActions(events).length).toBeGreaterThan(1);
      }
      expect(errorActions(events)[0]).toBe(policy);
      await expectGuestIntact(c);
      await c.guest.close();
      await c.graph.closeAll();
    });
  }

  it('backup: a target write error stops the job until resumed; the backup then completes', async () => {
    const c = await memoryChain();
    const target = await c.graph.open({ driver: 'qcow2', file: { driver: 'memory', filename: 'target.qcow2' } });
    const tf = c.file('target.qcow2');
    tf.faults = { failAfterWrites: tf.writeCount + 3 };
    const reg = new JobRegistry();
    const job = reg.create(await backupJob({ graph: c.graph, source: c.guest.node, target, sync: 'full', onTargetError: 'stop' }), { id: 'b' });
    await target.unref();
    job.start();
    await job.waitFor((s) => s === 'paused');
    tf.faults = {};
    job.resume();
    await job.settled();
    expect(Buffer.compare(Buffer.from(await targetContent(c)), Buffer.from(c.content))).toBe(0);
    await expectGuestIntact(c);
    await c.guest.close();
    await c.graph.closeAll();
  });

  it('commit: a read error in top stops the job; after resume mid is committed', async () => {
    const c = await memoryChain();
    const mid = c.guest.node.backing!.node;
    const mf = c.file('mid.qcow2');
    mf.faults = { failReads: { start: 0x50000, end: mf.length } };
    const reg = new JobRegistry();
    const job = reg.create(commitJob({ graph: c.graph, top: mid, onError: 'stop' }), { id: 'c' });
    job.start();
    await job.waitFor((s) => s === 'paused');
    mf.faults = {};
    job.resume();
    await job.settled();
    expect(c.guest.node.backing?.node.filename).toBe('memory:base.qcow2');
    await expectGuestIntact(c);
    await c.guest.close();
    await c.graph.closeAll();
  });
});

describe.skipIf(!hasQemu())('cancel at random points', () => {
  const kinds: Array<[string, (c: MemoryChain) => Promise<JobDriver>]> = [
    ['stream', async (c) => streamJob({ graph: c.graph, top: c.guest.node })],
    ['commit', async (c) => commitJob({ graph: c.graph, top: c.guest.node.backing!.node })],
    ['active commit', async (c) => commitJob({ graph: c.graph, top: c.guest.node })],
    [
      'mirror',
      async (c) => {
        const t = await c.graph.open({ driver: 'qcow2', file: { driver: 'memory', filename: 'target.qcow2' } });
        const d = mirrorJob({ graph: c.graph, source: c.guest.node, target: t });
        await t.unref();
        return d;
      },
    ],
    [
      'backup',
      async (c) => {
        const t = await c.graph.open({ driver: 'qcow2', file: { driver: 'memory', filename: 'target.qcow2' } });
        const d = await backupJob({ graph: c.graph, source: c.guest.node, target: t, sync: 'full' });
        await t.unref();
        return d;
      },
    ],
  ];
  for (const [name, make] of kinds) {
    it(`${name}: a forced cancel anywhere leaves the guest's data and the chain intact`, async () => {
      const rnd = prng(name.length * 7919);
      for (let round = 0; round < 4; round++) {
        const c = await memoryChain();
        const reg = new JobRegistry();
        const job: Job = reg.create(await make(c), { id: 'j', speed: 8 * MiB });
        job.start();
        const turns = Math.floor(rnd() * 40);
        for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
        if (job.status !== 'null' && job.status !== 'concluded') job.cancel(true);
        await job.settled().catch((e: { code?: string }) => expect(e.code).toBe('ECANCELED'));
        await expectGuestIntact(c);
        if (name !== 'stream' || job.error) {
          const chain: string[] = [];
          for (let n = c.guest.node.backing?.node; n; n = n.backing?.node) chain.push(n.filename);
          if (job.error) expect(chain).toEqual(['memory:mid.qcow2', 'memory:base.qcow2']);
        }
        await c.guest.close();
        await c.graph.closeAll();
      }
    });
  }

  it('a job whose nodes are closed under it fails cleanly', async () => {
    const c = await memoryChain();
    const t = await c.graph.open({ driver: 'qcow2', file: { driver: 'memory', filename: 'target.qcow2' } });
    const reg = new JobRegistry();
    const job = reg.create(mirrorJob({ graph: c.graph, source: c.guest.node, target: t }), { id: 'gone', speed: 1 * MiB });
    await t.unref();
    job.start();
    await new Promise((r) => setTimeout(r, 20));
    await c.guest.close();
    await c.graph.closeAll();
    await expect(job.settled()).rejects.toBeTruthy();
    expect(job.status === 'null' || job.status === 'concluded').toBe(true);
  });
});

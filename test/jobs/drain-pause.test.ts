/**
 * A job pauses while one of its nodes is drained (QEMU's child_job
 * drained_begin / drained_end): a rate-limited stream over a memory chain,
 * driven by virtual timers, is drained from a node below the job's top and
 * from the top itself. While drained it reaches `paused` and copies nothing;
 * the pause is internal (the user cannot resume it, and after the drain the
 * job runs on by itself); the guest-visible content is unchanged at the end.
 */
import { describe, expect, it } from 'vitest';
import { drainBegin, drainEnd } from '../../src/core/drain.js';
import { JobRegistry } from '../../src/jobs/job-registry.js';
import { streamJob } from '../../src/jobs/stream.js';
import { mirrorJob } from '../../src/jobs/mirror.js';
import type { JobEvent } from '../../src/jobs/job-types.js';
import { hasQemu } from '../cli/harness.js';
import { memoryChain } from './memory-chain.js';
import { MiB, SIZE } from './chain-fixture.js';
import { VirtualTimers } from './virtual-timers.js';

const statuses = (events: JobEvent[]) =>
  events.filter((e) => e.event === 'JOB_STATUS_CHANGE').map((e) => (e.data as { status: string }).status);

describe.skipIf(!hasQemu())('a job on a drained node', () => {
  for (const where of ['mid (below the job)', 'top (the job\'s own node)'] as const) {
    it(`stream pauses while ${where} is drained and runs on after`, async () => {
      const { graph, guest, content } = await memoryChain();
      const top = guest.node;
      const mid = top.backing!.node;
      const timers = new VirtualTimers();
      const reg = new JobRegistry(timers);
      const events: JobEvent[] = [];
      reg.on((e) => events.push(e));
      const job = reg.create(streamJob({ graph, top }), { id: 's0', speed: 4 * MiB });
      job.start();
      const progress = () => job.blockInfo().offset;
      expect(await timers.runUntil(() => progress() >= 2 * MiB)).toBe(true);
      expect(job.status).toBe('running');

      const token = await drainBegin(where.startsWith('mid') ? mid : top);
      expect(await timers.runUntil(() => job.status === 'paused')).toBe(true);
      expect(job.blockInfo().paused).toBe(true);
      const held = progress();
      // Time passes (virtual seconds of it): nothing is copied while drained.
      expect(await timers.runUntil(() => false, 50)).toBe(false);
      expect(progress()).toBe(held);
      // The drain's pause is not the user's: resume is refused.
      expect(() => job.resume()).toThrow("Can't resume a job that was not paused");

      drainEnd(token);
      expect(await timers.runUntil(() => job.status === 'null')).toBe(true);
      await job.settled();
      expect(progress()).toBe(SIZE);
      expect(statuses(events)).toEqual(['created', 'running', 'paused', 'running', 'waiting', 'pending', 'concluded', 'null']);
      expect(top.backing ?? null).toBeNull();
      const out = new Uint8Array(SIZE);
      await guest.pread(0, out);
      expect(Buffer.compare(out, content)).toBe(0);
      await guest.close();
      await graph.closeAll();
    });
  }

  it('nested drains: the job runs again only after the last one ends; a user pause outlasts them', async () => {
    const { graph, guest } = await memoryChain();
    const top = guest.node;
    const timers = new VirtualTimers();
    const reg = new JobRegistry(timers);
    const job = reg.create(streamJob({ graph, top }), { id: 's1', speed: 4 * MiB });
    job.start();
    expect(await timers.runUntil(() => job.blockInfo().offset >= MiB)).toBe(true);
    const a = await drainBegin(top);
    const b = await drainBegin(top.backing!.node);
    expect(await timers.runUntil(() => job.status === 'paused')).toBe(true);
    job.pause();
    drainEnd(a);
    drainEnd(b);
    const held = job.blockInfo().offset;
    expect(await timers.runUntil(() => false, 50)).toBe(false);
    expect(job.status).toBe('paused');
    expect(job.blockInfo().offset).toBe(held);
    job.resume();
    expect(await timers.runUntil(() => job.status === 'null')).toBe(true);
    await job.settled();
    await guest.close();
    await graph.closeAll();
  });

  it('a mirror completes through its own drain (no self-deadlock) and a drain of its target pauses it', async () => {
    const { graph, guest, content } = await memoryChain();
    const target = await graph.open({ driver: 'qcow2', file: { driver: 'memory', filename: 'target.qcow2' } });
    const timers = new VirtualTimers();
    const reg = new JobRegistry(timers);
    const job = reg.create(mirrorJob({ graph, source: guest.node, target, sync: 'full' }), { id: 'm0', speed: 4 * MiB });
    job.start();
    expect(await timers.runUntil(() => job.blockInfo().offset >= MiB)).toBe(true);
    const token = await drainBegin(target);
    expect(await timers.runUntil(() => job.status === 'paused')).toBe(true);
    drainEnd(token);
    expect(await timers.runUntil(() => job.status === 'ready')).toBe(true);
    job.complete();
    expect(await timers.runUntil(() => job.status === 'null')).toBe(true);
    await job.settled();
    const out = new Uint8Array(SIZE);
    await guest.pread(0, out);
    expect(Buffer.compare(out, content)).toBe(0);
    await target.unref();
    await guest.close();
    await graph.closeAll();
  });
});

/**
 * The stream job on real qcow2 chains made by qemu-img, while a seeded guest
 * writes: afterwards the guest-visible content is unchanged (qemu-img
 * compare against the guest's model), the chain is as QEMU leaves it
 * (qemu-img info --backing-chain), the streamed data lives in top (qemu-img
 * map) and qemu-img check is clean. Same cases as QEMU's iotest 030: stream
 * all, stream to a base, cancel, an intermediate image busy in another job.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JobRegistry } from '../../src/jobs/job-registry.js';
import { streamJob } from '../../src/jobs/stream.js';
import type { JobEvent } from '../../src/jobs/job-types.js';
import { hasQemu } from '../cli/harness.js';
import { startGuest } from './guest-workload.js';
import { MiB, SIZE, chainOf, covered, expectSameAsModel, makeChain, openTop, rawContent, topExtents } from './chain-fixture.js';

describe.skipIf(!hasQemu())('stream job', () => {
  for (const [label, toBase, seed] of [
    ['the whole chain into top', false, 1],
    ['mid into top, keeping base', true, 2],
  ] as const) {
    it(`streams ${label} while the guest writes`, async () => {
      const dir = makeChain();
      const model = rawContent(dir, 'top.qcow2');
      const { graph, guest } = await openTop(dir);
      const top = guest.node;
      const mid = top.backing!.node;
      const base = mid.backing!.node;
      const reg = new JobRegistry();
      const events: JobEvent[] = [];
      reg.on((e) => events.push(e));
      const job = reg.create(streamJob({ graph, top, base: toBase ? base : undefined }), { id: 'stream0', speed: 32 * MiB });
      const log: string[] = [];
      const g = startGuest(guest, model, seed, 65536, log);
      job.start();
      await job.settled();
      g.stop();
      expect(await g.done).toBeGreaterThan(0);
      expect(top.backing?.node ?? null).toBe(toBase ? base : null);
      await guest.close();
      await graph.closeAll();
      expect(events.filter((e) => e.event === 'JOB_STATUS_CHANGE').map((e) => (e.data as { status: string }).status)).toEqual([
        'created', 'running', 'waiting', 'pending', 'concluded', 'null',
      ]);
      expect(events.at(-1)?.event).toBe('JOB_STATUS_CHANGE');
      expect(events.find((e) => e.event === 'BLOCK_JOB_COMPLETED')?.data).toMatchObject({ device: 'stream0', len: SIZE, offset: SIZE });
      expect(chainOf(dir)).toEqual(toBase ? ['top.qcow2', 'base.qcow2'] : ['top.qcow2']);
      if (process.env.DW_DEBUG) writeFileSync(join(dir, 'ops.log'), log.join('\n'));
      expectSameAsModel(dir, model);
      // mid's data (1M..3M, the zeroed 5M..5M+256k, 7M..7.5M) now lives in top.
      const ext = topExtents(dir);
      expect(covered(ext, 1 * MiB, 3 * MiB)).toBe(true);
      expect(covered(ext, 7 * MiB, 7 * MiB + 512 * 1024)).toBe(true);
      // base's data is copied only when streaming the whole chain.
      if (!toBase) expect(covered(ext, 0, 1 * MiB)).toBe(true);
    });
  }

  it('cancel leaves the chain and the guest-visible content as they were', async () => {
    const dir = makeChain();
    const model = rawContent(dir, 'top.qcow2');
    const { graph, guest } = await openTop(dir);
    const reg = new JobRegistry();
    const job = reg.create(streamJob({ graph, top: guest.node }), { id: 's', speed: 2 * MiB });
    const g = startGuest(guest, model, 3);
    job.start();
    await new Promise((r) => setTimeout(r, 50));
    job.cancel();
    await expect(job.settled()).rejects.toMatchObject({ code: 'ECANCELED' });
    g.stop();
    await g.done;
    await guest.close();
    await graph.closeAll();
    expect(chainOf(dir)).toEqual(['top.qcow2', 'mid.qcow2', 'base.qcow2']);
    expectSameAsModel(dir, model);
  });

  it('refuses a second job on a chain a job already uses, and a base outside the chain', async () => {
    const dir = makeChain();
    const { graph, guest } = await openTop(dir);
    const top = guest.node;
    const first = streamJob({ graph, top });
    expect(() => streamJob({ graph, top })).toThrow(/busy/);
    const other = await graph.open({ driver: 'qcow2', file: { driver: 'file', filename: join(dir, 'base.qcow2') } }, { readOnly: true });
    expect(() => streamJob({ graph, top: top.backing!.node, base: other })).toThrow(/is not a backing image/);
    await other.unref();
    await first.clean!();
    // Released: a new job may take the chain.
    const again = streamJob({ graph, top });
    await again.clean!();
    await guest.close();
    await graph.closeAll();
  });
});

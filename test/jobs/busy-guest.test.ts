/**
 * Jobs end while the guest never stops writing (several requests always in
 * flight, as a busy VM does): taking the job's filter out must not wait for
 * the nodes below it to fall idle on their own, or the job stays pending for
 * ever. Checked for backup (its end removes the copy-before-write filter)
 * and a cancelled mirror (the filter goes, the guest stays on the source).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BlockBackend } from '../../src/core/backend.js';
import { JobRegistry } from '../../src/jobs/job-registry.js';
import { backupJob } from '../../src/jobs/backup.js';
import { mirrorJob } from '../../src/jobs/mirror.js';
import type { Job } from '../../src/jobs/job.js';
import { hasQemu } from '../cli/harness.js';
import { SIZE, expectSameAsModel, makeChain, openTop, rawContent, sh } from './chain-fixture.js';

const WORKERS = 8;

/** 4 KiB writes, WORKERS at a time (worker w owns the blocks ≡ w mod WORKERS), until stopped. */
function busyGuest(guest: BlockBackend, model: Uint8Array) {
  let stopped = false;
  let writes = 0;
  const blocks = SIZE / 4096;
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; !stopped; i++) {
      const block = (((i * 7919 + w * 131) % (blocks / WORKERS)) * WORKERS + w) % blocks;
      const data = new Uint8Array(4096).fill(1 + ((i + w) % 250));
      await guest.write(block * 4096, data);
      model.set(data, block * 4096);
      writes++;
    }
  };
  const done = Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
  return {
    stop: async (): Promise<number> => {
      stopped = true;
      await done;
      return writes;
    },
  };
}

/** Waits for the job to settle (its own failure is left in job.error); throws after `ms` (a hang would otherwise only show as a test timeout). */
async function settledWithin(job: Job, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`job still ${job.status} after ${ms} ms`)), ms);
  });
  try {
    await Promise.race([job.settled().catch(() => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}

describe.skipIf(!hasQemu())('jobs end under a guest that never stops writing', () => {
  it('backup: concludes, the target holds the point in time, the guest its own writes', async () => {
    const dir = makeChain();
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'backup.qcow2', String(SIZE)], dir);
    const model = rawContent(dir, 'top.qcow2');
    const before = model.slice();
    const { graph, guest } = await openTop(dir);
    const target = await graph.open({ driver: 'qcow2', file: { driver: 'file', filename: join(dir, 'backup.qcow2') } });
    const job = new JobRegistry().create(await backupJob({ graph, source: guest.node, target, sync: 'full' }), { id: 'b0' });
    await target.unref();
    const g = busyGuest(guest, model);
    job.start();
    await settledWithin(job, 15_000);
    const writes = await g.stop();
    expect(job.error).toBeUndefined();
    expect(job.status).toBe('null');
    expect(writes).toBeGreaterThan(0);
    // The filter is gone: the guest sits on the image itself again.
    expect(guest.node.filename).toContain('top.qcow2');
    await guest.close();
    await graph.closeAll();
    expectSameAsModel(dir, before, 'backup.qcow2');
    expectSameAsModel(dir, model, 'top.qcow2');
  });

  it('mirror: cancelled while it copies (a busy guest keeps it from converging), the guest stays on the source', async () => {
    const dir = makeChain();
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'target.qcow2', String(SIZE)], dir);
    const model = rawContent(dir, 'top.qcow2');
    const { graph, guest } = await openTop(dir);
    const target = await graph.open({ driver: 'qcow2', file: { driver: 'file', filename: join(dir, 'target.qcow2') } });
    // 1 MiB/s: still copying the 8 MiB when cancelled (a fast mirror could be ready by then,
    // and a soft cancel of a ready mirror waits for the guest to let it converge, as in QEMU).
    const job = new JobRegistry().create(mirrorJob({ graph, source: guest.node, target }), { id: 'm0', speed: 1 << 20 });
    await target.unref();
    const g = busyGuest(guest, model);
    job.start();
    await new Promise((r) => setTimeout(r, 200));
    expect(job.status).toBe('running');
    job.cancel();
    await settledWithin(job, 15_000);
    await g.stop();
    expect(job.error?.code).toBe('ECANCELED');
    expect(guest.node.filename).toContain('top.qcow2');
    await guest.close();
    await graph.closeAll();
    expectSameAsModel(dir, model, 'top.qcow2');
  });
});

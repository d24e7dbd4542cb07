/**
 * The guest's random 4 KiB write throughput while a full backup of its disk
 * (a fully allocated qcow2) runs to a new qcow2, against the same seeded
 * workload on the same image without a backup. Copy-before-write makes the
 * first guest write to each cluster wait for that cluster's copy.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { BlockBackend } from '../../src/core/backend.js';
import { backupJob } from '../../src/jobs/backup.js';
import { JobRegistry } from '../../src/jobs/job-registry.js';
import { benchRoot, sh, writeData } from '../cli/convert.js';
import type { BenchResult } from '../types.js';
import { SIZE, SIZE_MB, openGuest, openTarget, remove } from './common.js';

/** Guest requests in flight. */
const DEPTH = 8;
const ROUNDS = 2;

/**
 * Seeded random 4 KiB writes, DEPTH at a time, until `until` resolves.
 * Resolves to the writes completed and the milliseconds they took.
 */
async function randomWrites(guest: BlockBackend, seed: number, until: Promise<unknown>): Promise<{ ops: number; ms: number }> {
  let x = seed >>> 0 || 1;
  const next = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  let stop = false;
  void until.then(
    () => (stop = true),
    () => (stop = true),
  );
  const blocks = SIZE / 4096;
  let ops = 0;
  const t0 = performance.now();
  const worker = async (w: number): Promise<void> => {
    const buf = new Uint8Array(4096).fill(w + 1);
    while (!stop) {
      buf[0] = next() & 0xff;
      await guest.write((next() % blocks) * 4096, buf);
      ops++;
    }
  };
  await Promise.all(Array.from({ length: DEPTH }, (_, w) => worker(w)));
  return { ops, ms: performance.now() - t0 };
}

/** Writes/s during a full backup; also how long the backup took. */
async function withBackup(dir: string, seed: number): Promise<{ rate: number; ms: number }> {
  remove(dir, 'backup.qcow2');
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'backup.qcow2', String(SIZE)], dir);
  const { graph, guest } = await openGuest(dir, 'disk.qcow2');
  const target = await openTarget(graph, dir, 'backup.qcow2');
  const reg = new JobRegistry();
  const job = reg.create(await backupJob({ graph, source: guest.node, target, sync: 'full' }), { id: 'bench' });
  await target.unref();
  job.start();
  const settled = job.settled();
  const r = await randomWrites(guest, seed, settled);
  await settled;
  if (job.error) throw job.error;
  await guest.close();
  await graph.closeAll();
  return { rate: (r.ops / r.ms) * 1000, ms: r.ms };
}

/** Writes/s of the same workload for `ms` without a backup. */
async function without(dir: string, seed: number, ms: number): Promise<number> {
  const { graph, guest } = await openGuest(dir, 'disk.qcow2');
  const r = await randomWrites(guest, seed, new Promise((res) => setTimeout(res, ms)));
  await guest.close();
  await graph.closeAll();
  return (r.ops / r.ms) * 1000;
}

export async function run(): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(benchRoot(SIZE_MB * 3), 'dw-bench-backup-'));
  try {
    writeData(join(dir, 'src.raw'), SIZE_MB);
    sh('qemu-img', ['convert', '-O', 'qcow2', 'src.raw', 'disk.qcow2'], dir);
    remove(dir, 'src.raw');
    // Warm-up (page cache, JIT), then interleaved, best of each.
    const warm = await withBackup(dir, 1);
    let base = 0;
    let during = 0;
    for (let round = 0; round < ROUNDS; round++) {
      base = Math.max(base, await without(dir, 2 + round, warm.ms));
      during = Math.max(during, (await withBackup(dir, 2 + round)).rate);
    }
    return [
      {
        name: `guest random 4 KiB writes (${DEPTH} in flight) on a ${SIZE_MB} MiB qcow2 during a full backup to a new qcow2`,
        unit: 'writes/s',
        value: during,
        baseline: 'the same workload without a backup',
        baselineValue: base,
        ratio: during / base,
        target: 0.5,
      },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Mirror and stream jobs against `diskworker img convert` of the same data
 * (in this process, same files, page cache warm): mirror of a fully
 * allocated qcow2 to a new qcow2 vs convert of it to qcow2; stream of a
 * chain (all data in the backing file, an empty overlay) vs convert of the
 * chain to qcow2. Throughput ratio, interleaved, best of three.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { mirrorJob } from '../../src/jobs/mirror.js';
import { streamJob } from '../../src/jobs/stream.js';
import { benchRoot, sh, writeData } from '../cli/convert.js';
import type { BenchResult } from '../types.js';
import { SIZE, SIZE_MB, convertInProcess, msOf, openGuest, openTarget, remove, runJob } from './common.js';

const ROUNDS = 3;

async function mirrorOnce(dir: string): Promise<number> {
  remove(dir, 'target.qcow2');
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'target.qcow2', String(SIZE)], dir);
  return msOf(async () => {
    const { graph, guest } = await openGuest(dir, 'full.qcow2');
    const target = await openTarget(graph, dir, 'target.qcow2');
    const driver = mirrorJob({ graph, source: guest.node, target, sync: 'full' });
    await target.unref();
    await runJob(driver, true);
    await guest.close();
    await graph.closeAll();
  });
}

async function streamOnce(dir: string): Promise<number> {
  remove(dir, 'top.qcow2');
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'full.qcow2', '-F', 'qcow2', 'top.qcow2'], dir);
  return msOf(async () => {
    const { graph, guest } = await openGuest(dir, 'top.qcow2');
    await runJob(streamJob({ graph, top: guest.node }), false);
    await guest.close();
    await graph.closeAll();
  });
}

async function convertOnce(dir: string, input: string): Promise<number> {
  remove(dir, 'out.qcow2');
  return msOf(() => convertInProcess(dir, ['-O', 'qcow2', input, 'out.qcow2']));
}

export async function run(): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(benchRoot(SIZE_MB * 5), 'dw-bench-jobs-'));
  const results: BenchResult[] = [];
  try {
    writeData(join(dir, 'src.raw'), SIZE_MB);
    sh('qemu-img', ['convert', '-O', 'qcow2', 'src.raw', 'full.qcow2'], dir);
    remove(dir, 'src.raw');
    const mibps = (ms: number): number => SIZE_MB / (ms / 1000);
    const cases: Array<{ name: string; job: () => Promise<number>; convertInput: string }> = [
      { name: `mirror sync=full of a fully allocated ${SIZE_MB} MiB qcow2 to a new qcow2`, job: () => mirrorOnce(dir), convertInput: 'full.qcow2' },
      { name: `stream of a ${SIZE_MB} MiB chain (data in the backing file) into its empty overlay`, job: () => streamOnce(dir), convertInput: 'top.qcow2' },
    ];
    for (const c of cases) {
      // A first job run warms the page cache and the JIT; then interleaved, best of each.
      await c.job();
      let job = Infinity;
      let conv = Infinity;
      for (let round = 0; round < ROUNDS; round++) {
        job = Math.min(job, await c.job());
        if (c.convertInput === 'top.qcow2') {
          remove(dir, 'top.qcow2');
          sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'full.qcow2', '-F', 'qcow2', 'top.qcow2'], dir);
        }
        conv = Math.min(conv, await convertOnce(dir, c.convertInput));
      }
      remove(dir, 'out.qcow2', 'target.qcow2', 'top.qcow2');
      results.push({
        name: c.name,
        unit: 'MiB/s',
        value: mibps(job),
        baseline: 'diskworker img convert -O qcow2 of the same data, in-process',
        baselineValue: mibps(conv),
        ratio: conv / job,
        target: 0.85,
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

/**
 * Shared pieces of the job benchmarks: images made by qemu-img, the guest's
 * BlockBackend on a node-file qcow2, and `diskworker img convert` run in this
 * process (the same library path, files and page cache as the jobs).
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { BlockBackend } from '../../src/core/backend.js';
import type { BlockGraph } from '../../src/core/graph.js';
import { main } from '../../src/cli/main.js';
import { createNodeGraph } from '../../src/node.js';
import { JobRegistry } from '../../src/jobs/job-registry.js';
import type { JobDriver } from '../../src/jobs/job-types.js';

export const MiB = 1024 * 1024;
/** Image size: BENCH_SIZE_MB (default 1024). */
export const SIZE_MB = Number(process.env['BENCH_SIZE_MB'] ?? 1024);
export const SIZE = SIZE_MB * MiB;

/** Opens `file` (a qcow2 in `dir`) as the guest's disk. */
export async function openGuest(dir: string, file: string): Promise<{ graph: BlockGraph; guest: BlockBackend }> {
  const graph = createNodeGraph();
  const guest = await BlockBackend.open(graph, { driver: 'qcow2', file: { driver: 'file', filename: join(dir, file) } });
  return { graph, guest };
}

/** Opens `file` read-write in `graph` as a job's target node (the graph holds it until closeAll). */
export async function openTarget(graph: BlockGraph, dir: string, file: string) {
  return graph.open({ driver: 'qcow2', file: { driver: 'file', filename: join(dir, file) } });
}

/**
 * Runs a job to its end: for mirror (`waitReady`) until ready, then
 * complete. Resolves when it has settled; rejects with the job's error.
 */
export async function runJob(driver: JobDriver, waitReady: boolean): Promise<void> {
  const reg = new JobRegistry();
  const job = reg.create(driver, { id: 'bench' });
  job.start();
  if (waitReady) {
    await job.waitFor((s) => s === 'ready' || s === 'concluded' || s === 'null');
    if (job.status !== 'ready') throw job.error ?? new Error(`job ended as ${job.status}`);
    job.complete();
  }
  await job.settled();
  if (job.error) throw job.error;
}

/** `diskworker img convert <args>` in this process, cwd `dir`; throws on a non-zero exit. */
export async function convertInProcess(dir: string, args: string[]): Promise<void> {
  let err = '';
  const old = process.cwd();
  process.chdir(dir);
  try {
    const code = await main(['img', 'convert', ...args], { stdout: () => {}, stderr: (s) => void (err += s) });
    if (code !== 0) throw new Error(`diskworker img convert ${args.join(' ')}: exit ${code}: ${err}`);
  } finally {
    process.chdir(old);
  }
}

/** Milliseconds `f` takes. */
export async function msOf(f: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

export function remove(dir: string, ...files: string[]): void {
  for (const f of files) rmSync(join(dir, f), { force: true });
}

/**
 * Internal snapshot create and delete on a fully allocated 8 GiB qcow2 image
 * (64 KiB clusters, every cluster allocated: preallocation=metadata, so the
 * file stays sparse), `diskworker img snapshot -c` / `-d` against `qemu-img
 * snapshot -c` / `-d` on copies of the same image, start-up subtracted (the
 * median time of `img info` on a 1 MiB image, per tool). Each tool's create
 * takes a reference on all 131072 data clusters and 16 L2 tables; delete
 * drops them. Also apply (goto), reported. Median of five runs each.
 * DW_BENCH_SNAPSHOT_GB overrides the size (default 8).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchResult } from '../types.js';

const BIN = join(process.cwd(), 'dist/cli/diskworker.js');

function sh(cmd: string, args: string[], cwd: string): void {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

/** Median wall time (ms) of `runs` runs of a command, `before` run untimed before each. */
function median(cmd: string[], cwd: string, runs: number, before?: () => void): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    before?.();
    const t0 = performance.now();
    sh(cmd[0]!, cmd.slice(1), cwd);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

export async function run(): Promise<BenchResult[]> {
  const gb = Number(process.env['DW_BENCH_SNAPSHOT_GB'] ?? 8);
  const dir = mkdtempSync(join(tmpdir(), 'dw-bench-snap-'));
  try {
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata,cluster_size=65536', 'full.qcow2', `${gb}G`], dir);
    sh('qemu-img', ['snapshot', '-c', 'base', 'full.qcow2'], dir);
    sh('qemu-img', ['snapshot', '-d', 'base', 'full.qcow2'], dir);
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'tiny.qcow2', '1M'], dir);
    const runs = 5;
    const ours = ['node', BIN];
    const qemu = ['qemu-img'];
    // cp keeps the copy sparse (the image is 8 GiB long, a few MiB used).
    const fresh = (name: string) => () => sh('cp', ['--sparse=always', 'full.qcow2', name], dir);
    const withSnap = (tool: string[], name: string) => () => {
      fresh(name)();
      sh(tool[0]!, [...tool.slice(1), ...(tool === ours ? ['img'] : []), 'snapshot', '-c', 's1', name], dir);
    };
    const cmd = (tool: string[], ...args: string[]) => [...tool, ...(tool === ours ? ['img'] : []), ...args];
    const start = { ours: median(cmd(ours, 'info', 'tiny.qcow2'), dir, runs), qemu: median(cmd(qemu, 'info', 'tiny.qcow2'), dir, runs) };
    const results: BenchResult[] = [];
    for (const [op, target] of [['create', 1.0], ['delete', 1.0], ['apply', undefined]] as const) {
      const args = op === 'create' ? ['-c', 's1'] : op === 'delete' ? ['-d', 's1'] : ['-a', 's1'];
      const o = median(cmd(ours, 'snapshot', ...args, 'o.qcow2'), dir, runs, op === 'create' ? fresh('o.qcow2') : withSnap(ours, 'o.qcow2')) - start.ours;
      const q = median(cmd(qemu, 'snapshot', ...args, 'q.qcow2'), dir, runs, op === 'create' ? fresh('q.qcow2') : withSnap(qemu, 'q.qcow2')) - start.qemu;
      results.push({
        name: `img snapshot ${args[0]} on a fully allocated ${gb} GiB qcow2 (64 KiB clusters), start-up subtracted`,
        unit: 'ms',
        value: o,
        baseline: `qemu-img snapshot ${args[0]}`,
        baselineValue: q,
        ratio: q / o,
        ...(target !== undefined ? { target } : {}),
      });
    }
    return results;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

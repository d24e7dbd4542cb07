/**
 * Internal snapshot create and delete on a fully allocated 8 GiB qcow2 image
 * (64 KiB clusters, every cluster allocated: preallocation=metadata, so the
 * file stays sparse), `diskworker img snapshot -c` / `-d` against `qemu-img
 * snapshot -c` / `-d` on copies of the same image. Each tool's create takes a
 * reference on all 131072 data clusters and 16 L2 tables; delete drops them.
 * Also apply (goto), reported.
 *
 * The figure is CPU time (user + sys of the process, from bash's `times`, in
 * ms), start-up subtracted (the median CPU time of `img info` on a 1 MiB
 * image, per tool), median of 11 interleaved rounds: at the load average of
 * a shared 2-core machine, wall-time medians of these 20-50 ms operations
 * moved by more than the operations take. DW_BENCH_SNAPSHOT_GB overrides the
 * size (default 8).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchResult } from '../types.js';

const BIN = join(process.cwd(), 'dist/cli/diskworker.js');
const ROUNDS = 11;

function sh(cmd: string, args: string[], cwd: string): void {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

const quote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;

/** CPU time (ms) of one run of a command: bash's `times` line for its children. */
function cpuMs(cmd: string[], cwd: string): number {
  const r = spawnSync('bash', ['-c', `${cmd.map(quote).join(' ')} >/dev/null || exit 1; times`], { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd.join(' ')}: ${r.stderr}`);
  // Second line: the children's user and system time, e.g. "0m0.231s 0m0.048s".
  const m = r.stdout.trim().split('\n')[1]!.match(/(\d+)m([\d.]+)s (\d+)m([\d.]+)s/);
  if (!m) throw new Error(`times: ${r.stdout}`);
  return (Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4])) * 1000;
}

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

export async function run(): Promise<BenchResult[]> {
  const gb = Number(process.env['DW_BENCH_SNAPSHOT_GB'] ?? 8);
  const dir = mkdtempSync(join(tmpdir(), 'dw-bench-snap-'));
  try {
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata,cluster_size=65536', 'full.qcow2', `${gb}G`], dir);
    sh('qemu-img', ['snapshot', '-c', 'base', 'full.qcow2'], dir);
    sh('qemu-img', ['snapshot', '-d', 'base', 'full.qcow2'], dir);
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'tiny.qcow2', '1M'], dir);
    const tools = { ours: ['node', BIN, 'img'], qemu: ['qemu-img'] } as const;
    type Tool = keyof typeof tools;
    const ops = ['info', 'create', 'delete', 'apply'] as const;
    const t: Record<Tool, Record<(typeof ops)[number], number[]>> = {
      ours: { info: [], create: [], delete: [], apply: [] },
      qemu: { info: [], create: [], delete: [], apply: [] },
    };
    // The first run of each of our commands writes its code cache; not measured.
    cpuMs([...tools.ours, 'info', 'tiny.qcow2'], dir);
    sh('cp', ['--sparse=always', 'full.qcow2', 'warm.qcow2'], dir);
    cpuMs([...tools.ours, 'snapshot', '-c', 's1', 'warm.qcow2'], dir);
    for (let round = 0; round < ROUNDS; round++) {
      for (const tool of ['ours', 'qemu'] as const) {
        const img = `${tool}.qcow2`;
        // cp keeps the copy sparse (the image is 8 GiB long, a few MiB used).
        const fresh = () => sh('cp', ['--sparse=always', 'full.qcow2', img], dir);
        t[tool].info.push(cpuMs([...tools[tool], 'info', 'tiny.qcow2'], dir));
        fresh();
        t[tool].create.push(cpuMs([...tools[tool], 'snapshot', '-c', 's1', img], dir));
        t[tool].delete.push(cpuMs([...tools[tool], 'snapshot', '-d', 's1', img], dir));
        fresh();
        sh(tools[tool][0], [...tools[tool].slice(1), 'snapshot', '-c', 's1', img], dir);
        t[tool].apply.push(cpuMs([...tools[tool], 'snapshot', '-a', 's1', img], dir));
      }
    }
    const results: BenchResult[] = [];
    for (const [op, flag, target] of [['create', '-c', 1.0], ['delete', '-d', 1.0], ['apply', '-a', undefined]] as const) {
      const o = median(t.ours[op]) - median(t.ours.info);
      const q = median(t.qemu[op]) - median(t.qemu.info);
      results.push({
        name: `img snapshot ${flag} on a fully allocated ${gb} GiB qcow2 (64 KiB clusters), CPU time, start-up subtracted`,
        unit: 'ms',
        value: o,
        baseline: `qemu-img snapshot ${flag}`,
        baselineValue: q,
        ratio: q / o,
        ...(target !== undefined ? { target } : {}),
      });
    }
    results.push({
      name: 'start-up: img info on a 1 MiB qcow2, CPU time',
      unit: 'ms',
      value: median(t.ours.info),
      baseline: 'qemu-img info',
      baselineValue: median(t.qemu.info),
      ratio: median(t.qemu.info) / median(t.ours.info),
    });
    return results;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

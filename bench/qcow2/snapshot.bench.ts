/**
 * Internal snapshot create and delete on a fully allocated 8 GiB qcow2 image
 * (64 KiB clusters, every cluster allocated: preallocation=metadata, so the
 * file stays sparse), `diskworker img snapshot -c` / `-d` against `qemu-img
 * snapshot -c` / `-d` on copies of the same image. Each tool's create takes a
 * reference on all 131072 data clusters and 16 L2 tables; delete drops them.
 * Also apply (goto), reported.
 *
 * The figure is CPU time (user + system, all threads) per operation, start-up
 * subtracted, the mean of ROUNDS runs (DW_BENCH_SNAPSHOT_ROUNDS, default 15).
 * qemu-img: the CPU time bash's `times` reports for ROUNDS runs in one shell
 * (so the 10 ms clock tick is divided among them), less the same for `info`
 * of a 1 MiB image. Ours: our 150-250 ms process start-up spreads by more
 * than these operations take, so each run is measured inside its process
 * (cpu-of-command.mjs: from just before the command to its end, the same
 * command on a 1 MiB image run first so V8's compiling, which the installed
 * CLI's code cache spares, is not counted), less the same for `info`. The
 * same is measured on 64 GiB, where the operation outweighs any start-up.
 * DW_BENCH_SNAPSHOT_GB (comma-separated GiB, default "8,64") overrides.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchResult } from '../types.js';

const DIST = join(process.cwd(), 'dist');
const RUNNER = join(process.cwd(), 'bench/qcow2/cpu-of-command.mjs');
const ROUNDS = Number(process.env['DW_BENCH_SNAPSHOT_ROUNDS'] ?? 15);

function sh(cmd: string, args: string[], cwd: string, env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: env ? { ...process.env, ...env } : process.env });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const quote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;

/** Mean CPU time (ms) of qemu-img with each of `argsPerRun`, run one after another in one shell. */
function qemuMeanMs(argsPerRun: string[][], cwd: string): number {
  const script = argsPerRun.map((a) => `qemu-img ${a.map(quote).join(' ')} >/dev/null || exit 1`).join('\n');
  const out = sh('bash', ['-c', `${script}\ntimes`], cwd);
  // Second line of `times`: the children's user and system time, e.g. "0m0.231s 0m0.048s".
  const m = out.trim().split('\n')[1]!.match(/(\d+)m([\d.]+)s (\d+)m([\d.]+)s/);
  if (!m) throw new Error(`times: ${out}`);
  return ((Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4])) * 1000) / argsPerRun.length;
}

/** CPU time (ms) of one of our `img` commands inside its process, after the same command on `warm`. */
function oursMs(args: string[], warm: string, cwd: string): number {
  return Number(sh(process.execPath, [RUNNER, DIST, 'img', ...args], cwd, { DW_WARM_IMAGE: warm }).trim());
}

const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;

export async function run(): Promise<BenchResult[]> {
  const sizes = (process.env['DW_BENCH_SNAPSHOT_GB'] ?? '8,64').split(',').map(Number);
  const results: BenchResult[] = [];
  for (const gb of sizes) results.push(...(await runSize(gb)));
  return results;
}

async function runSize(gb: number): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'dw-bench-snap-'));
  try {
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata,cluster_size=65536', 'full.qcow2', `${gb}G`], dir);
    sh('qemu-img', ['snapshot', '-c', 'base', 'full.qcow2'], dir);
    sh('qemu-img', ['snapshot', '-d', 'base', 'full.qcow2'], dir);
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'tiny.qcow2', '1M'], dir);
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'tiny-s1.qcow2', '1M'], dir);
    sh('qemu-img', ['snapshot', '-c', 's1', 'tiny-s1.qcow2'], dir);
    const names = Array.from({ length: ROUNDS }, (_, i) => `q${i}.qcow2`);
    // cp keeps each copy sparse (the image is many GiB long, a few MiB used).
    const fresh = (img: string) => sh('cp', ['--sparse=always', 'full.qcow2', img], dir);
    const ops = [
      ['create', ['snapshot', '-c', 's1'], 'tiny.qcow2'],
      ['delete', ['snapshot', '-d', 's1'], 'tiny-s1.qcow2'],
      ['apply', ['snapshot', '-a', 's1'], 'tiny-s1.qcow2'],
    ] as const;
    const ours: Record<string, number[]> = { info: [], create: [], delete: [], apply: [] };
    const qemu: Record<string, number> = {};
    for (let r = 0; r < ROUNDS; r++) {
      copyFileSync(join(dir, 'tiny.qcow2'), join(dir, 'warm.qcow2'));
      ours.info!.push(oursMs(['info', 'tiny.qcow2'], 'warm.qcow2', dir));
    }
    qemu.info = qemuMeanMs(names.map(() => ['info', 'tiny.qcow2']), dir);
    for (const [op, args, warmFrom] of ops) {
      // Each tool's runs start from the same images: a fresh copy, with a snapshot s1 made by qemu-img to delete or apply.
      const prepare = () => {
        for (const img of names) {
          fresh(img);
          if (op !== 'create') sh('qemu-img', ['snapshot', '-c', 's1', img], dir);
        }
      };
      prepare();
      for (const img of names) {
        copyFileSync(join(dir, warmFrom), join(dir, 'warm.qcow2'));
        ours[op]!.push(oursMs([...args, img], 'warm.qcow2', dir));
      }
      prepare();
      qemu[op] = qemuMeanMs(names.map((img) => [...args, img]), dir);
    }
    const results: BenchResult[] = [];
    for (const [op, flag, target] of [['create', '-c', 1.0], ['delete', '-d', 1.0], ['apply', '-a', undefined]] as const) {
      const o = mean(ours[op]!) - mean(ours.info!);
      const q = qemu[op]! - qemu.info;
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
      name: `start-up and a 1 MiB image's open and close: img info, CPU time (ours inside the process, with the ${gb} GiB rounds)`,
      unit: 'ms',
      value: mean(ours.info!),
      baseline: 'qemu-img info (whole process)',
      baselineValue: qemu.info,
      ratio: qemu.info / mean(ours.info!),
    });
    return results;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

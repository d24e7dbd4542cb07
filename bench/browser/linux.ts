/**
 * The Linux guest in v86 (scripts/build-linux-guest.mjs): boot time and the
 * guest's own dd figures on a DiskWorker qcow2 overlay in OPFS (over the
 * HTTP-served root image) vs the same image as an in-memory ArrayBuffer, in
 * one browser session, runs alternated. Inside the guest: a sequential write
 * of BENCH_LINUX_MIB MiB (dd conv=fsync), the same file read back with
 * O_DIRECT after dropping caches, and BENCH_LINUX_RANDOM random 4 KiB O_DIRECT
 * reads of it (busybox dd). Ratios are DiskWorker's speed over memory's (boot:
 * time over time).
 *
 *   npx tsx bench/browser/linux.ts
 * Environment: BENCH_LINUX_MIB (default 64), BENCH_LINUX_RANDOM (200),
 * BENCH_LINUX_REPS (1), BENCH_LINUX_MODES (memory,diskworker), BENCH_PORT (4175).
 */
import fs from 'node:fs';
import path from 'node:path';
import { root, withBenchPage } from './session.js';
import type { LinuxRun } from './page/linux-main.js';

const MIB = Number(process.env.BENCH_LINUX_MIB ?? 64);
const RANDOM = Number(process.env.BENCH_LINUX_RANDOM ?? 200);
const REPS = Number(process.env.BENCH_LINUX_REPS ?? 1);
/** Which disks to boot on (both for the ratios; one alone to look at one). */
const MODES = (process.env.BENCH_LINUX_MODES ?? 'memory,diskworker').split(',') as LinuxRun['mode'][];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const diskBytes = fs.statSync(path.join(root, 'build/linux-guest/root.raw')).size;
  const runs = await withBenchPage('linux.html', 'linux bench ready', async (page) => {
    const out: LinuxRun[] = [];
    for (let i = 0; i < REPS; i++) {
      for (const mode of MODES) {
        const r = await page.evaluate(({ mode, mib, random, diskBytes }) => window.linuxBench.run(mode, mib, random, diskBytes), { mode, mib: MIB, random: RANDOM, diskBytes });
        process.stdout.write(`${JSON.stringify(r)}\n`);
        out.push(r);
      }
    }
    return out;
  });
  const pick = (mode: LinuxRun['mode'], k: 'bootMs' | 'writeMs' | 'readMs' | 'randomMs') => median(runs.filter((r) => r.mode === mode).map((r) => r[k]));
  const rate = (mode: LinuxRun['mode'], k: 'writeMs' | 'readMs') => MIB / (pick(mode, k) / 1000);
  const iops = (mode: LinuxRun['mode']) => RANDOM / (pick(mode, 'randomMs') / 1000);
  const rows = [
    ['boot (s)', pick('diskworker', 'bootMs') / 1000, pick('memory', 'bootMs') / 1000, pick('diskworker', 'bootMs') / pick('memory', 'bootMs'), '≤ 1.3× (time)'],
    [`seq write ${MIB} MiB (MiB/s)`, rate('diskworker', 'writeMs'), rate('memory', 'writeMs'), rate('diskworker', 'writeMs') / rate('memory', 'writeMs'), '≥ 0.5×'],
    [`seq read ${MIB} MiB (MiB/s)`, rate('diskworker', 'readMs'), rate('memory', 'readMs'), rate('diskworker', 'readMs') / rate('memory', 'readMs'), '≥ 0.7×'],
    [`random 4 KiB reads (/s)`, iops('diskworker'), iops('memory'), iops('diskworker') / iops('memory'), '≥ 0.7×'],
  ];
  process.stdout.write(`\n| guest figure | DiskWorker | in memory | ratio | goal |\n|---|---|---|---|---|\n`);
  for (const [what, a, b, ratio, goal] of rows) {
    process.stdout.write(`| ${what} | ${(a as number).toFixed(2)} | ${(b as number).toFixed(2)} | ${(ratio as number).toFixed(2)}× | ${goal} |\n`);
  }
}

await main();

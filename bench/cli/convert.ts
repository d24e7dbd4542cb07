/**
 * `diskworker img` against `qemu-img` on the same files, in the same run:
 * convert of a fully allocated / zlib-compressed / zstd-compressed qcow2 to
 * raw, raw to qcow2 (wall time, start-up excluded), the start-up time itself,
 * and the peak RSS of a convert four times as large.
 *
 * Sizes: BENCH_SIZE_MB (default 1024; the memory case uses 4×).
 * Needs the built bin (npm run build) and qemu-img 7.2.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, writeSync, closeSync, rmSync, readFileSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchResult } from '../types.js';

const here = dirname(fileURLToPath(import.meta.url));
export const BIN = resolve(here, '../../dist/cli/diskworker.js');
const SIZE_MB = Number(process.env['BENCH_SIZE_MB'] ?? 1024);

/** Writes `mb` MiB of data that compresses to about half (random nibbles, stamped per 4 KiB). */
export function writeData(path: string, mb: number): void {
  const chunk = 16 << 20;
  const buf = new Uint8Array(chunk);
  let x = 0x12345678;
  for (let i = 0; i < chunk; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = (x >>> 24) & 0x0f;
  }
  const fd = openSync(path, 'w');
  try {
    for (let pos = 0; pos < mb << 20; pos += chunk) {
      const n = Math.min(chunk, (mb << 20) - pos);
      // Make every 4 KiB block unique so nothing dedups.
      for (let b = 0; b < n; b += 4096) {
        const v = pos + b;
        buf[b] = v & 0xff;
        buf[b + 1] = (v >>> 8) & 0xff;
        buf[b + 2] = (v >>> 16) & 0xff;
        buf[b + 3] = (v >>> 24) & 0xff;
      }
      writeSync(fd, buf, 0, n, pos);
    }
  } finally {
    closeSync(fd);
  }
}

export function sh(cmd: string, args: string[], cwd: string): void {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
}

function dropOutput(dir: string): void {
  for (const f of ['out.raw', 'out.qcow2']) rmSync(join(dir, f), { force: true });
}

/** Wall time of one process in ms; also its peak RSS (VmHWM) in KiB when asked. */
export function timed(cmd: string, args: string[], cwd: string, wantRss = false): Promise<{ ms: number; rssKiB: number }> {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    let rss = 0;
    child.stderr.on('data', (d) => (err += String(d)));
    const poll = wantRss
      ? setInterval(() => {
          try {
            const m = /VmHWM:\s+([0-9]+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
            if (m) rss = Math.max(rss, Number(m[1]));
          } catch {
            // exited
          }
        }, 20)
      : undefined;
    child.on('exit', (code) => {
      if (poll) clearInterval(poll);
      const ms = performance.now() - t0;
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err}`));
      else resolvePromise({ ms, rssKiB: rss });
    });
  });
}

/**
 * Where the images go: BENCH_DIR, else /dev/shm when it has room (other work
 * on the machine makes disk write-back timings very noisy), else the temp dir.
 */
export function benchRoot(needMb: number): string {
  if (process.env['BENCH_DIR']) return process.env['BENCH_DIR'];
  try {
    const st = statfsSync('/dev/shm');
    if ((st.bavail * st.bsize) / 2 ** 20 > needMb * 1.2) return '/dev/shm';
  } catch {
    // no /dev/shm
  }
  return tmpdir();
}

async function best(n: number, f: () => Promise<number>): Promise<number> {
  let b = Infinity;
  for (let i = 0; i < n; i++) b = Math.min(b, await f());
  return b;
}

/** Start-up of each tool (info on a small qcow2, best of 7), in ms. */
export async function startupMs(dir: string): Promise<{ ours: number; qemu: number }> {
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'small.qcow2', '64M'], dir);
  const ours = await best(7, async () => (await timed(process.execPath, [BIN, 'img', 'info', 'small.qcow2'], dir)).ms);
  const qemu = await best(7, async () => (await timed('qemu-img', ['info', 'small.qcow2'], dir)).ms);
  return { ours, qemu };
}

/** src.raw, and full.qcow2, zlib.qcow2, zstd.qcow2 made from it by qemu-img, in `dir`. */
export function makeConvertImages(dir: string, sizeMb: number): void {
  writeData(join(dir, 'src.raw'), sizeMb);
  sh('qemu-img', ['convert', '-O', 'qcow2', 'src.raw', 'full.qcow2'], dir);
  sh('qemu-img', ['convert', '-c', '-O', 'qcow2', 'src.raw', 'zlib.qcow2'], dir);
  sh('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', 'src.raw', 'zstd.qcow2'], dir);
}

/**
 * The four converts (qcow2, zlib qcow2, zstd qcow2 → raw; raw → qcow2) by
 * both tools on the images of {@link makeConvertImages}, page cache warm,
 * interleaved, best of three, start-up subtracted (the least of `startup`
 * and of start-ups measured between the rounds; needs small.qcow2 from
 * {@link startupMs}). `targets`: the ratio
 * asked for (zstd has its own). With `rssLimitMb`, also the peak RSS of our
 * convert in each case against that limit.
 */
export async function convertCases(
  dir: string,
  sizeMb: number,
  startup: { ours: number; qemu: number },
  targets: { plain: number; zstd: number },
  rssLimitMb?: number,
): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  const cases: Array<{ name: string; args: string[]; target: number }> = [
    { name: `convert -O raw, fully allocated ${sizeMb} MiB qcow2`, args: ['convert', '-O', 'raw', 'full.qcow2', 'out.raw'], target: targets.plain },
    { name: `convert -O raw, zlib-compressed ${sizeMb} MiB qcow2`, args: ['convert', '-O', 'raw', 'zlib.qcow2', 'out.raw'], target: targets.plain },
    { name: `convert -O raw, zstd-compressed ${sizeMb} MiB qcow2`, args: ['convert', '-O', 'raw', 'zstd.qcow2', 'out.raw'], target: targets.zstd },
    { name: `convert -O qcow2 from ${sizeMb} MiB raw`, args: ['convert', '-O', 'qcow2', 'src.raw', 'out.qcow2'], target: targets.plain },
  ];
  const rss: BenchResult[] = [];
  for (const c of cases) {
    let peakKiB = 0;
    // Warm the page cache once so both tools read from memory.
    dropOutput(dir);
    await timed('qemu-img', c.args, dir);
    // Interleaved, best of three each: the machine may be busy with other work.
    let q = Infinity;
    let o = Infinity;
    // Start-up measured next to each case's rounds: the machine's load changes over a run.
    let qStart = startup.qemu;
    let oStart = startup.ours;
    for (let round = 0; round < 3; round++) {
      qStart = Math.min(qStart, (await timed('qemu-img', ['info', 'small.qcow2'], dir)).ms);
      oStart = Math.min(oStart, (await timed(process.execPath, [BIN, 'img', 'info', 'small.qcow2'], dir)).ms);
      dropOutput(dir);
      q = Math.min(q, (await timed('qemu-img', c.args, dir)).ms);
      dropOutput(dir);
      const r = await timed(process.execPath, [BIN, 'img', ...c.args], dir, rssLimitMb !== undefined);
      o = Math.min(o, r.ms);
      peakKiB = Math.max(peakKiB, r.rssKiB);
    }
    const oursNet = Math.max(1, o - oStart);
    const qemuNet = Math.max(1, q - qStart);
    results.push({
      name: `${c.name} (start-up excluded)`,
      unit: 'ms',
      value: oursNet,
      baseline: 'qemu-img, same files',
      baselineValue: qemuNet,
      ratio: qemuNet / oursNet,
      target: c.target,
    });
    if (rssLimitMb !== undefined) {
      const mb = (peakKiB * 1024) / 1e6;
      rss.push({ name: `peak RSS of ${c.name}`, unit: 'MB', value: mb, baseline: 'limit', baselineValue: rssLimitMb, ratio: rssLimitMb / mb, target: 1 });
    }
  }
  dropOutput(dir);
  return [...results, ...rss];
}

export async function run(): Promise<BenchResult[]> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run npm run build first`);
  const dir = mkdtempSync(join(benchRoot(SIZE_MB * 5), 'dw-bench-cli-'));
  const results: BenchResult[] = [];
  try {
    const node = process.execPath;
    const { ours: oursStart, qemu: qemuStart } = await startupMs(dir);
    results.push({
      name: 'start-up: diskworker img info on a small qcow2',
      unit: 'ms',
      value: oursStart,
      baseline: 'qemu-img info',
      baselineValue: qemuStart,
      ratio: qemuStart / oursStart,
    });
    results.push({
      name: 'start-up: diskworker img info against the 250 ms aim',
      unit: 'ms',
      value: oursStart,
      baseline: 'aim',
      baselineValue: 250,
      ratio: 250 / oursStart,
      target: 1,
    });

    makeConvertImages(dir, SIZE_MB);
    results.push(...(await convertCases(dir, SIZE_MB, { ours: oursStart, qemu: qemuStart }, { plain: 1 / 1.5, zstd: 1 / 2.0 })));
    dropOutput(dir);
    rmSync(join(dir, 'full.qcow2'), { force: true });
    rmSync(join(dir, 'zlib.qcow2'), { force: true });
    rmSync(join(dir, 'zstd.qcow2'), { force: true });

    // Peak memory during a convert four times as large (raw → qcow2), on disk.
    rmSync(join(dir, 'src.raw'), { force: true });
    const bigDir = mkdtempSync(join(process.env['BENCH_DIR'] ?? tmpdir(), 'dw-bench-cli-big-'));
    let mem;
    try {
      writeData(join(bigDir, 'big.raw'), SIZE_MB * 4);
      mem = await timed(node, [BIN, 'img', 'convert', '-O', 'qcow2', 'big.raw', 'out.qcow2'], bigDir, true);
    } finally {
      rmSync(bigDir, { recursive: true, force: true });
    }
    const mb = (mem.rssKiB * 1024) / 1e6;
    results.push({
      name: `peak RSS of convert -O qcow2 from ${SIZE_MB * 4} MiB raw`,
      unit: 'MB',
      value: mb,
      baseline: 'limit',
      baselineValue: 200,
      ratio: 200 / mb,
      target: 1,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  run().then((rs) => {
    for (const r of rs) console.log(`${r.name}: ${r.value.toFixed(1)} ${r.unit} vs ${r.baseline} ${r.baselineValue.toFixed(1)} → ${r.ratio.toFixed(2)}x${r.target ? ` (target ${r.target.toFixed(2)})` : ''}`);
  });
}

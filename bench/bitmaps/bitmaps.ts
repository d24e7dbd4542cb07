/**
 * Dirty bitmap costs (issue #12's speed section), each a ratio to a baseline
 * measured in the same run:
 * - random 4 KiB writes to an allocated qcow2 image with one enabled bitmap vs
 *   the same writes with it disabled (≥ 0.97×);
 * - `img bitmap --merge` of two bitmaps on a 1 TiB image with 1 % of the
 *   granules dirty vs `qemu-img bitmap --merge`, start-up subtracted (≤ 1.0× of
 *   qemu-img's time, i.e. ratio ≥ 1.0);
 * - loading and storing a 16 Mi-bit bitmap (open + close of the image) vs
 *   reading and writing the same number of bytes with plain file I/O, and the
 *   heap the loaded bitmap takes against its own size.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockBackend, MemoryStorage, BlockGraph, createMemoryDriver, rawDriver, qcow2Driver, createNodeGraph } from '../../src/node.js';
import { addDirtyBitmap } from '../../src/core/dirty-bitmap.js';
import { opsPerSecond, type BenchResult } from '../types.js';

const MiB = 1 << 20;
const BIN = join(process.cwd(), 'dist/cli/diskworker.js');

function sh(cmd: string, args: string[], cwd: string): void {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

async function writeOverhead(dir: string): Promise<BenchResult> {
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', 'w.qcow2', '256M'], dir);
  const storage = new MemoryStorage();
  const bytes = new Uint8Array(readFileSync(join(dir, 'w.qcow2')));
  storage.create('w.qcow2', bytes.length).writeRaw(0, bytes);
  const graph = new BlockGraph([createMemoryDriver(storage), rawDriver, qcow2Driver], 'memory');
  const bb = await BlockBackend.open(graph, { driver: 'qcow2', file: { driver: 'memory', filename: 'w.qcow2' } });
  const bm = addDirtyBitmap(bb.node, 'b0');
  const buf = new Uint8Array(4096).fill(7);
  const slots = (256 * MiB) / 4096;
  let i = 0;
  const write = () => bb.write(((i++ * 7919) % slots) * 4096, buf);
  let withBitmap = 0;
  let without = 0;
  // Interleaved rounds, best of each: both see the same machine state.
  for (let round = 0; round < 4; round++) {
    bm.disabled = true;
    without = Math.max(without, await opsPerSecond(write, 600));
    bm.disabled = false;
    withBitmap = Math.max(withBitmap, await opsPerSecond(write, 600));
  }
  await bb.close();
  await graph.closeAll();
  return {
    name: 'random 4 KiB writes to an allocated qcow2 (memory back end) with one enabled bitmap',
    unit: 'ops/s',
    value: withBitmap,
    baseline: 'the same writes, bitmap disabled',
    baselineValue: without,
    ratio: withBitmap / without,
    target: 0.97,
  };
}

/** A 1 TiB image with bitmaps b0 and b1 (64 KiB granules, 16 Mi bits), 1 % of b0's granules dirty. */
async function makeMergeImage(dir: string): Promise<void> {
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'big.qcow2', '1T'], dir);
  const graph = createNodeGraph();
  const bb = await BlockBackend.open(graph, join(dir, 'big.qcow2'));
  const b0 = addDirtyBitmap(bb.node, 'b0', { granularity: 65536, persistent: true });
  addDirtyBitmap(bb.node, 'b1', { granularity: 65536, persistent: true });
  const granules = 2 ** 40 / 65536;
  let x = 12345;
  for (let n = 0; n < granules / 100; n++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b0.setDirty((x % granules) * 65536, 65536);
  }
  await bb.close();
  await graph.closeAll();
}

/** Wall and CPU (user + system) time of one run of a command, in ms; CPU through /usr/bin/time when it exists. */
function runTimed(cmd: string, args: string[], cwd: string): { wall: number; cpu: number } {
  const timed = existsSync('/usr/bin/time');
  const t0 = performance.now();
  const r = timed
    ? spawnSync('/usr/bin/time', ['-f', 'CPU %U %S', cmd, ...args], { cwd, encoding: 'utf8' })
    : spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  const wall = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  const m = /CPU ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr);
  return { wall, cpu: m ? (Number(m[1]) + Number(m[2])) * 1000 : NaN };
}

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

async function mergeSpeed(dir: string): Promise<BenchResult[]> {
  await makeMergeImage(dir);
  const pristine = readFileSync(join(dir, 'big.qcow2'));
  const restore = () => writeFileSync(join(dir, 'big.qcow2'), pristine);
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'tiny.qcow2', '1M'], dir);
  // Interleaved: each round runs all four commands, so both tools see the same machine.
  const runs = 15;
  const t = { q: [] as number[], o: [] as number[], qs: [] as number[], os: [] as number[], qc: [] as number[], oc: [] as number[], qsc: [] as number[], osc: [] as number[] };
  for (let i = 0; i < runs; i++) {
    let r = runTimed('qemu-img', ['info', 'tiny.qcow2'], dir);
    t.qs.push(r.wall);
    t.qsc.push(r.cpu);
    r = runTimed('node', [BIN, 'img', 'info', 'tiny.qcow2'], dir);
    t.os.push(r.wall);
    t.osc.push(r.cpu);
    restore();
    r = runTimed('qemu-img', ['bitmap', '--merge', 'b0', 'big.qcow2', 'b1'], dir);
    t.q.push(r.wall);
    t.qc.push(r.cpu);
    restore();
    r = runTimed('node', [BIN, 'img', 'bitmap', '--merge', 'b0', 'big.qcow2', 'b1'], dir);
    t.o.push(r.wall);
    t.oc.push(r.cpu);
  }
  const q = median(t.q) - median(t.qs);
  const o = median(t.o) - median(t.os);
  // /usr/bin/time counts CPU in 10 ms steps: means over the runs resolve finer than medians.
  const mean = (a: number[]): number => a.reduce((x, y) => x + y, 0) / a.length;
  const qc = mean(t.qc) - mean(t.qsc);
  const oc = mean(t.oc) - mean(t.osc);
  const name = '`img bitmap --merge` of two 16 Mi-bit bitmaps (1 TiB image, 1 % dirty), start-up (`img info` of a small image) subtracted';
  const out: BenchResult[] = [{ name: `${name}, wall time`, unit: 'ms', value: o, baseline: 'qemu-img bitmap --merge', baselineValue: q, ratio: q / o, target: 1.0 }];
  if (Number.isFinite(qc) && Number.isFinite(oc)) {
    out.push({ name: `${name}, CPU time (user + system)`, unit: 'ms', value: oc, baseline: 'qemu-img bitmap --merge', baselineValue: qc, ratio: qc / oc, target: 1.0 });
  }
  return out;
}

async function loadStore(dir: string): Promise<BenchResult[]> {
  // big.qcow2 from mergeSpeed holds two 2 MiB bitmaps (16 Mi bits each).
  const file = join(dir, 'big.qcow2');
  const graph = createNodeGraph();
  const times = { load: [] as number[], store: [] as number[] };
  let heap = 0;
  for (let i = 0; i < 5; i++) {
    globalThis.gc?.();
    const h0 = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
    const t0 = performance.now();
    const bb = await BlockBackend.open(graph, file);
    const t1 = performance.now();
    heap = Math.max(heap, process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers - h0);
    // A write marks both bitmaps dirty, so close stores them.
    await bb.write(0, new Uint8Array(4096));
    const t2 = performance.now();
    await bb.close();
    const t3 = performance.now();
    times.load.push(t1 - t0);
    times.store.push(t3 - t2);
  }
  await graph.closeAll();
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  // Baseline: plain file I/O of the same bytes (two bitmaps of 2 MiB).
  const plain = Buffer.alloc(4 * MiB, 1);
  const pf = join(dir, 'plain.bin');
  const pw: number[] = [];
  const pr: number[] = [];
  for (let i = 0; i < 5; i++) {
    let t = performance.now();
    writeFileSync(pf, plain);
    pw.push(performance.now() - t);
    t = performance.now();
    readFileSync(pf);
    pr.push(performance.now() - t);
  }
  const bitmapBytes = 2 * (2 ** 40 / 65536 / 8);
  return [
    {
      name: 'load two 16 Mi-bit bitmaps (open of the 1 TiB image)',
      unit: 'ms',
      value: med(times.load),
      baseline: 'reading 4 MiB with readFileSync',
      baselineValue: med(pr),
      ratio: med(pr) / med(times.load),
    },
    {
      name: 'store two 16 Mi-bit bitmaps (close after a write)',
      unit: 'ms',
      value: med(times.store),
      baseline: 'writing 4 MiB with writeFileSync',
      baselineValue: med(pw),
      ratio: med(pw) / med(times.store),
    },
    {
      name: 'memory taken by the open image with its two loaded bitmaps',
      unit: 'MiB',
      value: heap / MiB,
      baseline: 'the bitmaps\' own size',
      baselineValue: bitmapBytes / MiB,
      ratio: bitmapBytes / Math.max(1, heap),
    },
  ];
}

export async function run(): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'dw-bench-bitmaps-'));
  try {
    const out = [await writeOverhead(dir), ...(await mergeSpeed(dir))];
    out.push(...(await loadStore(dir)));
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

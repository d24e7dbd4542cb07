/**
 * qcow2 benchmarks over node-file, as ratios to raw measured in the same run:
 * sequential read and allocating sequential write of 1 GiB (64 KiB clusters),
 * random 4 KiB reads, allocating random 64 KiB writes with 16 in flight
 * (writes to different clusters overlap their data I/O), and the time to
 * open a 4 TiB sparse image.
 * DW_BENCH_QCOW2_MB overrides the data size (default 1024).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockBackend, createImage, createNodeGraph } from '../../src/node.js';
import type { BenchResult } from '../types.js';


const CHUNK = 1 << 20;

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

export async function run(): Promise<BenchResult[]> {
  const mb = Number(process.env['DW_BENCH_QCOW2_MB'] ?? 1024);
  const size = mb * CHUNK;
  const dir = mkdtempSync(join(tmpdir(), 'dw-bench-qcow2-'));
  const results: BenchResult[] = [];
  try {
    const graph = createNodeGraph();
    const rawPath = join(dir, 'a.raw');
    const qPath = join(dir, 'a.qcow2');
    await createImage(graph, 'raw', rawPath, { size });
    await createImage(graph, 'qcow2', qPath, { size, cluster_size: 65536 });
    const buf = new Uint8Array(CHUNK);
    for (let i = 0; i < buf.length; i++) buf[i] = (i * 131) & 0xff;

    const writeAll = async (bb: BlockBackend) => {
      for (let off = 0; off < size; off += CHUNK) await bb.write(off, buf);
      await bb.flush();
    };
    const raw = await BlockBackend.open(graph, rawPath, { format: 'raw' });
    const q = await BlockBackend.open(graph, qPath, { format: 'qcow2' });
    const rawW = await timed(() => writeAll(raw));
    const qW = await timed(() => writeAll(q));
    const mbps = (s: number) => mb / s;
    results.push({ name: 'qcow2 allocating sequential write (1 MiB requests)', unit: 'MiB/s', value: mbps(qW), baseline: 'raw write', baselineValue: mbps(rawW), ratio: rawW / qW, target: 0.6 });

    const readAll = async (bb: BlockBackend) => {
      const out = new Uint8Array(CHUNK);
      for (let off = 0; off < size; off += CHUNK) await bb.pread(off, out);
    };
    // Reads come from the page cache and are short: best of three rounds,
    // alternating, so one disturbed round (writeback, GC) does not decide.
    const bestTimes = async (fnA: () => Promise<void>, fnB: () => Promise<void>) => {
      let a = Infinity;
      let b = Infinity;
      for (let i = 0; i < 3; i++) {
        a = Math.min(a, await timed(fnA));
        b = Math.min(b, await timed(fnB));
      }
      return [a, b] as const;
    };
    const [rawR, qR] = await bestTimes(() => readAll(raw), () => readAll(q));
    results.push({ name: 'qcow2 sequential read (1 MiB requests)', unit: 'MiB/s', value: mbps(qR), baseline: 'raw read', baselineValue: mbps(rawR), ratio: rawR / qR, target: 0.8 });

    const N = 20000;
    const randomReads = async (bb: BlockBackend) => {
      let x = 12345;
      const out = new Uint8Array(4096);
      for (let i = 0; i < N; i++) {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        await bb.pread((x % (size / 4096)) * 4096, out);
      }
    };
    const [rawRR, qRR] = await bestTimes(() => randomReads(raw), () => randomReads(q));
    results.push({ name: 'qcow2 random 4 KiB reads', unit: 'IOPS', value: N / qRR, baseline: 'raw random reads', baselineValue: N / rawRR, ratio: rawRR / qRR, target: 0.7 });
    await raw.close();
    await q.close();

    // Allocating random writes, 16 in flight, into fresh images of 256 MiB.
    const rwBytes = Math.min(size, 256 * CHUNK);
    const rawRw = join(dir, 'rw.raw');
    const qRw = join(dir, 'rw.qcow2');
    await createImage(graph, 'raw', rawRw, { size: rwBytes });
    await createImage(graph, 'qcow2', qRw, { size: rwBytes, cluster_size: 65536 });
    const rawB = await BlockBackend.open(graph, rawRw, { format: 'raw' });
    const qB = await BlockBackend.open(graph, qRw, { format: 'qcow2' });
    const writeBuf = buf.subarray(0, 65536);
    const clusters = rwBytes / 65536;
    const queuedWrites = async (bb: BlockBackend) => {
      // A fixed permutation of the clusters, each written once.
      let next = 0;
      const worker = async () => {
        for (;;) {
          const i = next++;
          if (i >= clusters) return;
          await bb.write(((i * 40503) % clusters) * 65536, writeBuf);
        }
      };
      await Promise.all(Array.from({ length: 16 }, worker));
      await bb.flush();
    };
    const rawQd = await timed(() => queuedWrites(rawB));
    const qQd = await timed(() => queuedWrites(qB));
    const rwMb = rwBytes / CHUNK;
    results.push({ name: 'qcow2 allocating random 64 KiB writes, 16 in flight', unit: 'MiB/s', value: rwMb / qQd, baseline: 'raw, same writes', baselineValue: rwMb / rawQd, ratio: rawQd / qQd });
    await rawB.close();
    await qB.close();

    const bigPath = join(dir, 'big.qcow2');
    const smallPath = join(dir, 'small.qcow2');
    await createImage(graph, 'qcow2', bigPath, { size: 4 * 1024 ** 4 });
    await createImage(graph, 'qcow2', smallPath, { size: 1 << 30 });
    const openOnce = (p: string) =>
      timed(async () => {
        const bb = await BlockBackend.open(graph, p, { format: 'qcow2' });
        await bb.close();
      });
    // Warm up, then interleave the two sizes: whichever is measured first
    // otherwise pays JIT warm-up and the GC left by the workloads above
    // (that, not the size, made the 4 TiB open look slower).
    for (let i = 0; i < 5; i++) {
      await openOnce(bigPath);
      await openOnce(smallPath);
    }
    const bigTimes: number[] = [];
    const smallTimes: number[] = [];
    for (let i = 0; i < 15; i++) {
      bigTimes.push(await openOnce(bigPath));
      smallTimes.push(await openOnce(smallPath));
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1]! * 1000;
    const big = median(bigTimes);
    const small = median(smallTimes);
    // The issue asks for under 20 ms, independent of the size: the ratio to a 1 GiB image shows the independence.
    results.push({ name: 'open a 4 TiB sparse qcow2 (median, open + close; issue: < 20 ms)', unit: 'ms', value: big, baseline: 'open a 1 GiB qcow2', baselineValue: small, ratio: small / big });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  run().then((r) => console.table(r), (e) => {
    console.error(e);
    process.exit(1);
  });
}

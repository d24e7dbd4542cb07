/**
 * The qcow2 refcount code with the WASM refcount module against the TypeScript path,
 * measured in the same run (src/formats/qcow2/refcount.ts switches between them with
 * setRefcountWasmEnabled). Node only (node-file images in a temp dir).
 *
 * - `check` of a fully allocated 1 GiB qcow2 (64 KiB clusters, 16-bit refcounts);
 * - the first allocation after opening that image (the free-cluster search starts at
 *   cluster 0 and passes every used one);
 * - allocating 1 MiB writes into an image whose used area has a one-cluster hole every
 *   64 clusters (every allocation searches past the holes to the end of the used area);
 * - the per-block operations behind the thresholds in refcount.ts: one entry, a free-run
 *   search over a used block, the check comparison of a block, incrementing a range.
 *
 * Ratios are WASM / TypeScript rates (higher: WASM faster).
 * DW_BENCH_QCOW2_MB overrides the image size (default 1024).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockBackend, createImage, createNodeGraph } from '../../src/node.js';
import type { Qcow2Image } from '../../src/formats/qcow2/qcow2.js';
import {
  compareBlockCounts,
  findFreeInBlock,
  getRefcount,
  incrementRange,
  initRefcountWasm,
  setRefcount,
  setRefcountWasmEnabled,
} from '../../src/formats/qcow2/refcount.js';
import { opsPerSecond, result, type BenchResult } from '../wasm/common.js';

const CS = 65536;
const ORDER = 4;
const PER_BLOCK = (CS * 8) >> ORDER;

/** Best (shortest) time in ms of `rounds` runs of `fn`, the WASM path set to `on`. */
async function bestMs(on: boolean, rounds: number, fn: () => Promise<void>): Promise<number> {
  setRefcountWasmEnabled(on);
  try {
    let best = Infinity;
    for (let i = 0; i < rounds; i++) {
      const t0 = performance.now();
      await fn();
      best = Math.min(best, performance.now() - t0);
    }
    return best;
  } finally {
    setRefcountWasmEnabled(true);
  }
}

/** Alternates WASM and TypeScript runs (so load on the machine hits both alike); returns [wasm ms, ts ms]. */
async function pair(rounds: number, fn: () => Promise<void>): Promise<[number, number]> {
  let w = Infinity;
  let t = Infinity;
  for (let i = 0; i < rounds; i++) {
    w = Math.min(w, await bestMs(true, 1, fn));
    t = Math.min(t, await bestMs(false, 1, fn));
  }
  return [w, t];
}

function qcow2Of(bb: BlockBackend): Qcow2Image {
  return bb.node.instance as unknown as Qcow2Image;
}

export async function run(): Promise<BenchResult[]> {
  if (!(await initRefcountWasm())) throw new Error('bench/qcow2/refcount: the WASM refcount module does not load');
  const mb = Number(process.env['DW_BENCH_QCOW2_MB'] ?? 1024);
  const size = mb * 2 ** 20;
  const dir = mkdtempSync(join(tmpdir(), 'dw-bench-refcount-'));
  const results: BenchResult[] = [];
  try {
    const graph = createNodeGraph();
    // Fully allocated: every cluster has an L2 entry and a refcount (metadata preallocation
    // writes no data, so the image is made in a moment and check walks the same tables).
    const full = join(dir, 'full.qcow2');
    await createImage(graph, 'qcow2', full, { size, cluster_size: CS, preallocation: 'metadata' });

    const bb = await BlockBackend.open(graph, full, { format: 'qcow2' });
    const check = () => bb.node.instance.check!({ leaks: false, errors: false }).then((r) => {
      if (r.corruptions || r.leaks) throw new Error(`bench image is not clean: ${JSON.stringify(r)}`);
    });
    const [cw, ct] = await pair(5, check);
    results.push(result(`qcow2 check, fully allocated ${mb} MiB image (64 KiB clusters)`, 'checks/s', 1000 / cw, 'TypeScript refcount path', 1000 / ct));

    // The free-cluster search from cluster 0 over every used cluster (after an open).
    const img = qcow2Of(bb);
    const firstAlloc = async () => {
      img.refs.freeHint = 0;
      await img.refs.findFree(1);
    };
    const [fw, ft] = await pair(20, firstAlloc);
    results.push(result(`free-cluster search after open: scan ${Math.ceil(size / CS)} used clusters`, 'searches/s', 1000 / fw, 'TypeScript refcount path', 1000 / ft));
    await bb.close();

    // Allocating 1 MiB writes past one-cluster holes.
    const holes = join(dir, 'holes.qcow2');
    const writes = 64;
    const wbuf = new Uint8Array(1 << 20).fill(7);
    const holeRun = async (): Promise<void> => {
      await createImage(graph, 'qcow2', holes, { size: size + writes * (1 << 20), cluster_size: CS, preallocation: 'metadata' });
      const h = await BlockBackend.open(graph, { driver: 'qcow2', discard: 'unmap', file: { filename: holes } });
      for (let off = 0; off < size; off += 64 * CS) await h.discard(off + 32 * CS, CS);
      await h.flush();
      const t0 = performance.now();
      for (let i = 0; i < writes; i++) await h.write(size + i * (1 << 20), wbuf);
      await h.flush();
      elapsed = performance.now() - t0;
      await h.close();
    };
    let elapsed = 0;
    let hw = Infinity;
    let ht = Infinity;
    for (let i = 0; i < 3; i++) {
      await bestMs(true, 1, holeRun);
      hw = Math.min(hw, elapsed);
      await bestMs(false, 1, holeRun);
      ht = Math.min(ht, elapsed);
    }
    results.push(result(`allocating 1 MiB writes, ${mb} MiB used area with a 1-cluster hole every 64`, 'MiB/s', (writes * 1000) / hw, 'TypeScript refcount path', (writes * 1000) / ht));

    // Per-block operations (64 KiB block, 16-bit entries), the thresholds' evidence: the
    // module's wrapper called directly (whatever the thresholds) against the TypeScript path.
    const w = (await initRefcountWasm())!;
    const tsOnly = async (fn: () => unknown): Promise<number> => {
      setRefcountWasmEnabled(false);
      try {
        return await opsPerSecond(fn);
      } finally {
        setRefcountWasmEnabled(true);
      }
    };
    const counts = new Float64Array(PER_BLOCK).fill(1);
    const out = new Uint32Array(1024);
    let sink = 0;
    for (const usedEntries of [256, 512, 1024, PER_BLOCK]) {
      const b = new Uint8Array(CS);
      for (let i = 0; i < usedEntries; i++) setRefcount(b, i, ORDER, 1);
      const fw2 = await opsPerSecond(() => {
        sink += findFreeInBlock(b, ORDER, PER_BLOCK, 0, 16).index;
      });
      const ft2 = await tsOnly(() => {
        sink += findFreeInBlock(b, ORDER, PER_BLOCK, 0, 16).index;
      });
      results.push(result(`free-run search (16 clusters) past ${usedEntries} used entries (TS probe of 512, then WASM)`, 'searches/s', fw2, 'TypeScript', ft2));
    }
    const used = new Uint8Array(CS);
    for (let i = 0; i < PER_BLOCK; i++) setRefcount(used, i, ORDER, 1);
    for (const n of [16, 256, 4096, PER_BLOCK]) {
      const cw2 = await opsPerSecond(() => {
        sink += w.compareCounts(used, ORDER, 0, n, counts, out).lastUsed;
      });
      const ct2 = await tsOnly(() => {
        sink += compareBlockCounts(used, ORDER, 0, n, counts, out).lastUsed;
      });
      results.push(result(`check: compare ${n} entries with counted references (WASM used from 256)`, 'calls/s', cw2, 'TypeScript', ct2));
    }
    const inc = new Uint8Array(CS);
    for (const n of [16, 64, 256, 8192]) {
      const iw = await opsPerSecond(() => {
        if (w.tryAddRange(inc, ORDER, 0, n, 1) >= 0) inc.fill(0);
      });
      const it = await tsOnly(() => {
        if (incrementRange(inc, ORDER, 0, n) >= 0) inc.fill(0);
      });
      results.push(result(`increment ${n} refcounts (WASM used from 256)`, 'calls/s', iw, 'TypeScript', it));
    }
    // One entry: a call into the module (block already in module memory) against a DataView-free read.
    const p = w.allocBlock(CS);
    w.view(p, CS).set(used);
    const e = w.module.exports as unknown as { get(ptr: number, order: number, index: number): number };
    const gw = await opsPerSecond(() => {
      for (let i = 0; i < 256; i++) sink += e.get(p, ORDER, (i * 97) & (PER_BLOCK - 1));
    });
    const gt = await opsPerSecond(() => {
      for (let i = 0; i < 256; i++) sink += getRefcount(used, (i * 97) & (PER_BLOCK - 1), ORDER);
    });
    results.push(result('one refcount entry (TypeScript kept)', 'gets/s', gw * 256, 'TypeScript getRefcount', gt * 256));
    if (sink === -1) console.log(sink);
  } finally {
    setRefcountWasmEnabled(true);
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

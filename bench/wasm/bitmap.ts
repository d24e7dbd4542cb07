/** Next-dirty over 16 Mi bits (1 TiB at 64 KiB granularity) with 1% set: WASM hierarchical bitmap vs a linear word scan. Target: >= 10x. */
import { loadBitmapEngine } from '../../src/wasm/bitmap.js';
import { opsPerSecond, prng, result, type BenchResult } from './common.js';

/** The baseline: next set bit at or after `start` by a linear scan of 32-bit words, or -1. */
function linearScan(words: Uint32Array): (start: number) => number {
  return (start) => {
    let w = start >>> 5;
    let v = words[w]! & (~0 << (start & 31));
    while (v === 0) {
      if (++w >= words.length) return -1;
      v = words[w]!;
    }
    return w * 32 + (31 - Math.clz32(v & -v));
  };
}

export async function run(): Promise<BenchResult[]> {
  const NBITS = 2 ** 24;
  const engine = await loadBitmapEngine();
  const bm = engine.create(NBITS);
  const words = new Uint32Array(NBITS / 32);
  const r = prng(3);
  // 1% of bits set, in random clusters of 1..64 bits.
  let set = 0;
  while (set < NBITS / 100) {
    const s = r() % NBITS;
    const n = Math.min(1 + (r() % 64), NBITS - s);
    bm.set(s, n);
    for (let i = s; i < s + n; i++) words[i >>> 5]! |= 1 << (i & 31);
    set += n;
  }
  const starts = Array.from({ length: 1024 }, () => r() % NBITS);
  const linear = linearScan(words);
  const walk = (next: (s: number) => number): number => {
    // Iterate the whole bitmap: next dirty, then skip its run.
    let n = 0;
    for (let pos = next(0); pos >= 0 && n < 4096; pos = next(pos + 65)) n++;
    return n;
  };
  const wasmOps = await opsPerSecond(() => {
    for (const s of starts) bm.nextDirty(s);
  });
  // The same search with the export called directly (no wrapper, no argument checks): how
  // much of a call is the JS-to-WASM transition and the wrapper.
  const ex = engine.module.exports;
  const h = bm.ptr;
  const [l0, skip, direct] = [ex.levelPtr(h, 0), ex.buildSkip(h), ex.nextDirtyFast];
  const directOps = await opsPerSecond(() => {
    for (const s of starts) direct(h, l0, skip, s, NBITS);
  });
  const linOps = await opsPerSecond(() => {
    for (const s of starts) linear(s);
  });
  const wasmWalk = await opsPerSecond(() => walk((s) => bm.nextDirty(s)));
  const linWalk = await opsPerSecond(() => walk(linear));
  // Sparse case: 16 bits set in 16 Mi (where the summary levels pay off most).
  const sparse = engine.create(NBITS);
  const sw = new Uint32Array(NBITS / 32);
  for (let k = 0; k < 16; k++) {
    const b = (k * 1048573) % NBITS;
    sparse.set(b, 1);
    sw[b >>> 5]! |= 1 << (b & 31);
  }
  const linSparse = linearScan(sw);
  const wasmSparse = await opsPerSecond(() => walk((s) => sparse.nextDirty(s)));
  const linSparseOps = await opsPerSecond(() => walk(linSparse));
  bm.destroy();
  sparse.destroy();
  return [
    result('bitmap next-dirty, 16 Mi bits, 1% set, random starts: wasm vs linear scan', 'calls/s', wasmOps * 1024, 'linear Uint32Array scan', linOps * 1024, 10),
    result('bitmap next-dirty, export called directly (no wrapper): wasm vs linear scan', 'calls/s', directOps * 1024, 'linear Uint32Array scan', linOps * 1024),
    result('bitmap walk of all dirty runs, 16 Mi bits, 1% set: wasm vs linear scan', 'walks/s', wasmWalk, 'linear Uint32Array scan', linWalk),
    result('bitmap walk, 16 Mi bits, 16 bits set: wasm vs linear scan', 'walks/s', wasmSparse, 'linear Uint32Array scan', linSparseOps),
  ];
}

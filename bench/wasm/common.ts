/** Shared pieces of the WASM benchmarks (run in Node and in Chromium by the bench runner). */

import type { BenchResult } from '../types.js';
export type { BenchResult };

/** Is this Node (as opposed to a browser)? */
export function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string';
}

/**
 * Runs `fn` repeatedly for about `ms` milliseconds (after a warm-up) and returns calls per
 * second, the best of `rounds` rounds (least disturbed by the other core's load).
 */
export async function opsPerSecond(fn: () => unknown, ms = 300, rounds = 3): Promise<number> {
  const now = (): number => performance.now();
  // Warm-up: let the JIT tier up.
  const w0 = now();
  while (now() - w0 < ms / 3) await fn();
  let best = 0;
  for (let r = 0; r < rounds; r++) {
    let n = 0;
    const t0 = now();
    let t = t0;
    while (t - t0 < ms) {
      for (let k = 0; k < 4; k++) await fn();
      n += 4;
      t = now();
    }
    best = Math.max(best, (n * 1000) / (t - t0));
  }
  return best;
}

/** A seeded PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/**
 * 64 KiB clusters of real binary data. In Node: slices of executables on this machine
 * (qemu-img, gdb, node). In a browser: pass them in (the runner fetches a binary).
 */
export async function realClusters(count: number, size = 65536): Promise<Uint8Array[]> {
  const g = globalThis as { __benchRealData?: Uint8Array };
  let data: Uint8Array | undefined = g.__benchRealData;
  if (!data && isNode()) {
    const fs = await import(/* @vite-ignore */ 'node:fs' as string) as typeof import('node:fs');
    for (const f of ['/usr/bin/qemu-img', '/usr/bin/gdb', (globalThis as unknown as { process: { execPath: string } }).process.execPath]) {
      try {
        data = new Uint8Array(fs.readFileSync(f));
        break;
      } catch {
        // try the next one
      }
    }
  }
  if (!data) {
    // Last resort: synthetic "binary-like" data (instruction-ish bytes with repeats).
    const r = prng(42);
    data = new Uint8Array(count * size * 2);
    for (let i = 0; i < data.length; i++) data[i] = r() % 7 === 0 && i > 64 ? data[i - 1 - (r() % 64)]! : r() & (r() & 1 ? 0xff : 0x0f);
  }
  const res: Uint8Array[] = [];
  for (let off = 0; off + size <= data.byteLength && res.length < count; off += size * 3) res.push(data.subarray(off, off + size));
  for (let off = size; res.length < count && off + size <= data.byteLength; off += size * 3) res.push(data.subarray(off, off + size));
  return res;
}

/** Throughput ratio result. */
export function result(name: string, unit: string, value: number, baseline: string, baselineValue: number, target?: number): BenchResult {
  const r: BenchResult = { name, unit, value, baseline, baselineValue, ratio: value / baselineValue };
  if (target !== undefined) r.target = target;
  return r;
}

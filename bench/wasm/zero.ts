/**
 * Zero check of 64 KiB and 1 MiB zero buffers: WASM SIMD (buffer in module memory) and
 * TypeScript vs a Uint8Array copy of the same size (target: >= 0.8x the copy); and, for
 * detect-zeroes (guest buffers are not in module memory), isZeroBuffer's plain-JS loop
 * against the WASM detector that copies the buffer into module memory in 16 KiB pieces.
 * Runs in Node and in Chromium (bench/browser/wasm.ts), so each environment gets its figure.
 */
import { isZeroTs, loadZero } from '../../src/wasm/zero.js';
import { isZeroBufferPlain } from '../../src/core/zero-detect.js';
import { opsPerSecond, result, type BenchResult } from './common.js';

export async function run(): Promise<BenchResult[]> {
  const res: BenchResult[] = [];
  const z = await loadZero();
  const detect = z?.detector();
  for (const size of [65536, 1 << 20]) {
    const src = new Uint8Array(size);
    const dst = new Uint8Array(size);
    const copy = await opsPerSecond(() => dst.set(src));
    const gbps = (ops: number): number => (ops * size) / 1e9;
    const label = size === 65536 ? '64 KiB' : '1 MiB';
    if (z) {
      const buf = z.buffer(size);
      const wasm = await opsPerSecond(() => z.isZero(buf));
      res.push(result(`zero check ${label}: wasm simd vs Uint8Array copy`, 'GB/s', gbps(wasm), 'Uint8Array.set copy', gbps(copy), 0.8));
    }
    const ts = await opsPerSecond(() => isZeroTs(src));
    res.push(result(`zero check ${label}: TypeScript fallback vs Uint8Array copy`, 'GB/s', gbps(ts), 'Uint8Array.set copy', gbps(copy)));
    const plain = await opsPerSecond(() => isZeroBufferPlain(src));
    if (detect) {
      const copied = await opsPerSecond(() => detect(src));
      res.push(result(`detect-zeroes check ${label}: copy into WASM memory + simd vs isZeroBuffer plain JS`, 'GB/s', gbps(copied), 'isZeroBuffer plain JS', gbps(plain)));
    }
  }
  return res;
}

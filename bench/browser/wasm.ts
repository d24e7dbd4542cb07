/**
 * The WASM benchmarks of bench/wasm/ (inflate, deflate, zstd, l2, bitmap,
 * zero) in Debian's Chromium, on the same real binary data as in Node
 * (/usr/bin/qemu-img). Ratios are to the best alternative measured in the
 * same page: fflate, pako, DecompressionStream('deflate-raw'), fzstd, plain
 * TypeScript loops.
 *
 *   npm run bench -- browser          (with the other browser benchmarks)
 */
import { readFileSync } from 'node:fs';
import type { BenchResult } from '../types.js';
import { withBenchPage } from './session.js';

export async function run(): Promise<BenchResult[]> {
  const realData = readFileSync('/usr/bin/qemu-img');
  return withBenchPage('wasm.html', 'wasm bench ready', async (page) => {
    await page.route('**/bench-real-data.bin', (route) =>
      route.fulfill({ status: 200, body: realData, headers: { 'Cross-Origin-Resource-Policy': 'same-origin' } }),
    );
    await page.evaluate((url) => window.wasmBench.setRealData(url), new URL('/bench-real-data.bin', page.url()).toString());
    const names = await page.evaluate(() => window.wasmBench.names());
    const out: BenchResult[] = [];
    for (const name of names) {
      const results = await page.evaluate((n) => window.wasmBench.run(n), name);
      for (const r of results) out.push({ ...r, name: `Chromium: ${r.name}` });
    }
    return out;
  });
}

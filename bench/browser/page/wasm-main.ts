/**
 * Runs the WASM benchmarks of bench/wasm/ inside Chromium (the same modules
 * that run in Node), driven by bench/browser/wasm.ts.
 */
import type { BenchResult } from '../../types.js';

const modules: Record<string, () => Promise<{ run(): Promise<BenchResult[]> }>> = {
  deflate: () => import('../../wasm/deflate.js'),
  zstd: () => import('../../wasm/zstd.js'),
  l2: () => import('../../wasm/l2.js'),
  bitmap: () => import('../../wasm/bitmap.js'),
  zero: () => import('../../wasm/zero.js'),
};

const api = {
  names: () => Object.keys(modules),
  /** Sets the real binary data the codec benchmarks compress (fetched from the bench server). */
  async setRealData(url: string): Promise<number> {
    const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
    (globalThis as { __benchRealData?: Uint8Array }).__benchRealData = bytes;
    return bytes.length;
  },
  async run(name: string): Promise<BenchResult[]> {
    const load = modules[name];
    if (!load) throw new Error(`no WASM bench named '${name}'`);
    return (await load()).run();
  },
};

declare global {
  interface Window {
    wasmBench: typeof api;
  }
}
window.wasmBench = api;
document.title = 'wasm bench ready';
document.getElementById('log')!.textContent = 'ready';

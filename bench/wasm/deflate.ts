/**
 * Deflate benchmarks on 64 KiB clusters of real binary data:
 * - inflate: WASM vs fflate (preallocated output), pako, node:zlib (Node),
 *   DecompressionStream('deflate-raw') (where it exists). Target: >= 1.0x fflate and pako.
 * - deflate level 6: WASM (4 KiB window) vs fflate; target >= 1.0x at an equal or better ratio.
 */
import * as fflate from 'fflate';
import * as pakoModule from 'pako';
import { loadDeflate } from '../../src/wasm/deflate.js';
/** pako has no bundled typings here; the one function used. */
const pako = pakoModule as unknown as { inflateRaw(data: Uint8Array): Uint8Array };
import { isNode, opsPerSecond, realClusters, result, type BenchResult } from './common.js';

const MiB = 1024 * 1024;

export async function run(): Promise<BenchResult[]> {
  const codec = await loadDeflate();
  const clusters = await realClusters(16);
  const size = clusters[0]!.byteLength;
  const total = clusters.length * size;
  // Compressed as QEMU does: raw deflate, level 6 (zlib's default), window bits 12.
  const compressed = clusters.map((c) => codec.deflate(c, 6) ?? c);
  const out = new Uint8Array(size);
  const mibps = (ops: number): number => (ops * total) / MiB;

  const wasmInflate = mibps(await opsPerSecond(() => {
    for (const z of compressed) codec.inflate(z, out, true);
  }));
  const fflateInflate = mibps(await opsPerSecond(() => {
    for (const z of compressed) fflate.inflateSync(z, { out });
  }));
  const pakoInflate = mibps(await opsPerSecond(() => {
    for (const z of compressed) pako.inflateRaw(z);
  }));
  const res: BenchResult[] = [
    result('inflate 64 KiB clusters: wasm vs fflate', 'MiB/s', wasmInflate, 'fflate', fflateInflate, 1.0),
    result('inflate 64 KiB clusters: wasm vs pako', 'MiB/s', wasmInflate, 'pako', pakoInflate, 1.0),
  ];
  if (isNode()) {
    const zlib = await import(/* @vite-ignore */ 'node:zlib' as string) as typeof import('node:zlib');
    const nodeInflate = mibps(await opsPerSecond(() => {
      for (const z of compressed) zlib.inflateRawSync(z, { windowBits: 12 });
    }));
    res.push(result('inflate 64 KiB clusters: wasm vs node:zlib', 'MiB/s', wasmInflate, 'node:zlib', nodeInflate));
  }
  if (typeof DecompressionStream === 'function') {
    const ds = async (z: Uint8Array): Promise<void> => {
      const s = new Blob([z as BlobPart]).stream().pipeThrough(new DecompressionStream('deflate-raw' as CompressionFormat));
      await new Response(s).arrayBuffer();
    };
    const dsInflate = mibps(await opsPerSecond(async () => {
      for (const z of compressed) await ds(z);
    }));
    res.push(result('inflate 64 KiB clusters: wasm vs DecompressionStream', 'MiB/s', wasmInflate, 'DecompressionStream(deflate-raw)', dsInflate));
  }

  // Deflate level 6.
  const dst = new Uint8Array(size);
  let ourBytes = 0;
  let fflateBytes = 0;
  for (const c of clusters) {
    const n = codec.deflateInto(c, dst, 6);
    ourBytes += n < 0 ? size : n;
    fflateBytes += fflate.deflateSync(c, { level: 6 }).byteLength;
  }
  const wasmDeflate = mibps(await opsPerSecond(() => {
    for (const c of clusters) codec.deflateInto(c, dst, 6);
  }, 600));
  const fflateDeflate = mibps(await opsPerSecond(() => {
    for (const c of clusters) fflate.deflateSync(c, { level: 6 });
  }, 600));
  res.push(result('deflate level 6 64 KiB clusters: wasm vs fflate', 'MiB/s', wasmDeflate, 'fflate', fflateDeflate, 1.0));
  res.push(result('deflate level 6 ratio: wasm (4 KiB window) vs fflate (32 KiB window)', 'ratio', total / ourBytes, 'fflate', total / fflateBytes, 1.0));
  if (isNode()) {
    const zlib = await import(/* @vite-ignore */ 'node:zlib' as string) as typeof import('node:zlib');
    const nodeDeflate = mibps(await opsPerSecond(() => {
      for (const c of clusters) zlib.deflateRawSync(c, { level: 6, windowBits: 12 });
    }, 600));
    let zb = 0;
    for (const c of clusters) zb += zlib.deflateRawSync(c, { level: 6, windowBits: 12 }).byteLength;
    res.push(result('deflate level 6 64 KiB clusters: wasm vs node:zlib (window bits 12)', 'MiB/s', wasmDeflate, 'node:zlib', nodeDeflate));
    res.push(result('deflate level 6 ratio: wasm vs node:zlib (window bits 12)', 'ratio', total / ourBytes, 'node:zlib', total / zb));
  }
  return res;
}

/**
 * zstd benchmarks on 64 KiB clusters of real binary data:
 * - decode: WASM (cluster mode, preallocated output) vs fzstd (preallocated output), on
 *   frames from our encoder at level 3 (what we write) and, in Node, from /usr/bin/zstd -3
 *   with and without the content checksum (qemu-img writes none). Target: >= 1.0x fzstd.
 * - encode level 3 (QEMU's default): speed, and ratio vs node:zlib deflate level 6 with
 *   window bits 12 (QEMU's zlib clusters) where node:zlib exists.
 */
import { decompress as fzstd } from 'fzstd';
import { loadZstd } from '../../src/wasm/zstd.js';
import { isNode, opsPerSecond, realClusters, result, type BenchResult } from './common.js';

const MiB = 1024 * 1024;

export async function run(): Promise<BenchResult[]> {
  const codec = await loadZstd();
  const clusters = await realClusters(16);
  const size = clusters[0]!.byteLength;
  const total = clusters.length * size;
  const mibps = (ops: number): number => (ops * total) / MiB;
  const out = new Uint8Array(size);
  const res: BenchResult[] = [];

  const sets: [string, Uint8Array[]][] = [['our level 3 frames', clusters.map((c) => codec.compressFrame(c, 3))]];
  if (isNode()) {
    const cp = await import(/* @vite-ignore */ 'node:child_process' as string) as typeof import('node:child_process');
    try {
      sets.push(['zstd CLI -3 frames', clusters.map((c) => new Uint8Array(cp.execFileSync('zstd', ['-3', '-q', '-c'], { input: c })))]);
      // What qemu-img writes: libzstd level 3 without the content checksum.
      sets.push(['zstd CLI -3 --no-check frames', clusters.map((c) => new Uint8Array(cp.execFileSync('zstd', ['-3', '--no-check', '-q', '-c'], { input: c })))]);
    } catch {
      // no zstd binary: our frames only
    }
  }
  for (const [what, frames] of sets) {
    const wasm = mibps(await opsPerSecond(() => {
      for (const f of frames) codec.decompressInto(f, out, true);
    }));
    const fz = mibps(await opsPerSecond(() => {
      for (const f of frames) fzstd(f, out);
    }));
    res.push(result(`zstd decode 64 KiB clusters (${what}): wasm vs fzstd`, 'MiB/s', wasm, 'fzstd', fz, 1.0));
  }

  // Encode.
  const dst = new Uint8Array(size);
  for (const level of [1, 3, 9]) {
    let bytes = 0;
    for (const c of clusters) {
      const n = codec.compressInto(c, dst, level);
      bytes += n < 0 ? size : n;
    }
    const enc = mibps(await opsPerSecond(() => {
      for (const c of clusters) codec.compressInto(c, dst, level);
    }, 600));
    if (isNode()) {
      const zlib = await import(/* @vite-ignore */ 'node:zlib' as string) as typeof import('node:zlib');
      let zb = 0;
      for (const c of clusters) zb += zlib.deflateRawSync(c, { level: 6, windowBits: 12 }).byteLength;
      const zs = mibps(await opsPerSecond(() => {
        for (const c of clusters) zlib.deflateRawSync(c, { level: 6, windowBits: 12 });
      }, 600));
      res.push(result(`zstd encode level ${level} 64 KiB clusters: wasm vs node:zlib deflate 6 (window bits 12)`, 'MiB/s', enc, 'node:zlib', zs));
      res.push(result(`zstd level ${level} ratio vs node:zlib deflate 6 (window bits 12)`, 'ratio', total / bytes, 'node:zlib', total / zb));
    } else {
      res.push(result(`zstd encode level ${level} 64 KiB clusters`, 'MiB/s', enc, 'none', enc));
    }
  }
  return res;
}

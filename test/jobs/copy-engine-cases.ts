/**
 * Shared by copy-engine.test.ts and copy-engine.fuzz.ts: a seeded random
 * source image on the memory back end (data, zero-filled data, holes and
 * short zero runs inside data), copied by the engine with seeded random
 * pipeline settings, then compared byte for byte and chunk by chunk.
 */
import { expect } from 'vitest';
import { BlockBackend, BlockGraph, MemoryStorage, createMemoryDriver, rawDriver, qcow2Driver } from '../../src/node.js';
import { runCopy, type CopyResult } from '../../src/jobs/copy-engine.js';
import { readConcatenated, statusExtents } from '../../src/jobs/plan.js';
import { targetWriter } from '../../src/jobs/target-writer.js';
import { prng } from '../prng.js';

/** The memory back end's chunk (its unit of allocation). */
export const MEM_CHUNK = 1 << 16;

export function memGraph(): { graph: BlockGraph; storage: MemoryStorage } {
  const storage = new MemoryStorage();
  return { graph: new BlockGraph([createMemoryDriver(storage), rawDriver, qcow2Driver], 'memory'), storage };
}

export function openRaw(graph: BlockGraph, name: string, readOnly: boolean): Promise<BlockBackend> {
  return BlockBackend.open(graph, { driver: 'raw', file: { driver: 'memory', filename: name } }, { readOnly });
}

/**
 * Fills memory file `name` of `size` bytes from `seed`: 4 KiB blocks of
 * random data, of random data with a zero run of 512..3584 bytes inside,
 * of written zeros (allocated, all zero), or left as holes.
 */
export function seedSource(storage: MemoryStorage, name: string, size: number, seed: number): Uint8Array {
  const rnd = prng(seed);
  const f = storage.create(name, size);
  const want = new Uint8Array(size);
  for (let off = 0; off < size; off += 4096) {
    const n = Math.min(4096, size - off);
    const r = rnd();
    if (r < 0.3) continue;
    const b = new Uint8Array(n);
    if (r < 0.8) {
      for (let i = 0; i < n; i++) b[i] = (rnd() * 256) | 0;
      if (r > 0.65) b.fill(0, 512, 512 * (1 + Math.floor(rnd() * 7)));
    }
    f.writeRaw(off, b);
    want.set(b, off);
  }
  return want;
}

/** Whether every byte of `b` is zero. */
export function allZero(b: Uint8Array): boolean {
  for (const x of b) if (x) return false;
  return true;
}

/**
 * One seeded case: a random source (size, content), a raw target, a copy
 * with random chunk size, read-ahead, write depth and -S; checks the bytes,
 * that memory chunks that are all zero in the source stay unallocated in the
 * target, that progress rises to its total, and that no more buffers than
 * readAhead + writeDepth were in flight.
 */
export async function randomCopyCase(seed: number): Promise<CopyResult> {
  const rnd = prng(seed ^ 0x5eed);
  const { graph, storage } = memGraph();
  const size = 512 * (1 + Math.floor(rnd() * 4096));
  const want = seedSource(storage, 'src', size, seed);
  storage.create('dst', size);
  const src = await openRaw(graph, 'src', true);
  const dst = await openRaw(graph, 'dst', false);
  const chunkSize = 512 * (1 + Math.floor(rnd() * 256));
  const readAhead = 1 + Math.floor(rnd() * 8);
  const writeDepth = 1 + Math.floor(rnd() * 4);
  const minSparse = 512 * (1 + Math.floor(rnd() * 16));
  const progress: number[] = [];
  let total = -1;
  const plan = { srcs: [src], sizes: [size], chunkSize, compressCluster: 0, fullyAllocate: false, targetHasBacking: false };
  const r = await runCopy(
    {
      extents: () => statusExtents(plan),
      read: (o, b) => readConcatenated([src], [size], o, b),
      write: targetWriter({ target: dst, zeroDetect: 'sectors', minSparse, zeroInit: true, compress: false, fullyAllocate: false }),
      finish: () => dst.flush(),
    },
    {
      chunkSize,
      readAhead,
      writeDepth,
      onProgress: (p) => {
        progress.push(p.done);
        total = p.total;
      },
    },
  );
  const label = `seed ${seed}: ${size} bytes, chunk ${chunkSize}, read-ahead ${readAhead}, depth ${writeDepth}, -S ${minSparse}`;
  const got = storage.get('dst')!.toBytes();
  expect(Buffer.compare(got, want), label).toBe(0);
  const dstFile = storage.get('dst')!;
  for (let off = 0; off < size; off += MEM_CHUNK) {
    const zero = allZero(want.subarray(off, off + MEM_CHUNK));
    // A chunk the source holds no data in is never written (zero runs of >= -S go unwritten).
    if (zero && minSparse <= 4096) expect(dstFile.status(off, 1).data, `${label}: chunk at ${off}`).toBe(false);
    if (!zero) expect(dstFile.status(off, 1).data, `${label}: chunk at ${off}`).toBe(true);
  }
  expect(r.dataBytes + r.zeroBytes + r.skippedBytes, label).toBe(size);
  expect(total, label).toBe(size);
  expect(progress.at(-1), label).toBe(size);
  for (let i = 1; i < progress.length; i++) expect(progress[i]!, label).toBeGreaterThan(progress[i - 1]!);
  expect(r.maxBuffersInFlight, label).toBeLessThanOrEqual(readAhead + writeDepth);
  await src.close();
  await dst.close();
  return r;
}

/**
 * Seeded fuzzing of real images (shared by fuzz.test.ts, a fixed-seed sample,
 * and mutate.fuzz.ts, the long runs): header and metadata bytes are mutated,
 * then the image is opened, read, mapped, checked and written. Only BlockError
 * may come out, each case finishes within its bound, and memory stays bounded.
 */
import { expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { BlockBackend, BlockError, blockStatus, createImage, type BlockGraph } from '../../../src/node.js';
import { memGraph, prng, pattern, tempDir, qemuImg, qemuIo } from './helpers.js';

// A case takes milliseconds; the bound catches work that grows with a mutated size (a walk
// over 2^40 clusters), with room for a machine busy with other tests.
const CASE_BOUND_MS = 15000;

async function exercise(graph: BlockGraph, name: string, write: boolean) {
  const bb = await BlockBackend.open(graph, { driver: 'qcow2', file: { filename: `memory:${name}` } }, { readOnly: !write });
  try {
    const len = Math.min(bb.length, 1 << 20);
    await bb.read(0, len);
    let off = 0;
    for (let i = 0; off < len && i < 64; i++) off += Math.max(1, (await blockStatus(bb.node, true, off, len - off)).pnum);
    await bb.node.instance.check!({ leaks: false, errors: false });
    if (write) {
      await bb.write(4096, new Uint8Array(10000).fill(7));
      await bb.writeZeroes(65536, 65536);
      await bb.flush();
    }
  } finally {
    await bb.close();
  }
}

/** The seed images: three made by qemu-img / qemu-io, one of our own. */
async function seedImages(): Promise<{ graph: BlockGraph; storage: ReturnType<typeof memGraph>['storage']; seeds: Uint8Array[] }> {
  const t = tempDir();
  const seeds: Uint8Array[] = [];
  try {
    const a = t.path('a.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', a, '1M');
    qemuIo(a, ['write -P 1 0 20000', 'write -z 100000 8192', 'write -c 262144 4096']);
    qemuImg('snapshot', '-c', 's1', a);
    seeds.push(new Uint8Array(readFileSync(a)));
    const b = t.path('b.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=16k,extended_l2=on,refcount_bits=1', b, '1M');
    qemuIo(b, ['write -P 2 1000 30000', 'write -z 500000 16384']);
    seeds.push(new Uint8Array(readFileSync(b)));
    const c = t.path('c.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10,cluster_size=512', c, '256k');
    qemuIo(c, ['write -P 3 0 20000']);
    seeds.push(new Uint8Array(readFileSync(c)));
  } finally {
    t.cleanup();
  }
  const { graph, storage } = memGraph();
  // One of our own, too.
  await createImage(graph, 'qcow2', 'memory:own', { size: 1 << 20, cluster_size: 2048, lazy_refcounts: true });
  const own = await BlockBackend.open(graph, 'memory:own', { format: 'qcow2' });
  await own.write(0, pattern(50000, 1));
  await own.close();
  seeds.push(storage.get('own')!.toBytes());
  return { graph, storage, seeds };
}

/**
 * Runs `cases` mutated images from PRNG seed `seed` and checks the outcome:
 * BlockErrors only, each case within its time bound, bounded memory, at
 * least a tenth opened and exercised cleanly, and no node left open.
 */
export async function fuzzImages(seed: number, cases: number): Promise<Map<string, number>> {
  const { graph, storage, seeds } = await seedImages();
  const r = prng(seed);
  const baseMem = process.memoryUsage().arrayBuffers;
  let maxMem = 0;
  const codes = new Map<string, number>();
  for (let i = 0; i < cases; i++) {
    const base = seeds[i % seeds.length]!;
    const img = base.slice();
    const dv = new DataView(img.buffer);
    const nmut = 1 + Math.floor(r() * 4);
    for (let m = 0; m < nmut; m++) {
      // Header (most), or a metadata / any byte.
      const where = r();
      const pos = where < 0.6 ? Math.floor(r() * 112) : where < 0.8 ? Math.floor(r() * Math.min(img.length, 0x8000)) : Math.floor(r() * img.length);
      const kind = r();
      if (kind < 0.4) img[pos] = img[pos]! ^ (1 << Math.floor(r() * 8));
      else if (kind < 0.7) img[pos] = Math.floor(r() * 256);
      else if (pos + 8 <= img.length) {
        const vals = [0, 1, 0xffffffff, 0x7fffffff, 0x200, img.length, img.length * 2, 0x10000];
        dv.setUint32(pos & ~3, vals[Math.floor(r() * vals.length)]!);
      }
    }
    storage.create('fz', 0).writeRaw(0, img);
    const t0 = performance.now();
    try {
      await exercise(graph, 'fz', r() < 0.3);
      codes.set('ok', (codes.get('ok') ?? 0) + 1);
    } catch (e) {
      if (!(e instanceof BlockError)) {
        throw new Error(`seed ${seed} case ${i}: non-BlockError ${(e as Error)?.stack ?? String(e)}`);
      }
      codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
    }
    const dt = performance.now() - t0;
    if (dt > CASE_BOUND_MS) throw new Error(`seed ${seed} case ${i} took ${dt.toFixed(0)} ms`);
    if (i % 250 === 0) maxMem = Math.max(maxMem, process.memoryUsage().arrayBuffers - baseMem);
    storage.remove('fz');
  }
  // Bounded by the documented limits (L1 32 MiB, refcount table 8 MiB, caches).
  expect(maxMem).toBeLessThan(512 * 1024 * 1024);
  expect(codes.get('ok') ?? 0).toBeGreaterThan(cases / 10);
  expect(graph.listNodes()).toEqual([]);
  return codes;
}

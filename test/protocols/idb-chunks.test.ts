/**
 * The idb back end's chunk logic over an in-memory ChunkStore: sparse reads,
 * read-modify-write of partial chunks, truncate, atomic commits, and a failed
 * commit (quota) that leaves the stored image at the previous commit.
 */
import { describe, it, expect } from 'vitest';
import { ChunkedImage, type ChunkStore, type IdbMeta } from '../../src/protocols/idb-chunks.js';
import { BlockError } from '../../src/core/errors.js';

class MapStore implements ChunkStore {
  chunks = new Map<string, Uint8Array>();
  meta = new Map<string, IdbMeta>();
  gets = 0;
  commits = 0;
  failNext: string | null = null;
  async getMany(name: string, idx: number[]) {
    this.gets++;
    return idx.map((i) => {
      const c = this.chunks.get(`${name}/${i}`);
      return c ? c.slice() : undefined;
    });
  }
  async commit(name: string, puts: Array<[number, Uint8Array]>, deletes: number[], deleteFrom: number | undefined, meta: IdbMeta) {
    if (this.failNext) {
      const n = this.failNext;
      this.failNext = null;
      throw new DOMException('quota', n);
    }
    this.commits++;
    if (deleteFrom !== undefined) {
      for (const k of [...this.chunks.keys()]) {
        const [n, i] = k.split('/');
        if (n === name && Number(i) >= deleteFrom) this.chunks.delete(k);
      }
    }
    for (const i of deletes) this.chunks.delete(`${name}/${i}`);
    for (const [i, c] of puts) this.chunks.set(`${name}/${i}`, c.slice());
    this.meta.set(name, { ...meta });
  }
}

const pat = (seed: number, n: number) => new Uint8Array(n).map((_, i) => (i * 13 + seed) & 0xff);

function model(size: number) {
  return { bytes: new Uint8Array(size) };
}

describe('ChunkedImage', () => {
  it('reads holes as zeros and keeps partial writes right across chunk edges', async () => {
    const store = new MapStore();
    const img = new ChunkedImage(store, 'a', { size: 100_000, chunkSize: 4096, version: 1 });
    const m = model(100_000);
    const ops: Array<[number, number, number]> = [
      [0, 10, 1],
      [4090, 20, 2],
      [8192, 4096, 3],
      [50_000, 30_000, 4],
      [99_990, 10, 5],
      [4095, 1, 6],
    ];
    for (const [off, len, seed] of ops) {
      const d = pat(seed, len);
      await img.write(off, d);
      m.bytes.set(d, off);
    }
    const all = new Uint8Array(100_000);
    await img.read(0, all);
    expect(Buffer.compare(all, m.bytes)).toBe(0);
    await img.commit(true);
    const again = new ChunkedImage(store, 'a', store.meta.get('a')!);
    const all2 = new Uint8Array(100_000);
    await again.read(0, all2);
    expect(Buffer.compare(all2, m.bytes)).toBe(0);
    // Holes are not stored.
    expect(store.chunks.has('a/5')).toBe(false);
  });

  it('stores zero chunks as holes and truncates', async () => {
    const store = new MapStore();
    const img = new ChunkedImage(store, 'b', { size: 0, chunkSize: 1024, version: 1 });
    await img.write(0, pat(1, 8192));
    expect(img.size).toBe(8192);
    await img.write(2048, null, 1024);
    await img.commit(true);
    expect(store.chunks.has('b/2')).toBe(false);
    expect(store.chunks.has('b/3')).toBe(true);
    await img.truncate(3000);
    await img.truncate(8192);
    await img.commit(true);
    const buf = new Uint8Array(8192);
    const fresh = new ChunkedImage(store, 'b', store.meta.get('b')!);
    await fresh.read(0, buf);
    const expected = pat(1, 8192);
    expected.fill(0, 2048, 3072);
    expected.fill(0, 3000);
    expect(Buffer.compare(buf, expected)).toBe(0);
    expect([...store.chunks.keys()].filter((k) => k.startsWith('b/')).sort()).toEqual(['b/0', 'b/1']);
  });

  it('batches the chunks of one request into one store read', async () => {
    const store = new MapStore();
    const img = new ChunkedImage(store, 'c', { size: 1 << 20, chunkSize: 4096, version: 1 });
    await img.write(0, pat(2, 1 << 20));
    await img.commit(true);
    const cold = new ChunkedImage(store, 'c', store.meta.get('c')!, { cacheBytes: 4 << 20 });
    const before = store.gets;
    const buf = new Uint8Array(256 * 1024);
    await cold.read(100, buf);
    expect(store.gets - before).toBe(1);
  });

  it('a failed commit (quota) keeps the previous stored state and the data in memory', async () => {
    const store = new MapStore();
    const img = new ChunkedImage(store, 'd', { size: 65536, chunkSize: 4096, version: 1 });
    await img.write(0, pat(1, 65536));
    await img.commit(true);
    await img.write(4096, pat(9, 8192));
    store.failNext = 'QuotaExceededError';
    const err = await img.commit(true).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlockError);
    expect((err as BlockError).code).toBe('ENOSPC');
    // Stored image: still the first commit.
    const stored = new ChunkedImage(store, 'd', store.meta.get('d')!);
    const s = new Uint8Array(65536);
    await stored.read(0, s);
    expect(Buffer.compare(s, pat(1, 65536))).toBe(0);
    // Retry succeeds with the same data.
    await img.commit(true);
    const fresh = new ChunkedImage(store, 'd', store.meta.get('d')!);
    await fresh.read(0, s);
    const expected = pat(1, 65536);
    expected.set(pat(9, 8192), 4096);
    expect(Buffer.compare(s, expected)).toBe(0);
  });

  it('writes past the write-back limit commit without a flush', async () => {
    const store = new MapStore();
    const img = new ChunkedImage(store, 'e', { size: 0, chunkSize: 4096, version: 1 }, { writebackBytes: 64 * 1024 });
    for (let i = 0; i < 40; i++) await img.write(i * 4096, pat(i, 4096));
    expect(store.commits).toBeGreaterThan(0);
    expect(img.dirtyChunks).toBeLessThan(16);
  });
});

/**
 * Compressed clusters decoded on a pool of threads (src/core/decompress-pool.ts,
 * src/wasm/decompress-workers.ts): images compressed by qemu-img (zlib and
 * zstd) read byte-identical through worker_threads and through the Web Worker
 * path (run here on a stand-in Worker that executes the same program); corrupt
 * data gives the same BlockError as inline decoding; a pool whose thread dies
 * leaves reads correct (inline); and the CLI's convert through the default
 * pool writes what qemu-img writes and exits. Node's default pool for deflate
 * clusters (node:zlib on libuv's threads) answers every edge case of QEMU's
 * inflate as the inline WASM decoder does.
 */
import { describe, it, expect, afterAll, afterEach } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, openSync, readFileSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { resolveObjectURL } from 'node:buffer';
import { resolve } from 'node:path';
import { BlockError } from '../../../src/core/errors.js';
import { setDecompressPool, type ClusterCompression, type DecompressPool, type DecompressTask } from '../../../src/core/decompress-pool.js';
import { WorkerDecompressPool, closeDefaultDecompressPool, decompressPoolFor, nodeThreadSpawn, webWorkerSpawn, type Spawn } from '../../../src/wasm/decompress-workers.js';
import { NodeZlibDecompressPool } from '../../../src/wasm/decompress-node-zlib.js';
import { getClusterCodecSync } from '../../../src/wasm/codec.js';
import { deflateRawSync } from 'node:zlib';
import { fileGraph, openQcow2, qemuImg, tempDir } from './helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());
afterEach(() => setDecompressPool(undefined));

const CS = 65536;
const SIZE = 96 * CS;

/** Data that compresses to about half, different in every sector. */
function source(): Uint8Array {
  const b = new Uint8Array(SIZE);
  let x = 0x9e3779b9;
  for (let i = 0; i < SIZE; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = i % 512 < 4 ? (i >> 9) & 0xff : (x >>> 24) & 0x0f;
  }
  return b;
}

const data = source();
const images = new Map<string, string>();
function image(ctype: ClusterCompression): string {
  let img = images.get(ctype);
  if (!img) {
    const raw = t.path('src.raw');
    if (!existsSync(raw)) writeFileSync(raw, data);
    img = t.path(`c-${ctype}.qcow2`);
    qemuImg('convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', '-o', `compression_type=${ctype}`, raw, img);
    images.set(ctype, img);
  }
  return img;
}

/** Counts the clusters a pool was given. */
function counting(pool: DecompressPool): DecompressPool & { given: number } {
  const c = {
    given: 0,
    threads: pool.threads,
    ...(pool.wholeBatches ? { wholeBatches: true } : {}),
    decode(kind: ClusterCompression, tasks: readonly DecompressTask[]) {
      c.given += tasks.length;
      return pool.decode(kind, tasks);
    },
    close: () => pool.close(),
  };
  return c;
}

/** Reads the whole image in 2 MiB requests (as convert does). */
async function readAll(img: string): Promise<Uint8Array> {
  const graph = fileGraph();
  const blk = await openQcow2(graph, img, true);
  try {
    const got = new Uint8Array(SIZE);
    for (let off = 0; off < SIZE; off += 2 << 20) await blk.pread(off, got.subarray(off, Math.min(SIZE, off + (2 << 20))));
    return got;
  } finally {
    await blk.close();
    await graph.closeAll();
  }
}

/** A Web Worker stand-in: runs the program given as a Blob URL with `self` as its scope. */
class StandInWorker {
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onerror: ((e: { message: string }) => void) | null = null;
  onmessageerror: (() => void) | null = null;
  private readonly scope: { onmessage: ((e: { data: unknown }) => void) | null; postMessage: (m: unknown) => void };
  private readonly ready: Promise<void>;
  constructor(url: string) {
    this.scope = { onmessage: null, postMessage: (m) => queueMicrotask(() => this.onmessage?.({ data: structuredClone(m) })) };
    this.ready = resolveObjectURL(url)!
      .text()
      .then((src) => new Function('self', 'require', src)(this.scope, undefined));
  }
  postMessage(m: unknown, transfer: Transferable[]): void {
    const copy = structuredClone(m, { transfer });
    void this.ready.then(() => this.scope.onmessage!({ data: copy }));
  }
  terminate(): void {}
}

describe('qcow2 compressed clusters decoded on a thread pool', () => {
  const spawns: Array<[string, () => Spawn]> = [
    ['worker_threads', () => nodeThreadSpawn()!],
    [
      'Web Worker path',
      () => {
        (globalThis as { Worker?: unknown }).Worker = StandInWorker;
        try {
          return webWorkerSpawn()!;
        } finally {
          delete (globalThis as { Worker?: unknown }).Worker;
        }
      },
    ],
  ];
  for (const [how, spawn] of spawns) {
    for (const ctype of ['zlib', 'zstd'] as const) {
      it(`${how}, ${ctype}: an image compressed by qemu-img reads byte-identical`, async () => {
        const pool = counting(new WorkerDecompressPool(2, spawn()));
        setDecompressPool(pool);
        try {
          const got = await readAll(image(ctype));
          expect(Buffer.compare(got, data)).toBe(0);
          expect(pool.given).toBeGreaterThan(SIZE / CS / 2);
        } finally {
          await pool.close();
        }
      });
    }
  }

  it('node:zlib pool, zlib: an image compressed by qemu-img reads byte-identical', async () => {
    const pool = counting(new NodeZlibDecompressPool(1));
    setDecompressPool(pool);
    const got = await readAll(image('zlib'));
    expect(Buffer.compare(got, data)).toBe(0);
    // Whole batches: no cluster is left to the caller's thread (every cluster of this image is compressed).
    expect(pool.given).toBe(SIZE / CS);
    await expect(pool.decode('zstd', [])).rejects.toThrow(/zstd/);
  });

  it("node:zlib pool: each of QEMU's edge cases answers as the inline decoder", async () => {
    const cluster = data.subarray(0, CS);
    const ok = deflateRawSync(cluster, { windowBits: 12 });
    const longer = deflateRawSync(data.subarray(0, 2 * CS), { windowBits: 12 });
    // A stream with back-references beyond 4 KiB (window bits 15).
    const repeated = new Uint8Array(CS);
    for (let i = 0; i < CS; i++) repeated[i] = cluster[i % 20000]!;
    const far = deflateRawSync(repeated, { windowBits: 15 });
    const cases: Array<[string, Uint8Array]> = [
      ['exact, with sector padding', Buffer.concat([ok, new Uint8Array(300).fill(0xab)])],
      ['more than a cluster (truncated, as QEMU)', longer],
      ['short', ok.subarray(0, ok.length >> 1)],
      ['distance beyond 4 KiB', far],
      ['garbage', new Uint8Array(5000).fill(0xff)],
      ['empty', new Uint8Array(0)],
    ];
    const pool = new NodeZlibDecompressPool(1);
    const codec = getClusterCodecSync();
    for (const [what, input] of cases) {
      const inlineOut = new Uint8Array(CS);
      let inlineErr: unknown = null;
      try {
        codec.inflateClusterSync!(input, inlineOut, { node: 'n', offset: 4096 });
      } catch (e) {
        inlineErr = e;
      }
      const out = new Uint8Array(CS);
      const [err] = await pool.decode('zlib', [{ input, out, context: { node: 'n', offset: 4096 } }]);
      if (inlineErr === null) {
        expect(err, what).toBeNull();
        expect(Buffer.compare(out, inlineOut), what).toBe(0);
      } else {
        expect(err, what).toBeInstanceOf(BlockError);
        expect(err!.message, what).toBe((inlineErr as BlockError).message);
        expect(err!.code, what).toBe((inlineErr as BlockError).code);
      }
    }
    // What QEMU accepts decodes: its one inflate call into the whole cluster takes any distance
    // within the cluster's output (window bits limit only a window kept between calls).
    const farOut = new Uint8Array(CS);
    expect((await pool.decode('zlib', [{ input: far, out: farOut, context: {} }]))[0]).toBeNull();
    expect(Buffer.compare(farOut, repeated)).toBe(0);
    expect((await pool.decode('zlib', [{ input: longer, out: new Uint8Array(CS), context: {} }]))[0]).toBeNull();
    expect((await pool.decode('zlib', [{ input: ok.subarray(0, 100), out: new Uint8Array(CS), context: {} }]))[0]).toBeInstanceOf(BlockError);
    await pool.close();
    await expect(pool.decode('zlib', [])).rejects.toThrow(/closed/);
  });

  it("Node's default pool for deflate clusters is node:zlib's (no thread of ours); DISKWORKER_DECOMPRESS_THREADS=0 decodes inline", async () => {
    const before = process.env['DISKWORKER_DECOMPRESS_THREADS'];
    try {
      delete process.env['DISKWORKER_DECOMPRESS_THREADS'];
      await closeDefaultDecompressPool();
      await readAll(image('zlib'));
      const pool = decompressPoolFor('zlib');
      if ((await import('node:os')).availableParallelism() > 1) expect(pool).toBeInstanceOf(NodeZlibDecompressPool);
      else expect(pool).toBeUndefined();
      process.env['DISKWORKER_DECOMPRESS_THREADS'] = '0';
      await closeDefaultDecompressPool();
      expect(decompressPoolFor('zlib')).toBeUndefined();
    } finally {
      if (before === undefined) delete process.env['DISKWORKER_DECOMPRESS_THREADS'];
      else process.env['DISKWORKER_DECOMPRESS_THREADS'] = before;
      await closeDefaultDecompressPool();
    }
  });

  it('corrupt compressed data: the same BlockError as inline decoding, and no hang', async () => {
    for (const ctype of ['zlib', 'zstd'] as const) {
      const bad = t.path(`bad-${ctype}.qcow2`);
      writeFileSync(bad, readFileSync(image(ctype)));
      // Garbage over the compressed data of a few clusters in the middle of the first batch.
      const fd = openSync(bad, 'r+');
      writeSync(fd, new Uint8Array(20000).fill(0xff), 0, 20000, 0x50000 + 8 * 40000);
      closeSync(fd);
      const inline = await readAll(bad).then(
        () => null,
        (e: unknown) => e,
      );
      expect(inline).toBeInstanceOf(BlockError);
      const pools: DecompressPool[] = [new WorkerDecompressPool(1, nodeThreadSpawn()!)];
      if (ctype === 'zlib') pools.push(new NodeZlibDecompressPool(1));
      for (const p of pools) {
        const pool = counting(p);
        setDecompressPool(pool);
        try {
          const pooled = await readAll(bad).then(
            () => null,
            (e: unknown) => e,
          );
          expect(pool.given).toBeGreaterThan(0);
          expect(pooled).toBeInstanceOf(BlockError);
          expect((pooled as BlockError).code).toBe((inline as BlockError).code);
          expect((pooled as BlockError).message).toBe((inline as BlockError).message);
        } finally {
          await pool.close();
        }
      }
    }
  });

  it('a thread that dies: reads are decoded inline, and correct', async () => {
    const dying: Spawn = (_reply, onFail) => {
      setTimeout(() => onFail(new Error('thread died')), 1);
      return { post: () => undefined, hold: () => undefined, terminate: () => undefined };
    };
    const pool = new WorkerDecompressPool(1, dying);
    setDecompressPool(pool);
    const got = await readAll(image('zlib'));
    expect(Buffer.compare(got, data)).toBe(0);
    expect(pool.failed).toBe(true);
    await expect(pool.decode('zlib', [{ input: new Uint8Array(1), out: new Uint8Array(CS), context: {} }])).rejects.toThrow(/failed/);
  });

  const cli = resolve(__dirname, '../../../dist/cli/diskworker.js');
  it.runIf(existsSync(cli))('img convert through the default pool writes what qemu-img writes and exits', () => {
    // 32 MiB: enough batches for the default pool to start its threads.
    const big = t.path('big.raw');
    const f = openSync(big, 'w');
    for (let i = 0; i < 32 * 1024 * 1024; i += SIZE) writeSync(f, data, 0, Math.min(SIZE, 32 * 1024 * 1024 - i), i);
    closeSync(f);
    for (const ctype of ['zlib', 'zstd'] as const) {
      const img = t.path(`big-${ctype}.qcow2`);
      qemuImg('convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', '-o', `compression_type=${ctype}`, big, img);
      const ours = t.path(`ours-${ctype}.raw`);
      const theirs = t.path(`theirs-${ctype}.raw`);
      qemuImg('convert', '-O', 'raw', img, theirs);
      const r = spawnSync(process.execPath, [cli, 'img', 'convert', '-O', 'raw', img, ours], {
        encoding: 'utf8',
        env: { ...process.env, DISKWORKER_DECOMPRESS_THREADS: '2' },
      });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(Buffer.compare(readFileSync(ours), readFileSync(theirs))).toBe(0);
    }
  });
});

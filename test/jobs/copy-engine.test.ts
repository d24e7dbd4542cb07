/**
 * The copy engine (src/jobs/) on the memory back end: seeded random images
 * copied byte for byte, sparse and zero detection, allocation above a base,
 * bounded buffers in flight, the rate limit on an injected clock, progress,
 * cancellation, and injected read / write errors under both error policies.
 * The CLI's golden tests (test/cli/convert-*.test.ts, img.test.ts) compare
 * the same engine with qemu-img 7.2.
 */
import { describe, it, expect } from 'vitest';
import { BlockBackend, BlockError, ReqFlag, createImage } from '../../src/node.js';
import { runCopy, type CopyExtent, type CopyJob } from '../../src/jobs/copy-engine.js';
import { CopyError } from '../../src/jobs/copy-error.js';
import { CopyBuffers } from '../../src/jobs/buffers.js';
import { RateLimiter, type CopyClock } from '../../src/jobs/rate-limit.js';
import { allocationExtents, readConcatenated, statusExtents } from '../../src/jobs/plan.js';
import { targetWriter, type CopyTarget } from '../../src/jobs/target-writer.js';
import { MEM_CHUNK, memGraph, openRaw, randomCopyCase, seedSource } from './copy-engine-cases.js';
import { prng } from '../prng.js';

const KiB = 1024;

/** A plain job over memory backends: whole-image status plan, 'none' or 'buffer' zero detection. */
function plainJob(src: BlockBackend, dst: BlockBackend, chunkSize: number, zeroDetect: 'none' | 'buffer' = 'none', zeroInit = false): CopyJob {
  const plan = { srcs: [src], sizes: [src.length], chunkSize, compressCluster: 0, fullyAllocate: false, targetHasBacking: false };
  return {
    extents: () => statusExtents(plan),
    read: (o, b) => readConcatenated([src], [src.length], o, b),
    write: targetWriter({ target: dst, zeroDetect, zeroInit, compress: false, fullyAllocate: false }),
  };
}

/** A source of `size` random bytes, all allocated, and an empty target of the same size. */
async function dataPair(size: number, seed = 7) {
  const { graph, storage } = memGraph();
  const bytes = new Uint8Array(size);
  const rnd = prng(seed);
  for (let i = 0; i < size; i++) bytes[i] = 1 + ((rnd() * 255) | 0);
  storage.create('src', size).writeRaw(0, bytes);
  storage.create('dst', size);
  const src = await openRaw(graph, 'src', true);
  const dst = await openRaw(graph, 'dst', false);
  return { graph, storage, bytes, src, dst, close: async () => (await src.close(), await dst.close()) };
}

describe('copy engine: seeded random images', () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`seed ${seed}: the copy equals the source, sparse where the source holds no data`, async () => {
      await randomCopyCase(seed);
    });
  }
});

describe('copy engine: sparse and zero detection', () => {
  /** Records the target calls of a writer. */
  function recorder(): { target: CopyTarget; log: string[] } {
    const log: string[] = [];
    return {
      log,
      target: {
        write: async (o, d, f = 0) => void log.push(`write ${o}+${d.length}${f ? ` flags ${f}` : ''}`),
        writeZeroes: async (o, n) => void log.push(`zero ${o}+${n}`),
      },
    };
  }
  // data 4 KiB, zeros 2 KiB, data 4 KiB, zeros 8 KiB, data 512 (qemu's is_allocated_sectors_min
  // with -S 4k: the 2 KiB hole inside data is data, the 8 KiB run is zeros, cut at the 4 KiB
  // alignment; the last part starts with a zero run shorter than the alignment unit).
  const buf = new Uint8Array(18944).fill(0x5a);
  buf.fill(0, 4096, 6144);
  buf.fill(0, 10240, 18432);
  const extent: CopyExtent = { offset: 0, length: buf.length, kind: 'data' };

  it('-S 4k: short zero runs inside data are data, long ones zero writes', async () => {
    const { target, log } = recorder();
    await targetWriter({ target, zeroDetect: 'sectors', minSparse: 4096, zeroInit: false, compress: false, fullyAllocate: false })(extent, buf);
    expect(log).toEqual(['write 0+12288', 'zero 12288+4096', 'write 16384+2560']);
  });
  it('a target that reads zeros gets no zero writes at all', async () => {
    const { target, log } = recorder();
    await targetWriter({ target, zeroDetect: 'sectors', minSparse: 4096, zeroInit: true, compress: false, fullyAllocate: false })(extent, buf);
    expect(log).toEqual(['write 0+12288', 'write 16384+2560']);
  });
  it('-S 0 writes everything as data, zero extents too', async () => {
    const { target, log } = recorder();
    const w = targetWriter({ target, zeroDetect: 'none', zeroInit: true, compress: false, fullyAllocate: true });
    await w(extent, buf);
    await w({ offset: 65536, length: 4096, kind: 'zero' }, null);
    expect(log).toEqual(['write 0+18944', 'write 65536+4096']);
  });
  it('buffer detection and compression: an all-zero buffer is a zero write, others one compressed write', async () => {
    const { target, log } = recorder();
    const w = targetWriter({ target, zeroDetect: 'buffer', zeroInit: false, compress: true, fullyAllocate: false });
    await w({ offset: 0, length: 4096, kind: 'data' }, new Uint8Array(4096));
    await w(extent, buf);
    await w({ offset: 0, length: 1, kind: 'skip' }, null);
    expect(log).toEqual(['zero 0+4096', `write 0+18944 flags ${ReqFlag.COMPRESSED}`]);
  });
  it('a bad -S or a data extent without its bytes is EINVAL', async () => {
    const { target } = recorder();
    expect(() => targetWriter({ target, zeroDetect: 'sectors', minSparse: 1000, zeroInit: false, compress: false, fullyAllocate: false })).toThrow(/Invalid sparse size: 1000/);
    const w = targetWriter({ target, zeroDetect: 'none', zeroInit: false, compress: false, fullyAllocate: false });
    await expect(w(extent, null)).rejects.toMatchObject({ code: 'EINVAL' });
  });
  it('holes become zero extents, written zeros stay data (then detected as zeros), totals add up', async () => {
    const { graph, storage } = memGraph();
    const f = storage.create('src', 4 * MEM_CHUNK);
    f.writeRaw(0, new Uint8Array(MEM_CHUNK).fill(1));
    f.writeRaw(2 * MEM_CHUNK, new Uint8Array(MEM_CHUNK));
    storage.create('dst', 4 * MEM_CHUNK).writeRaw(0, new Uint8Array(4 * MEM_CHUNK).fill(9));
    const src = await openRaw(graph, 'src', true);
    const dst = await openRaw(graph, 'dst', false);
    const r = await runCopy(plainJob(src, dst, MEM_CHUNK, 'buffer'), { chunkSize: MEM_CHUNK });
    expect(r).toMatchObject({ dataBytes: 2 * MEM_CHUNK, zeroBytes: 2 * MEM_CHUNK, skippedBytes: 0 });
    const out = storage.get('dst')!;
    expect(out.toBytes()).toEqual(f.toBytes());
    // The zero writes deallocated the target's chunks (MAY_UNMAP on memory drops whole chunks).
    expect([0, 1, 2, 3].map((i) => out.status(i * MEM_CHUNK, 1).data)).toEqual([true, false, false, false]);
    await src.close();
    await dst.close();
  });
});

describe('copy engine: compressed target', () => {
  it('a random image copied compressed into a qcow2 (whole-cluster pieces) reads back equal', async () => {
    const { graph, storage } = memGraph();
    const size = 40 * MEM_CHUNK + 3 * 512;
    const want = seedSource(storage, 'src', size, 42);
    await createImage(graph, 'qcow2', 'memory:c.qcow2', { size, cluster_size: MEM_CHUNK });
    const src = await openRaw(graph, 'src', true);
    const dst = await BlockBackend.open(graph, { driver: 'qcow2', file: { driver: 'memory', filename: 'memory:c.qcow2' } }, { readOnly: false });
    const plan = { srcs: [src], sizes: [size], chunkSize: MEM_CHUNK, compressCluster: MEM_CHUNK, fullyAllocate: false, targetHasBacking: false };
    const pieces: CopyExtent[] = [];
    const writer = targetWriter({ target: dst, zeroDetect: 'buffer', zeroInit: true, compress: true, fullyAllocate: false });
    await runCopy(
      {
        extents: () => statusExtents(plan),
        read: (o, b) => readConcatenated([src], [size], o, b),
        write: async (e, b) => (pieces.push(e), writer(e, b)),
        finish: async () => {
          await dst.write(0, new Uint8Array(0), ReqFlag.COMPRESSED);
          await dst.flush();
        },
      },
      { chunkSize: MEM_CHUNK },
    );
    // Every piece is a whole cluster, but the last one at the odd end of the disk.
    for (const e of pieces) expect(e.offset % MEM_CHUNK === 0 && (e.length % MEM_CHUNK === 0 || e.offset + e.length === size)).toBe(true);
    expect(Buffer.compare(await dst.read(0, size), want)).toBe(0);
    // Compressed: the image file holds less than the data it stores.
    const stored = want.reduce((a, _x, i) => (i % MEM_CHUNK === 0 && want.subarray(i, i + MEM_CHUNK).some((y) => y) ? a + MEM_CHUNK : a), 0);
    expect(storage.get('c.qcow2')!.length).toBeLessThan(stored);
    await src.close();
    await dst.close();
  });
});

describe('copy engine: allocation above a base', () => {
  it('copies what the overlay (and layers above the base) hold; the result is the overlay’s view', async () => {
    const { graph, storage } = memGraph();
    const size = 16 * MEM_CHUNK;
    await createImage(graph, 'qcow2', 'memory:base.qcow2', { size, cluster_size: MEM_CHUNK });
    await createImage(graph, 'qcow2', 'memory:mid.qcow2', { size, cluster_size: MEM_CHUNK, backing_file: 'memory:base.qcow2', backing_fmt: 'qcow2' });
    await createImage(graph, 'qcow2', 'memory:top.qcow2', { size, cluster_size: MEM_CHUNK, backing_file: 'memory:mid.qcow2', backing_fmt: 'qcow2' });
    const fill = async (name: string, clusters: number[], v: number) => {
      const bb = await BlockBackend.open(graph, { driver: 'qcow2', file: { driver: 'memory', filename: name } }, { readOnly: false });
      for (const c of clusters) await bb.write(c * MEM_CHUNK, new Uint8Array(MEM_CHUNK).fill(v));
      await bb.close();
    };
    await fill('memory:base.qcow2', [0, 1, 2, 3, 4, 5], 1);
    await fill('memory:mid.qcow2', [2, 9], 2);
    await fill('memory:top.qcow2', [4, 5, 12], 3);
    const top = await BlockBackend.open(graph, { driver: 'qcow2', file: { driver: 'memory', filename: 'memory:top.qcow2' } }, { readOnly: true });
    const mid = top.node.backing!.node;
    const base = mid.backing!.node;
    const runs: CopyExtent[] = [];
    for await (const e of allocationExtents(top.node, base, size)) runs.push(e);
    const data = runs.filter((e) => e.kind === 'data').map((e) => [e.offset / MEM_CHUNK, e.length / MEM_CHUNK]);
    expect(data).toEqual([[2, 1], [4, 2], [9, 1], [12, 1]]);
    expect(runs.reduce((a, e) => a + e.length, 0)).toBe(size);
    // Above the middle layer only the top's clusters count.
    const topOnly: number[] = [];
    for await (const e of allocationExtents(top.node, mid, size)) if (e.kind === 'data') topOnly.push(e.offset / MEM_CHUNK, e.length / MEM_CHUNK);
    expect(topOnly).toEqual([4, 2, 12, 1]);

    // Copy the data above the base into a raw image holding the base's content: it then shows the top's view.
    storage.create('flat', size).writeRaw(0, new Uint8Array(6 * MEM_CHUNK).fill(1));
    const flat = await openRaw(graph, 'flat', false);
    const seen: number[] = [];
    const r = await runCopy(
      {
        extents: () => allocationExtents(top.node, base, size),
        read: (o, b) => top.pread(o, b),
        write: targetWriter({ target: flat, zeroDetect: 'buffer', zeroInit: false, compress: false, fullyAllocate: false }),
      },
      { chunkSize: 3 * MEM_CHUNK, progressTotal: size, onProgress: (p) => void seen.push(p.done / MEM_CHUNK) },
    );
    expect(r).toMatchObject({ dataBytes: 5 * MEM_CHUNK, zeroBytes: 0, skippedBytes: 11 * MEM_CHUNK });
    // One report per run, in order (commit prints one progress line per run).
    expect(seen).toEqual(runs.map((e) => (e.offset + e.length) / MEM_CHUNK));
    expect(Buffer.compare(storage.get('flat')!.toBytes(), await top.read(0, size))).toBe(0);
    // Runs cut into one-cluster pieces still report once per run, with the run's end.
    const perRun: number[] = [];
    await runCopy(
      { extents: () => allocationExtents(top.node, base, size), read: (o, b) => top.pread(o, b), write: async () => undefined },
      { chunkSize: MEM_CHUNK, progressTotal: size, onProgress: (p) => void perRun.push(p.done / MEM_CHUNK) },
    );
    expect(perRun).toEqual(seen);
    await flat.close();
    await top.close();
  });
});

describe('copy engine: pipeline bounds', () => {
  for (const [readAhead, writeDepth] of [[1, 1], [8, 4], [3, 6], [16, 1]] as const) {
    it(`read-ahead ${readAhead}, write depth ${writeDepth}: buffers in flight stay within ${readAhead + writeDepth}, writes in order`, async () => {
      const size = 96 * 4 * KiB;
      const { src, dst, bytes, storage, close } = await dataPair(size);
      const rnd = prng(readAhead * 31 + writeDepth);
      const turns = async () => {
        for (let i = Math.floor(rnd() * 6); i > 0; i--) await Promise.resolve();
      };
      let holding = 0;
      let maxHolding = 0;
      let writing = 0;
      let maxWriting = 0;
      const order: number[] = [];
      const inner = plainJob(src, dst, 4 * KiB);
      const buffers = new CopyBuffers({ size: 4 * KiB });
      const r = await runCopy(
        {
          extents: inner.extents,
          read: async (o, b) => {
            maxHolding = Math.max(maxHolding, ++holding);
            await turns();
            await inner.read(o, b);
          },
          write: async (e, b) => {
            order.push(e.offset);
            maxWriting = Math.max(maxWriting, ++writing);
            await turns();
            await inner.write(e, b);
            writing--;
            holding--;
          },
        },
        { chunkSize: 4 * KiB, readAhead, writeDepth, buffers },
      );
      expect(Buffer.compare(storage.get('dst')!.toBytes(), bytes)).toBe(0);
      expect(order).toEqual(Array.from({ length: 96 }, (_, i) => i * 4 * KiB));
      expect(maxHolding).toBeLessThanOrEqual(readAhead + writeDepth);
      expect(maxWriting).toBeLessThanOrEqual(writeDepth);
      expect(r.maxBuffersInFlight).toBe(buffers.maxInFlight);
      expect(r.maxBuffersInFlight).toBeLessThanOrEqual(readAhead + writeDepth);
      // The pipeline really overlaps when it may.
      if (readAhead + writeDepth > 2) expect(maxHolding).toBeGreaterThan(2);
      expect(buffers.inFlight).toBe(0);
      await close();
    });
  }
  it('bad settings are EINVAL', async () => {
    const { src, dst, close } = await dataPair(8 * KiB);
    for (const o of [{ chunkSize: 0 }, { chunkSize: 512, readAhead: 0 }, { chunkSize: 512, writeDepth: 1.5 }, { chunkSize: 512, rateLimit: -1 }]) {
      await expect(runCopy(plainJob(src, dst, 512), o)).rejects.toMatchObject({ code: 'EINVAL' });
    }
    await close();
  });
});

/** A clock that only moves when the copy sleeps. */
function fakeClock(): CopyClock & { t: number; sleeps: number[] } {
  const c = {
    t: 0,
    sleeps: [] as number[],
    now: () => c.t,
    sleep: async (ms: number) => {
      c.sleeps.push(ms);
      c.t += ms;
    },
  };
  return c;
}

describe('copy engine: rate limit', () => {
  it('1 MiB at 256 KiB/s takes the time the rate says on the clock, never ahead of it', async () => {
    const { src, dst, bytes, storage, close } = await dataPair(1 << 20);
    const clock = fakeClock();
    const rate = 256 * KiB;
    let started = 0;
    const inner = plainJob(src, dst, 64 * KiB);
    await runCopy(
      {
        ...inner,
        read: async (o, b) => {
          // Bytes read so far stay within what the rate allows by now (plus the first piece).
          expect(started).toBeLessThanOrEqual((rate * clock.t) / 1000);
          started += b.length;
          await inner.read(o, b);
        },
      },
      { chunkSize: 64 * KiB, rateLimit: rate, clock },
    );
    expect(Buffer.compare(storage.get('dst')!.toBytes(), bytes)).toBe(0);
    // 16 pieces: the first goes at once, the other 15 at 250 ms each.
    expect(clock.t).toBeCloseTo(15 * 250, 6);
    expect(clock.sleeps.length).toBe(15);
    await close();
  });
  it('a copy that fell behind catches up by at most one slice, not in a burst', async () => {
    const clock = fakeClock();
    const lim = new RateLimiter(1000, clock);
    await lim.take(1000);
    clock.t += 10_000;
    // 10 s behind: only CATCH_UP_MS worth goes without waiting.
    await lim.take(100);
    await lim.take(100);
    expect(clock.sleeps).toEqual([]);
    await lim.take(100);
    expect(clock.sleeps.length).toBe(1);
    expect(clock.sleeps[0]).toBeCloseTo(100, 6);
  });
  it('without a limit the clock is never asked to sleep', async () => {
    const { src, dst, close } = await dataPair(256 * KiB);
    const clock = fakeClock();
    await runCopy(plainJob(src, dst, 64 * KiB), { chunkSize: 64 * KiB, clock });
    expect(clock.sleeps).toEqual([]);
    await close();
  });
});

describe('copy engine: progress', () => {
  it('rises in target order to the total of counted extents (100 %)', async () => {
    const { graph, storage } = memGraph();
    const size = 64 * MEM_CHUNK;
    const want = seedSource(storage, 'src', size, 99);
    // Holes of whole memory chunks: zero extents, which this progress does not count.
    for (let c = 0; c < 64; c += 3) {
      storage.get('src')!.zero(c * MEM_CHUNK, MEM_CHUNK);
      want.fill(0, c * MEM_CHUNK, (c + 1) * MEM_CHUNK);
    }
    storage.create('dst', size);
    const src = await openRaw(graph, 'src', true);
    const dst = await openRaw(graph, 'dst', false);
    const seen: { done: number; total: number }[] = [];
    const counted = (e: CopyExtent) => e.kind === 'data';
    let expected = 0;
    const job = plainJob(src, dst, 32 * KiB, 'buffer', true);
    for await (const e of job.extents()) if (counted(e)) expected += e.length;
    await runCopy(job, { chunkSize: 32 * KiB, counts: counted, onProgress: (p) => void seen.push(p) });
    expect(Buffer.compare(storage.get('dst')!.toBytes(), want)).toBe(0);
    expect(expected).toBeGreaterThan(0);
    expect(expected).toBeLessThan(size);
    for (const p of seen) expect(p.total).toBe(expected);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.done).toBeGreaterThan(seen[i - 1]!.done);
    expect((100 * seen.at(-1)!.done) / seen.at(-1)!.total).toBe(100);
    await src.close();
    await dst.close();
  });
});

describe('copy engine: cancellation', () => {
  it('an abort mid-copy rejects with ECANCELED once nothing is in flight; the source is untouched', async () => {
    const { src, dst, bytes, storage, close } = await dataPair(2 << 20);
    const srcFile = storage.get('src')!;
    const ac = new AbortController();
    let inFlight = 0;
    let atReject = -1;
    const inner = plainJob(src, dst, 64 * KiB);
    const p = runCopy(
      {
        ...inner,
        read: async (o, b) => {
          inFlight++;
          await Promise.resolve();
          await inner.read(o, b).finally(() => inFlight--);
        },
        write: async (e, b) => {
          inFlight++;
          await Promise.resolve();
          await inner.write(e, b).finally(() => inFlight--);
        },
      },
      { chunkSize: 64 * KiB, onProgress: (q) => void (q.done >= 512 * KiB && ac.abort()), signal: ac.signal },
    ).catch((e: unknown) => {
      atReject = inFlight;
      throw e;
    });
    const err = await p.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BlockError);
    expect((err as BlockError).code).toBe('ECANCELED');
    expect(atReject).toBe(0);
    // Stopped well before the end: the tail of the target is still empty.
    const out = storage.get('dst')!;
    expect(out.status((2 << 20) - MEM_CHUNK, 1).data).toBe(false);
    expect(srcFile.writeCount).toBe(0);
    expect(Buffer.compare(srcFile.toBytes(), bytes)).toBe(0);
    await close();
  });
  it('an abort during a rate-limit wait ends the copy; a BlockError reason is kept', async () => {
    const { src, dst, close } = await dataPair(256 * KiB);
    const ac = new AbortController();
    const clock: CopyClock = { now: () => 0, sleep: async () => ac.abort(new BlockError('EBUSY', 'node went away')) };
    await expect(runCopy(plainJob(src, dst, 64 * KiB), { chunkSize: 64 * KiB, rateLimit: 1, clock, signal: ac.signal })).rejects.toMatchObject({
      code: 'EBUSY',
      message: 'node went away',
    });
    // Aborted before it starts: nothing is read.
    const early = new AbortController();
    early.abort();
    let reads = 0;
    const job = plainJob(src, dst, 64 * KiB);
    await expect(runCopy({ ...job, read: async (o, b) => void (reads++, await job.read(o, b)) }, { chunkSize: 64 * KiB, signal: early.signal })).rejects.toMatchObject({ code: 'ECANCELED' });
    expect(reads).toBe(0);
    await close();
  });
});

describe('copy engine: injected errors', () => {
  for (const code of ['EIO', 'ENOSPC'] as const) {
    it(`a ${code} on the 5th write is a CopyError with the code and the piece’s target offset`, async () => {
      const { src, dst, storage, close } = await dataPair(1 << 20);
      storage.get('dst')!.faults = { failAfterWrites: 4, failCode: code };
      const err = await runCopy(plainJob(src, dst, 64 * KiB), { chunkSize: 64 * KiB }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CopyError);
      expect(err).toMatchObject({ code, op: 'write', offset: 4 * 64 * KiB, context: { offset: 4 * 64 * KiB } });
      expect((err as CopyError).message).toBe(`error while writing at byte ${4 * 64 * KiB}: Injected ${code} on write at offset ${4 * 64 * KiB}`);
      await close();
    });
    it(`a ${code} reading the source is a CopyError at the target offset (two sources concatenated)`, async () => {
      const { graph, storage } = memGraph();
      storage.create('a', 192 * KiB).writeRaw(0, new Uint8Array(192 * KiB).fill(1));
      storage.create('b', 256 * KiB).writeRaw(0, new Uint8Array(256 * KiB).fill(2));
      storage.create('dst', 448 * KiB);
      storage.get('b')!.faults = { failReads: { start: 100 * KiB, end: 101 * KiB }, failCode: code };
      const a = await openRaw(graph, 'a', true);
      const b = await openRaw(graph, 'b', true);
      const dst = await openRaw(graph, 'dst', false);
      const sizes = [a.length, b.length];
      const plan = { srcs: [a, b], sizes, chunkSize: 64 * KiB, compressCluster: 0, fullyAllocate: false, targetHasBacking: false };
      const job: CopyJob = {
        extents: () => statusExtents(plan),
        read: (o, buf) => readConcatenated([a, b], sizes, o, buf),
        write: targetWriter({ target: dst, zeroDetect: 'none', zeroInit: false, compress: false, fullyAllocate: false }),
      };
      const err = await runCopy(job, { chunkSize: 64 * KiB }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code, op: 'read', offset: 192 * KiB + 64 * KiB });
      // The ignore policy goes on: that piece stays as the target had it, the rest is copied.
      const r = await runCopy(job, { chunkSize: 64 * KiB, onReadError: 'ignore' });
      expect(r.errors.map((e) => [e.op, e.offset, e.code])).toEqual([['read', 256 * KiB, code]]);
      storage.get('b')!.faults = {};
      const out = storage.get('dst')!.toBytes();
      expect(out.subarray(0, 192 * KiB).every((x) => x === 1)).toBe(true);
      expect(out.subarray(192 * KiB, 256 * KiB).every((x) => x === 2)).toBe(true);
      expect(out.subarray(256 * KiB, 320 * KiB).every((x) => x === 0)).toBe(true);
      expect(out.subarray(320 * KiB).every((x) => x === 2)).toBe(true);
      for (const bb of [a, b, dst]) await bb.close();
    });
  }
  it('the ignore policy for writes lists every failed piece and still reports progress to the end', async () => {
    const { src, dst, storage, close } = await dataPair(512 * KiB);
    storage.get('dst')!.faults = { failAfterWrites: 6, failCode: 'ENOSPC' };
    const seen: number[] = [];
    const r = await runCopy(plainJob(src, dst, 64 * KiB), { chunkSize: 64 * KiB, onWriteError: 'ignore', onProgress: (p) => void seen.push(p.done) });
    expect(r.errors.map((e) => e.offset / (64 * KiB))).toEqual([6, 7]);
    expect(r.errors.every((e) => e.code === 'ENOSPC' && e.op === 'write')).toBe(true);
    expect(seen.at(-1)).toBe(512 * KiB);
    await close();
  });
  it('a failing planner or progress callback ends the copy with its own error, after in-flight work settles', async () => {
    const { src, dst, close } = await dataPair(512 * KiB);
    const job = plainJob(src, dst, 64 * KiB);
    const boom = new BlockError('EIO', 'status failed');
    await expect(
      runCopy(
        {
          ...job,
          extents: async function* () {
            yield { offset: 0, length: 64 * KiB, kind: 'data' as const };
            throw boom;
          },
        },
        { chunkSize: 64 * KiB },
      ),
    ).rejects.toBe(boom);
    const buffers = new CopyBuffers({ size: 64 * KiB });
    await expect(
      runCopy(job, {
        chunkSize: 64 * KiB,
        buffers,
        onProgress: (p) => {
          if (p.done > 128 * KiB) throw new BlockError('ECANCELED', 'stop');
        },
      }),
    ).rejects.toMatchObject({ code: 'ECANCELED', message: 'stop' });
    expect(buffers.inFlight).toBe(0);
    await expect(runCopy({ ...job, extents: async function* () { yield { offset: 0, length: 0, kind: 'data' as const }; } }, { chunkSize: 512 })).rejects.toMatchObject({ code: 'EINVAL' });
    await close();
  });
});

describe('copy engine: coalesced reads', () => {
  /** 40 data extents of 16 KiB (a compressed image's block status), a source of known bytes, recorded calls. */
  function smallRunJob(failAt?: (o: number, n: number) => boolean) {
    const piece = 16 * KiB;
    const count = 40;
    const src = new Uint8Array(piece * count);
    for (let i = 0; i < src.length; i++) src[i] = (i * 31 + (i >> 14)) & 0xff;
    const reads: string[] = [];
    const writes: string[] = [];
    const dst = new Uint8Array(src.length);
    const job: CopyJob = {
      async *extents() {
        for (let i = 0; i < count; i++) yield { offset: i * piece, length: piece, kind: i === 20 ? 'zero' : 'data' } as CopyExtent;
      },
      async read(o, b) {
        reads.push(`${o}+${b.length}`);
        await new Promise((r) => setTimeout(r, 0));
        if (failAt?.(o, b.length)) throw new BlockError('EIO', `read failed at ${o}`);
        b.set(src.subarray(o, o + b.length));
      },
      async write(e, b) {
        writes.push(`${e.kind} ${e.offset}+${e.length}`);
        if (b) dst.set(b, e.offset);
      },
    };
    return { job, src, dst, reads, writes, piece };
  }

  it('adjacent small pieces are read together, up to the limit, and still written one by one', async () => {
    const plain = smallRunJob();
    await runCopy(plain.job, { chunkSize: 256 * KiB, readAhead: 2, writeDepth: 1 });
    const co = smallRunJob();
    const r = await runCopy(co.job, { chunkSize: 256 * KiB, readAhead: 2, writeDepth: 1, coalesceReads: 64 * KiB });
    expect(co.writes).toEqual(plain.writes);
    expect(Buffer.compare(co.dst.subarray(0, 20 * co.piece), co.src.subarray(0, 20 * co.piece))).toBe(0);
    expect(Buffer.compare(co.dst.subarray(21 * co.piece), co.src.subarray(21 * co.piece))).toBe(0);
    // 20 data pieces before the zero extent and 19 after it, four to a read: 5 + 5 reads.
    expect(co.reads).toHaveLength(10);
    expect(co.reads[0]).toBe(`0+${64 * KiB}`);
    expect(co.reads[5]).toBe(`${21 * co.piece}+${64 * KiB}`);
    expect(plain.reads).toHaveLength(39);
    expect(r.dataBytes).toBe(39 * co.piece);
  });

  it('a coalesced read that fails: its pieces are read alone, the error names the failing piece', async () => {
    const bad = 6 * 16 * KiB;
    const failing = (o: number, n: number) => o <= bad && bad < o + n;
    const co = smallRunJob(failing);
    const err = await runCopy(co.job, { chunkSize: 256 * KiB, readAhead: 2, writeDepth: 1, coalesceReads: 64 * KiB }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CopyError);
    expect((err as CopyError).op).toBe('read');
    expect((err as CopyError).offset).toBe(bad);
    const ignoring = smallRunJob(failing);
    const r = await runCopy(ignoring.job, { chunkSize: 256 * KiB, readAhead: 2, writeDepth: 1, coalesceReads: 64 * KiB, onReadError: 'ignore' });
    expect(r.errors.map((e) => e.offset)).toEqual([bad]);
    expect(ignoring.writes).not.toContain(`data ${bad}+${16 * KiB}`);
    expect(ignoring.writes.filter((w) => w.startsWith('data'))).toHaveLength(38);
    expect(Buffer.compare(ignoring.dst.subarray(bad + 16 * KiB, 20 * 16 * KiB), ignoring.src.subarray(bad + 16 * KiB, 20 * 16 * KiB))).toBe(0);
  });
});

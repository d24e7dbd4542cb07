/**
 * Shared by write-errors.test.ts (a fixed sample) and write-errors.fuzz.ts
 * (long runs). No write succeeds unless its data reached storage. A seeded workload of
 * writes, zero writes, discards, compressed writes and flushes (several in
 * flight) runs on images over the memory back end, which fails every write
 * after the Nth with ENOSPC or EIO, for cut points spread over the whole run.
 * Afterwards the file is reopened without faults and compared with a model:
 *
 * - if close succeeded, every sector that a successful request wrote holds
 *   that request's data (failed requests may leave old or new data);
 * - if close failed, at least what the last successful flush covered holds.
 *
 * qcow2 images must stay free of corruption (`qemu-img check`), whatever failed.
 */
import { expect } from 'vitest';
import { writeFileSync } from 'node:fs';
import { BlockBackend, createImage, ReqFlag, type MemoryFile } from '../../src/node.js';
import type { ErrorCode } from '../../src/core/errors.js';
import { memGraph, pattern, prng, qemuCheck, tempDir } from '../formats/qcow2/helpers.js';

/** Scratch directory for the qemu-img checks; the caller cleans it up. */
export const scratch = tempDir();
const t = scratch;

const SIZE = 2 << 20;
const SECTORS = SIZE / 512;

export interface Kind {
  name: string;
  format: 'raw' | 'qcow2';
  create: Record<string, unknown>;
  compressed: boolean;
  backing?: boolean;
}

export const KINDS: Kind[] = [
  { name: 'raw', format: 'raw', create: {}, compressed: false },
  { name: 'qcow2 64k', format: 'qcow2', create: {}, compressed: false },
  { name: 'qcow2 4k, refcount_bits=1', format: 'qcow2', create: { cluster_size: 4096, refcount_bits: 1 }, compressed: false },
  { name: 'qcow2 4k zstd, compressed writes', format: 'qcow2', create: { cluster_size: 4096, compression_type: 'zstd' }, compressed: true },
  { name: 'qcow2 4k lazy refcounts over a backing file', format: 'qcow2', create: { cluster_size: 4096, lazy_refcounts: true }, compressed: false, backing: true },
];

interface Model {
  data: Uint8Array;
  /** Sectors whose content a failed request made unknown (old or new). */
  unsure: Uint8Array;
  /** Sectors any request touched since the last successful flush. */
  touched: Uint8Array;
}

/** What a successful flush promises: the data now, except what was already unknown. */
const flushedModel = (m: Model): Model => ({ data: m.data.slice(), unsure: m.unsure.slice(), touched: new Uint8Array(SECTORS) });

/** Runs the workload, keeping the model of what succeeded. */
async function workload(bb: BlockBackend, kind: Kind, seed: number, model: Model, onFlushed: () => void): Promise<void> {
  const r = prng(seed);
  const mark = (off: number, len: number): void => void model.unsure.fill(1, Math.floor(off / 512), Math.ceil((off + len) / 512));
  const touch = (off: number, len: number): void => void model.touched.fill(1, Math.floor(off / 512), Math.ceil((off + len) / 512));
  const ops: Array<Promise<void>> = [];
  /** Ranges of the requests in flight. */
  const inFlight: Array<[number, number]> = [];
  const settle = async () => {
    await Promise.all(ops);
    ops.length = 0;
    inFlight.length = 0;
  };
  for (let i = 0; i < 90; i++) {
    const k = r();
    const kindOfOp = k < 0.45 ? 'write' : k < 0.6 ? 'zero' : k < 0.7 ? 'discard' : k < 0.8 && kind.compressed ? 'compressed' : 'flush';
    let len = 512 * (1 + Math.floor(r() * 40));
    let off = Math.floor((r() * (SIZE - len)) / 512) * 512;
    if (kindOfOp === 'flush') {
      await settle();
      try {
        await bb.flush();
        onFlushed();
        model.touched.fill(0);
      } catch {
        // A failed flush promises nothing.
      }
      continue;
    }
    if (kindOfOp === 'compressed') {
      len = 4096;
      off = Math.floor(off / len) * len;
    }
    // Requests in flight never overlap, so the order of their completions does not matter.
    if (ops.length >= 4 || inFlight.some(([o, l]) => off < o + l && o < off + len)) await settle();
    inFlight.push([off, len]);
    touch(off, len);
    if (kindOfOp === 'write') {
      const d = pattern(len, seed * 1000 + i);
      ops.push(bb.write(off, d).then(() => void model.data.set(d, off), () => mark(off, len)));
    } else if (kindOfOp === 'zero') {
      const flags = r() < 0.5 ? ReqFlag.MAY_UNMAP : 0;
      ops.push(bb.writeZeroes(off, len, flags).then(() => void model.data.fill(0, off, off + len), () => mark(off, len)));
    } else if (kindOfOp === 'discard') {
      // Discarded ranges read as zeros or keep their data: unknown either way.
      ops.push(bb.discard(off, len).then(() => mark(off, len), () => mark(off, len)));
    } else {
      const d = new Uint8Array(len).map((_, j) => (j % 11 === 0 ? i : 97 + (j % 5)));
      ops.push(bb.writeCompressed(off, d).then(() => void model.data.set(d, off), () => mark(off, len)));
    }
  }
  await settle();
}

/** Sectors where `got` differs from what `want` requires (unsure ones skipped). */
function lostSectors(got: Uint8Array, want: Model): number[] {
  const bad: number[] = [];
  for (let s = 0; s < SECTORS; s++) {
    if (want.unsure[s]) continue;
    const a = got.subarray(s * 512, s * 512 + 512);
    const b = want.data.subarray(s * 512, s * 512 + 512);
    for (let i = 0; i < 512; i++) {
      if (a[i] !== b[i]) {
        bad.push(s);
        break;
      }
    }
  }
  return bad;
}

export async function runKind(kind: Kind, code: ErrorCode, points: number, seed = 99): Promise<{ cuts: number; closeFailed: number }> {
  const { graph, storage } = memGraph();
  const base = pattern(SIZE, 5);
  if (kind.backing) storage.create('base', 0).writeRaw(0, base);
  const opts = kind.backing ? { ...kind.create, backing_file: 'base', backing_fmt: 'raw' } : kind.create;
  await createImage(graph, kind.format, 'memory:img', { size: SIZE, ...opts });
  const pristine = storage.get('img')!.clone();
  if (kind.backing) writeFileSync(t.path('base'), base);

  const fresh = (): Model => ({ data: kind.backing ? base.slice() : new Uint8Array(SIZE), unsure: new Uint8Array(SECTORS), touched: new Uint8Array(SECTORS) });
  const run = async (failAfter: number) => {
    const file: MemoryFile = pristine.clone();
    storage.files.set('img', file);
    file.faults = { failAfterWrites: failAfter, failCode: code };
    const model = fresh();
    let flushed = fresh();
    const bb = await BlockBackend.open(graph, { driver: kind.format, file: { filename: 'memory:img' }, discard: 'unmap' });
    await workload(bb, kind, seed, model, () => (flushed = flushedModel(model)));
    let closed = true;
    try {
      await bb.close();
    } catch (e) {
      closed = false;
      expect((e as { code?: string }).code).toBe(code);
    }
    return { file, model, flushed, closed, writes: file.writeCount };
  };

  const clean = await run(Number.MAX_SAFE_INTEGER);
  expect(clean.closed).toBe(true);
  const total = clean.writes;
  expect(total).toBeGreaterThan(50);
  let closeFailed = 0;
  let cuts = 0;
  for (let i = 0; i < points; i++) {
    const cut = Math.floor((i * total) / points);
    const res = await run(cut);
    res.file.faults = {};
    if (!res.closed) closeFailed++;
    storage.files.set('after', res.file);
    const reader = await BlockBackend.open(graph, { driver: kind.format, file: { filename: 'memory:after' } }, { readOnly: true });
    const got = await reader.read(0, SIZE);
    await reader.close();
    // A failed close promises only what the last flush covered: sectors touched since are unknown.
    const want = res.closed ? res.model : { ...res.flushed, unsure: res.flushed.unsure.map((u, s) => u | res.model.touched[s]!) };
    const lost = lostSectors(got, want);
    expect(lost, `${kind.name}, ${code} after write ${cut}: sectors ${lost.slice(0, 8).join(', ')} lost (close ${res.closed ? 'succeeded' : 'failed'})`).toEqual([]);
    if (kind.format === 'qcow2') {
      if (kind.create.lazy_refcounts) {
        // With lazy refcounts a failure leaves the image dirty on purpose; opening it
        // read-write repairs the refcounts (as QEMU does), and then it must be clean.
        const repair = await BlockBackend.open(graph, { driver: 'qcow2', file: { filename: 'memory:after' } });
        await repair.close();
      }
      const path = t.path(`img-${cuts}`);
      writeFileSync(path, res.file.toBytes());
      const check = qemuCheck(path);
      expect(check.corruptions ?? 0, `${kind.name}, ${code} after write ${cut}: qemu-img check`).toBe(0);
      expect(check['check-errors'], `${kind.name}, ${code} after write ${cut}: qemu-img check`).toBe(0);
    }
    cuts++;
  }
  return { cuts, closeFailed };
}


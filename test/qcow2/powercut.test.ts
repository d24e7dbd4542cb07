/**
 * Power cut: a workload of allocating writes, copy-on-write over a backing
 * file, zero writes, discards, compressed writes and flushes runs against a
 * memory back end that stops persisting after write N, for every N (or 1000
 * evenly spread cut points when there are more). Every surviving image is
 * free of corruptions for qemu-img check, and data flushed before the cut
 * (and not rewritten since) reads back intact.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { writeFileSync } from 'node:fs';
import { BlockBackend, createImage, ReqFlag, type MemoryFile } from '../../src/node.js';
import { memGraph, prng, pattern, tempDir, qemuCheck } from './helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());

const SIZE = 4 << 20;
const CS = 4096;
const COMPRESSED_START = 3 << 20;

interface Model {
  data: Uint8Array;
  /** 512-byte sectors touched since the last durable flush. */
  touched: Uint8Array;
}

async function workload(bb: BlockBackend, file: MemoryFile, seed: number, model: Model, onDurable: () => void, cut: number) {
  const r = prng(seed);
  let nextCompressed = COMPRESSED_START;
  const touch = (off: number, len: number) => model.touched.fill(1, Math.floor(off / 512), Math.ceil((off + len) / 512));
  for (let i = 0; i < 400; i++) {
    const k = r();
    const off = Math.floor((r() * (COMPRESSED_START - 3 * CS)) / 512) * 512;
    const len = 512 * (1 + Math.floor(r() * 24));
    if (k < 0.45) {
      const d = pattern(len, seed * 1000 + i);
      await bb.write(off, d);
      model.data.set(d, off);
      touch(off, len);
    } else if (k < 0.6) {
      await bb.writeZeroes(off, len, r() < 0.5 ? ReqFlag.MAY_UNMAP : 0);
      model.data.fill(0, off, off + len);
      touch(off, len);
    } else if (k < 0.7) {
      const s = Math.ceil(off / CS) * CS;
      const e = Math.floor((off + len) / CS) * CS;
      await bb.discard(off, len);
      if (e > s) model.data.fill(0, s, e);
      touch(off, len);
    } else if (k < 0.8 && nextCompressed < SIZE) {
      const d = new Uint8Array(CS).map((_, j) => (j % 7 === 0 ? i : 65 + (j % 13)));
      await bb.writeCompressed(nextCompressed, d);
      model.data.set(d, nextCompressed);
      touch(nextCompressed, CS);
      nextCompressed += CS;
    } else {
      await bb.flush();
      if (file.writeCount <= cut) {
        model.touched.fill(0);
        onDurable();
      }
    }
  }
}

describe('qcow2 power cut', () => {
  it('leaves a consistent image at every cut point', async () => {
    const { graph, storage } = memGraph();
    const baseData = pattern(2 << 20, 77);
    storage.create('base', 0).writeRaw(0, baseData);
    await createImage(graph, 'qcow2', 'memory:img', { size: SIZE, cluster_size: CS, backing_file: 'base', backing_fmt: 'raw' });
    const pristine = storage.get('img')!.clone();
    writeFileSync(t.path('base'), baseData);

    const initialModel = () => {
      const data = new Uint8Array(SIZE);
      data.set(baseData);
      return { data, touched: new Uint8Array(SIZE / 512) };
    };
    const run = async (cut: number) => {
      const file = pristine.clone();
      storage.files.set('img', file);
      file.faults = { dropAfterWrites: cut };
      const model = initialModel();
      let durable = initialModel();
      const bb = await BlockBackend.open(graph, { driver: 'qcow2', file: { filename: 'memory:img' }, discard: 'unmap' });
      const startCount = file.writeCount;
      void startCount;
      await workload(bb, file, 42, model, () => {
        durable = { data: model.data.slice(), touched: new Uint8Array(SIZE / 512) };
      }, cut);
      const total = file.writeCount;
      await bb.close();
      // What survived, and which sectors were rewritten after the last durable flush.
      return { file, total, durable, touchedAfter: model.touched };
    };

    const full = await run(Number.MAX_SAFE_INTEGER);
    const W = full.total;
    expect(W).toBeGreaterThan(500);
    const points: number[] = [];
    const count = Math.min(W, 1000);
    for (let i = 0; i < count; i++) points.push(Math.floor((i * W) / count));
    let checked = 0;
    for (const cut of points) {
      const res = await run(cut);
      const img = t.path('cut.qcow2');
      res.file.faults = {};
      writeFileSync(img, res.file.toBytes());
      const c = qemuCheck(img);
      expect({ cut, corruptions: c.corruptions ?? 0, errors: c['check-errors'] }).toEqual({ cut, corruptions: 0, errors: 0 });
      // Flushed data intact: read the survivor (read-only) and compare untouched sectors.
      storage.files.set('cut', res.file);
      const bb = await BlockBackend.open(graph, { driver: 'qcow2', file: { filename: 'memory:cut' } }, { readOnly: true });
      const got = await bb.read(0, SIZE);
      await bb.close();
      for (let s = 0; s < SIZE / 512; s++) {
        if (res.touchedAfter[s]) continue;
        const a = got.subarray(s * 512, s * 512 + 512);
        const b = res.durable.data.subarray(s * 512, s * 512 + 512);
        let same = true;
        for (let j = 0; j < 512; j++) if (a[j] !== b[j]) same = false;
        if (!same) expect({ cut, sector: s }).toBe('intact');
      }
      checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(500);
  }, 300_000);
});

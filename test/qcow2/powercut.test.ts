/**
 * Power cut: a workload of allocating writes, copy-on-write over a backing
 * file, zero writes, discards, compressed writes and flushes runs against a
 * memory back end that stops persisting after write N, for every N (or 1000
 * evenly spread cut points when there are more). Every surviving image is
 * free of corruptions for qemu-img check, and data flushed before the cut
 * (and not rewritten since) reads back intact.
 *
 * The lazy_refcounts=on variant leaves the image dirty on purpose: refcounts
 * are then allowed to be stale after a cut (the dirty bit says so), and what
 * QEMU guarantees is that a repair makes the image consistent: `qemu-img
 * check -r all` leaves no corruptions and no leaks, and so does DiskWorker's
 * own repair on a read-write open (which QEMU also does on open).
 */
import { describe, it, expect, afterAll } from 'vitest';
import { writeFileSync } from 'node:fs';
import { BlockBackend, createImage, ReqFlag, type MemoryFile, type MemoryStorage, type BlockGraph } from '../../src/node.js';
import { memGraph, prng, pattern, tempDir, qemuCheck, qemuImgTry, type CheckJson } from './helpers.js';

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

/** What one cut left behind: the image bytes, and the model of what must survive. */
interface Survivor {
  file: MemoryFile;
  durable: Model;
  touchedAfter: Uint8Array;
}

/**
 * Runs the workload against a fresh copy of an image created with
 * `createOptions`, cut after each of up to `maxPoints` write counts, and hands
 * every survivor to `verify`. Returns the number of cut points checked.
 */
async function cutEverywhere(
  createOptions: Record<string, unknown>,
  maxPoints: number,
  verify: (cut: number, s: Survivor, graph: BlockGraph, storage: MemoryStorage) => Promise<void>,
): Promise<number> {
  const { graph, storage } = memGraph();
  const baseData = pattern(2 << 20, 77);
  storage.create('base', 0).writeRaw(0, baseData);
  await createImage(graph, 'qcow2', 'memory:img', { size: SIZE, cluster_size: CS, backing_file: 'base', backing_fmt: 'raw', ...createOptions });
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
  const count = Math.min(W, maxPoints);
  let checked = 0;
  for (let i = 0; i < count; i++) {
    const cut = Math.floor((i * W) / count);
    const res = await run(cut);
    res.file.faults = {};
    await verify(cut, res, graph, storage);
    checked++;
  }
  return checked;
}

/** Opens the survivor (read-write repairs a dirty image in place), reads it all and compares the sectors that must have survived. */
async function expectFlushedDataIntact(cut: number, s: Survivor, graph: BlockGraph, storage: MemoryStorage, readOnly: boolean) {
  storage.files.set('cut', s.file);
  const bb = await BlockBackend.open(graph, { driver: 'qcow2', file: { filename: 'memory:cut' } }, { readOnly });
  const got = await bb.read(0, SIZE);
  await bb.close();
  for (let sec = 0; sec < SIZE / 512; sec++) {
    if (s.touchedAfter[sec]) continue;
    const a = got.subarray(sec * 512, sec * 512 + 512);
    const b = s.durable.data.subarray(sec * 512, sec * 512 + 512);
    let same = true;
    for (let j = 0; j < 512; j++) if (a[j] !== b[j]) same = false;
    if (!same) expect({ cut, sector: sec }).toBe('intact');
  }
}

/** `qemu-img check -r all`: the counts after QEMU's repair (it checks again after repairing). */
function qemuRepair(file: string): CheckJson & { status: number } {
  const r = qemuImgTry('check', '-r', 'all', '--output=json', file);
  try {
    return { ...(JSON.parse(r.out.slice(r.out.indexOf('{'), r.out.lastIndexOf('}') + 1)) as CheckJson), status: r.status };
  } catch {
    throw new Error(`qemu-img check -r all failed: ${r.out}`);
  }
}

describe('qcow2 power cut', () => {
  it('leaves a consistent image at every cut point', async () => {
    const checked = await cutEverywhere({}, 1000, async (cut, s, graph, storage) => {
      const img = t.path('cut.qcow2');
      writeFileSync(img, s.file.toBytes());
      const c = qemuCheck(img);
      expect({ cut, corruptions: c.corruptions ?? 0, errors: c['check-errors'] }).toEqual({ cut, corruptions: 0, errors: 0 });
      // Flushed data intact: read the survivor (read-only).
      await expectFlushedDataIntact(cut, s, graph, storage, true);
    });
    expect(checked).toBeGreaterThanOrEqual(500);
  }, 300_000);

  it('with lazy refcounts (dirty on purpose), every survivor is repaired clean by qemu-img check -r all and by a read-write open', async () => {
    let sawDirty = 0;
    const checked = await cutEverywhere({ lazy_refcounts: true }, 250, async (cut, s, graph, storage) => {
      const bytes = s.file.toBytes();
      // Incompatible feature bit 0 (dirty) at header offset 72..79.
      if (bytes[79]! & 1) sawDirty++;
      // What QEMU guarantees: its repair leaves no corruptions and no leaks.
      const forQemu = t.path('lazy-qemu.qcow2');
      writeFileSync(forQemu, bytes);
      const q = qemuRepair(forQemu);
      expect({ cut, status: q.status, corruptions: q.corruptions ?? 0, leaks: q.leaks ?? 0, errors: q['check-errors'] }).toEqual({
        cut,
        status: 0,
        corruptions: 0,
        leaks: 0,
        errors: 0,
      });
      // DiskWorker's repair: open read-write (rebuilds the refcounts of a dirty image), read, close.
      await expectFlushedDataIntact(cut, s, graph, storage, false);
      const forUs = t.path('lazy-ours.qcow2');
      writeFileSync(forUs, s.file.toBytes());
      const c = qemuCheck(forUs);
      expect({ cut, corruptions: c.corruptions ?? 0, leaks: c.leaks ?? 0, errors: c['check-errors'] }).toEqual({ cut, corruptions: 0, leaks: 0, errors: 0 });
    });
    expect(checked).toBeGreaterThanOrEqual(200);
    // The variant is only meaningful if cuts really left dirty images behind.
    expect(sawDirty).toBeGreaterThan(checked / 2);
  }, 120_000);
});

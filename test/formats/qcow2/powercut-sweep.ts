/**
 * Power cut on the memory back end (shared by powercut.test.ts, a fixed-seed
 * sample, and powercut.fuzz.ts, the sweeps): the crash workload
 * (crash-workload.ts) runs against a fresh copy of an image, with the back end
 * dropping every write after write N. Each survivor must be free of
 * corruptions for qemu-img check, and the data of every request that was
 * followed by a completed flush (and not touched by a later request that had
 * started by the cut) must read back intact.
 *
 * With lazy refcounts the image is dirty on purpose: stale refcounts are then
 * allowed after a cut, and what QEMU guarantees is that a repair makes the
 * image consistent: `qemu-img check -r all` leaves no corruptions and no
 * leaks, and so does DiskWorker's own repair on a read-write open.
 */
import { expect } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlockBackend, createImage, type BlockGraph, type MemoryFile, type MemoryStorage } from '../../../src/node.js';
import { memGraph, pattern, qemuCheck, qemuImgTry, type CheckJson } from './helpers.js';
import { crashOps, modelAt, runCrashOps, type CrashShape } from './crash-workload.js';
import { prng } from '../../prng.js';

/** An image and workload shape to cut. */
export interface CutVariant extends CrashShape {
  name: string;
  /** Creation options besides size, cluster size and backing file. */
  create: Record<string, unknown>;
  /** Requests in flight at once. */
  inFlight: number;
  /** Dirty on purpose: verify by repair instead. */
  lazy?: boolean;
}

export const CUT_VARIANTS: CutVariant[] = [
  { name: '4k clusters over a backing file, zlib, one request at a time', size: 4 << 20, cs: 4096, ops: 220, base: 2 << 20, compressed: true, create: {}, inFlight: 1 },
  { name: '64k clusters, zstd, 4 requests in flight', size: 8 << 20, cs: 65536, ops: 160, base: 0, compressed: true, create: { compression_type: 'zstd' }, inFlight: 4 },
  { name: '64k clusters over a backing file, zlib, 4 requests in flight', size: 8 << 20, cs: 65536, ops: 160, base: 3 << 20, compressed: true, create: {}, inFlight: 4 },
  { name: '4k clusters, zstd, 3 requests in flight, no compressed writes', size: 4 << 20, cs: 4096, ops: 200, base: 0, compressed: false, create: { compression_type: 'zstd' }, inFlight: 3 },
  { name: 'lazy refcounts (dirty on purpose), 4k clusters, zstd, 4 requests in flight', size: 4 << 20, cs: 4096, ops: 200, base: 1 << 20, compressed: true, create: { lazy_refcounts: true, compression_type: 'zstd' }, inFlight: 4, lazy: true },
];

/** What one cut left behind. */
interface Survivor {
  cut: number;
  file: MemoryFile;
  /** Expected content of the sectors that must have survived. */
  data: Uint8Array;
  /** Sectors a request after the last completed flush may have changed. */
  unstable: Uint8Array;
}

/** A variant prepared for cutting: the pristine image and the run at a cut. */
export class CutRig {
  private graph!: BlockGraph;
  private storage!: MemoryStorage;
  private pristine!: MemoryFile;
  private initial!: Uint8Array;
  readonly ops;
  /** Writes of the uncut run. */
  total = 0;

  constructor(
    readonly v: CutVariant,
    readonly seed: number,
    /** A directory of its own, for the files qemu-img reads. */
    private readonly dir: string,
  ) {
    this.ops = crashOps(v, seed);
    this.scratch = join(dir, 'cut.qcow2');
  }

  private readonly scratch: string;

  async prepare(): Promise<void> {
    const { graph, storage } = memGraph();
    this.graph = graph;
    this.storage = storage;
    const v = this.v;
    const opts: Record<string, string | number | boolean> = { size: v.size, cluster_size: v.cs, ...v.create };
    this.initial = new Uint8Array(v.size);
    if (v.base > 0) {
      const baseData = pattern(v.base, this.seed);
      storage.create('base', 0).writeRaw(0, baseData);
      // The name resolves in the memory storage for us and next to the scratch image for qemu-img.
      writeFileSync(join(this.dir, 'base'), baseData);
      this.initial.set(baseData);
      Object.assign(opts, { backing_file: 'base', backing_fmt: 'raw' });
    }
    await createImage(graph, 'qcow2', 'memory:img', opts);
    this.pristine = storage.get('img')!.clone();
    this.total = (await this.run(Number.MAX_SAFE_INTEGER)).file.writeCount;
  }

  /** Runs the workload with writes after `cut` dropped. */
  async run(cut: number): Promise<Survivor> {
    const file = this.pristine.clone();
    this.storage.files.set('img', file);
    file.faults = { dropAfterWrites: cut };
    const bb = await BlockBackend.open(this.graph, { driver: 'qcow2', file: { filename: 'memory:img' }, discard: 'unmap' });
    let durable = 0;
    let started = 0;
    try {
      await runCrashOps(bb, this.ops, this.v.cs, this.v.inFlight, {
        submitted: (i) => {
          if (file.writeCount <= cut) started = i + 1;
        },
        flushed: (n) => {
          if (file.writeCount <= cut) durable = n;
        },
      });
      await bb.close();
    } catch (e) {
      // After the cut the image under the node is stale: failures are allowed then.
      if (file.writeCount <= cut) throw e;
      await bb.close().catch(() => undefined);
    }
    file.faults = {};
    const { data, unstable } = modelAt(this.ops.slice(0, started), durable, this.initial);
    return { cut, file, data, unstable };
  }

  /** Cuts at `cut` and checks the survivor; returns whether it was left dirty (lazy refcounts). */
  async verifyCut(cut: number): Promise<boolean> {
    const s = await this.run(cut);
    const bytes = s.file.toBytes();
    const dirty = CutRig.dirty(s.file);
    if (!this.v.lazy) {
      writeFileSync(this.scratch, bytes);
      const c = qemuCheck(this.scratch);
      expect({ seed: this.seed, cut, corruptions: c.corruptions ?? 0, errors: c['check-errors'] }).toEqual({ seed: this.seed, cut, corruptions: 0, errors: 0 });
      await this.expectIntact(s, true);
      return dirty;
    }
    // QEMU's repair leaves no corruptions and no leaks.
    writeFileSync(this.scratch, bytes);
    const q = qemuRepair(this.scratch);
    expect({ seed: this.seed, cut, status: q.status, corruptions: q.corruptions ?? 0, leaks: q.leaks ?? 0, errors: q['check-errors'] }).toEqual({
      seed: this.seed,
      cut,
      status: 0,
      corruptions: 0,
      leaks: 0,
      errors: 0,
    });
    // So does ours: a read-write open repairs a dirty image.
    await this.expectIntact(s, false);
    writeFileSync(this.scratch, s.file.toBytes());
    const c = qemuCheck(this.scratch);
    expect({ seed: this.seed, cut, corruptions: c.corruptions ?? 0, leaks: c.leaks ?? 0, errors: c['check-errors'] }).toEqual({ seed: this.seed, cut, corruptions: 0, leaks: 0, errors: 0 });
    return dirty;
  }

  /** Whether the survivor's header has the dirty bit (lazy refcounts). */
  static dirty(file: MemoryFile): boolean {
    const b = new Uint8Array(8);
    file.read(72, b);
    return (b[7]! & 1) !== 0;
  }

  /** Opens the survivor, reads it all and compares the sectors that must have survived. */
  private async expectIntact(s: Survivor, readOnly: boolean): Promise<void> {
    this.storage.files.set('cut', s.file);
    const bb = await BlockBackend.open(this.graph, { driver: 'qcow2', file: { filename: 'memory:cut' } }, { readOnly });
    const got = await bb.read(0, this.v.size);
    await bb.close();
    for (let sec = 0; sec < this.v.size / 512; sec++) {
      if (s.unstable[sec]) continue;
      const a = got.subarray(sec * 512, sec * 512 + 512);
      const b = s.data.subarray(sec * 512, sec * 512 + 512);
      if (Buffer.compare(a, b) !== 0) expect({ seed: this.seed, cut: s.cut, sector: sec }).toBe('intact');
    }
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

/** `count` cut points of a run of `total` writes: random ones from `seed`, or evenly spread when `even`. */
export function cutPoints(total: number, count: number, seed: number, even = false): number[] {
  const n = Math.min(count, total + 1);
  if (even) return Array.from({ length: n }, (_, i) => Math.floor((i * total) / Math.max(1, n - 1)));
  const r = prng(seed);
  return Array.from({ length: n }, () => Math.floor(r() * (total + 1)));
}

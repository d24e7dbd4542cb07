/**
 * Power cut during persistent-bitmap work on qcow2 (shared by
 * bitmap-powercut.test.ts, a fixed sample of cut points, and
 * bitmap-powercut.fuzz.ts, every cut point): an image that already stores
 * bitmaps is opened read-write (which marks them in use), a scenario runs
 * (add a persistent bitmap, remove one, or only write) and the disk closes
 * (which stores the bitmaps: data clusters, tables, a new directory, then
 * the header switch, then frees). A removal leaves the image at once, as in
 * QEMU: a directory without it (the others in use), the header, the frees. The memory back end drops every write
 * after write N. Each survivor must be, for QEMU:
 * - free of corruptions and check errors (`qemu-img check`; leaks allowed,
 *   as QEMU leaves them when it is cut after the header switch);
 * - either the old directory, with every bitmap as it was before the open
 *   (the in-use mark not yet durable) or every one flagged in-use (QEMU then
 *   treats them as inconsistent), or the removal's directory (the others in
 *   use), or the new directory with every bitmap as the uncut run stored it;
 * and our open must see the same (names, in-use as inconsistent, extents),
 * with qemu-nbd exporting the same extents for every valid bitmap.
 */
import { expect } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlockBackend, createImage, type BlockGraph, type MemoryFile, type MemoryStorage } from '../../../src/node.js';
import { addDirtyBitmap, lookupDirtyBitmap, removeDirtyBitmapWithStorage } from '../../../src/core/dirty-bitmap.js';
import type { Qcow2Image } from '../../../src/formats/qcow2/qcow2.js';
import { memGraph, prng, qemuCheck } from './helpers.js';
import { infoBitmaps, qemuDirtyExtents } from './bitmap-persist.js';

/** What the session does between the open and the close. */
export type BitmapScenario = 'store' | 'add' | 'remove' | 'add-remove';

export const BITMAP_SCENARIOS: BitmapScenario[] = ['store', 'add', 'remove', 'add-remove'];

/** Image shapes the scenarios run on. */
export interface BitmapCutShape {
  name: string;
  size: number;
  cs: number;
}

export const BITMAP_CUT_SHAPES: BitmapCutShape[] = [
  // 512-byte granules over 64 MiB: 16 KiB of bits, a table of four clusters.
  { name: '4k clusters, 64 MiB', size: 64 << 20, cs: 4096 },
  { name: '64k clusters, 32 MiB', size: 32 << 20, cs: 65536 },
];

/** One bitmap as seen in an image: its in-use flag and extents (undefined when in use). */
interface SeenBitmap {
  inUse: boolean;
  extents?: Array<[number, number]>;
}
type Seen = Map<string, SeenBitmap>;

function sameSeen(a: Seen, b: Seen): boolean {
  return JSON.stringify([...a]) === JSON.stringify([...b]);
}

/** A scenario on a shape, prepared for cutting. */
export class BitmapCutRig {
  private graph!: BlockGraph;
  private storage!: MemoryStorage;
  private pristine!: MemoryFile;
  /** Bitmaps before the session and after the uncut one. */
  before!: Seen;
  after!: Seen;
  private oldDir = 0;
  private newDir = 0;
  /** Writes of the uncut session. */
  total = 0;
  private readonly scratch: string;

  constructor(
    readonly shape: BitmapCutShape,
    readonly scenario: BitmapScenario,
    readonly seed: number,
    dir: string,
  ) {
    this.scratch = join(dir, 'cut.qcow2');
  }

  private async open(name: string, readOnly: boolean): Promise<BlockBackend> {
    return BlockBackend.open(this.graph, { driver: 'qcow2', file: { filename: `memory:${name}` }, discard: 'unmap' }, { readOnly });
  }

  /** Seeded guest writes (also zero writes and discards). */
  private async writes(bb: BlockBackend, seed: number, n: number): Promise<void> {
    const r = prng(seed);
    const { size, cs } = this.shape;
    for (let i = 0; i < n; i++) {
      const off = Math.floor(r() * (size - 4 * cs));
      const len = 1 + Math.floor(r() * 3 * cs);
      const k = r();
      if (k < 0.7) await bb.write(off, new Uint8Array(len).fill(1 + (i % 250)));
      else if (k < 0.9) await bb.writeZeroes(off, len);
      else await bb.discard(off, len);
    }
  }

  /** Creates the image with stored bitmaps a (512 B granules), b (64 KiB, disabled) and c, and runs the session uncut. */
  async prepare(): Promise<void> {
    const { graph, storage } = memGraph();
    this.graph = graph;
    this.storage = storage;
    await createImage(graph, 'qcow2', 'memory:img', { size: this.shape.size, cluster_size: this.shape.cs });
    const bb = await this.open('img', false);
    addDirtyBitmap(bb.node, 'a', { granularity: 512, persistent: true });
    addDirtyBitmap(bb.node, 'b', { granularity: 65536, persistent: true });
    addDirtyBitmap(bb.node, 'c', { granularity: 4096, persistent: true });
    await this.writes(bb, this.seed, 12);
    lookupDirtyBitmap(bb.node, 'b').clear();
    await bb.writeZeroes(0, this.shape.cs);
    lookupDirtyBitmap(bb.node, 'b').disabled = true;
    await bb.close();
    this.pristine = storage.get('img')!.clone();
    const p = await this.survey(this.pristine);
    this.before = p.seen;
    this.oldDir = p.dir;
    expect([...this.before.keys()]).toEqual(['a', 'b', 'c']);
    const done = await this.session(Number.MAX_SAFE_INTEGER);
    this.total = done.writeCount;
    const s = await this.survey(done);
    this.after = s.seen;
    this.newDir = s.dir;
    expect(s.dir).not.toBe(this.oldDir);
    expect(sameSeen(this.before, this.after)).toBe(false);
  }

  /** The session on a copy of the pristine image with writes after `cut` dropped. */
  private async session(cut: number): Promise<MemoryFile> {
    const file = this.pristine.clone();
    this.storage.files.set('img', file);
    file.faults = { dropAfterWrites: cut };
    try {
      const bb = await this.open('img', false);
      try {
        if (this.scenario === 'add' || this.scenario === 'add-remove') addDirtyBitmap(bb.node, 'new', { granularity: 1024, persistent: true });
        if (this.scenario === 'remove' || this.scenario === 'add-remove') await removeDirtyBitmapWithStorage(bb.node, 'a');
        await this.writes(bb, this.seed + 1, 8);
      } finally {
        await bb.close();
      }
    } catch (e) {
      // After the cut the node reads stale metadata: failures are allowed then.
      if (file.writeCount <= cut) throw e;
    }
    file.faults = {};
    return file;
  }

  /** Our view of an image: each bitmap's in-use state and extents, and the directory offset. */
  private async survey(file: MemoryFile): Promise<{ seen: Seen; dir: number }> {
    this.storage.files.set('survey', file);
    const bb = await this.open('survey', true);
    const seen: Seen = new Map();
    for (const b of bb.node.dirtyBitmaps) {
      seen.set(b.name, b.inconsistent ? { inUse: true } : { inUse: false, extents: [...b.dirtyExtents()] });
    }
    const dir = (bb.node.instance as unknown as Qcow2Image).header.bitmaps?.directoryOffset ?? 0;
    await bb.close();
    return { seen, dir };
  }

  /**
   * Cuts at `cut` and checks the survivor; `nbd` also compares qemu-nbd's
   * extents. Returns which state it found.
   */
  async verifyCut(cut: number, nbd: boolean): Promise<'old' | 'old in use' | 'removed, in use' | 'new'> {
    const file = await this.session(cut);
    writeFileSync(this.scratch, file.toBytes());
    const where = { scenario: this.scenario, shape: this.shape.name, seed: this.seed, cut };
    const c = qemuCheck(this.scratch);
    expect({ ...where, corruptions: c.corruptions ?? 0, errors: c['check-errors'] }).toEqual({ ...where, corruptions: 0, errors: 0 });
    const { seen, dir } = await this.survey(file);
    // QEMU lists the same bitmaps, with in-use where we found them inconsistent.
    const info = infoBitmaps(this.scratch);
    expect({ ...where, bitmaps: info.map((b) => [b.name, b.flags.includes('in-use')]) }).toEqual({ ...where, bitmaps: [...seen].map(([n, s]) => [n, s.inUse]) });
    let state: 'old' | 'old in use' | 'removed, in use' | 'new';
    if (dir !== this.oldDir && dir !== this.newDir) {
      // Between the removal's header switch and the close: 'a' is gone, the others in use.
      state = 'removed, in use';
      const want = new Map([...this.before.keys()].filter((n) => n !== 'a').map((n) => [n, { inUse: true }]));
      expect(this.scenario.includes('remove'), `${this.scenario}: a third directory at cut ${cut}`).toBe(true);
      expect({ ...where, state, seen: [...seen] }).toEqual({ ...where, state, seen: [...want] });
    } else if (dir === this.oldDir) {
      const allInUse = [...seen.values()].every((s) => s.inUse);
      state = allInUse ? 'old in use' : 'old';
      const want = allInUse ? new Map([...this.before.keys()].map((n) => [n, { inUse: true }])) : this.before;
      expect({ ...where, state, seen: [...seen] }).toEqual({ ...where, state, seen: [...want] });
    } else {
      state = 'new';
      expect({ ...where, state, seen: [...seen] }).toEqual({ ...where, state, seen: [...this.after] });
    }
    if (nbd) {
      for (const [name, s] of seen) {
        if (s.inUse) continue;
        const theirs = await qemuDirtyExtents(this.scratch, name, `${this.scratch}.sock`);
        expect({ ...where, name, extents: theirs }).toEqual({ ...where, name, extents: s.extents });
      }
    }
    return state;
  }
}

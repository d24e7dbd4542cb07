/**
 * Power cut during persistent-bitmap work on qcow2 (shared by
 * bitmap-powercut.test.ts, a fixed sample of cut points, and
 * bitmap-powercut.fuzz.ts, every cut point): an image that already stores
 * bitmaps is opened read-write (which marks them in use), a scenario runs
 * (add a persistent bitmap, remove one, or only write) and the disk closes
 * (which stores the bitmaps: data clusters, tables, a new directory, then
 * the header switch, then frees). A removal leaves the image at once, as in
 * QEMU: a directory without it (the others in use), the header, the frees.
 * A checkpoint (checkpointDirtyBitmaps) stores them mid-session, not in use,
 * and the next write marks them in use again before it lands. The memory back end drops every write
 * after write N. Each survivor must be, for QEMU:
 * - free of corruptions and check errors (`qemu-img check`; leaks allowed,
 *   as QEMU leaves them when it is cut after the header switch);
 * - either the old directory, with every bitmap as it was before the open
 *   (the in-use mark not yet durable) or every one flagged in-use (QEMU then
 *   treats them as inconsistent), or the removal's directory (the others in
 *   use), or the checkpoint's bitmaps (valid, as they were at the checkpoint,
 *   or all in use), or every bitmap as the uncut run stored it at close;
 * and our open must see the same (names, in-use as inconsistent, extents),
 * with qemu-nbd exporting the same extents for every valid bitmap.
 */
import { expect } from 'vitest';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlockBackend, createImage, type BlockGraph, type MemoryFile, type MemoryStorage } from '../../../src/node.js';
import { addDirtyBitmap, checkpointDirtyBitmaps, lookupDirtyBitmap, removeDirtyBitmapWithStorage } from '../../../src/core/dirty-bitmap.js';
import { memGraph, prng, qemuCheck } from './helpers.js';
import { infoBitmaps, qemuDirtyExtents } from './bitmap-persist.js';

/** What the session does between the open and the close. */
export type BitmapScenario = 'store' | 'add' | 'remove' | 'add-remove' | 'checkpoint';

export const BITMAP_SCENARIOS: BitmapScenario[] = ['store', 'add', 'remove', 'add-remove', 'checkpoint'];

/** What a survivor's bitmaps were found to be. */
export type CutState = 'old' | 'old in use' | 'removed, in use' | 'checkpoint' | 'new';

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
  /** The bitmaps at the checkpoint, and the writes done when it ended (uncut run). */
  private mid: Seen | undefined;
  /** Hashes of the guest data before the session and at the checkpoint. */
  private beforeData = '';
  private midData = '';
  midWrites = 0;
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
    this.storage.files.set('survey', this.pristine.clone());
    const look = await this.open('survey', true);
    this.beforeData = await this.guestHash(look);
    await look.close();
    expect([...this.before.keys()]).toEqual(['a', 'b', 'c']);
    const done = await this.session(Number.MAX_SAFE_INTEGER);
    this.total = done.writeCount;
    const s = await this.survey(done);
    this.after = s.seen;
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
        await this.writes(bb, this.seed + 1, this.scenario === 'checkpoint' ? 4 : 8);
        if (this.scenario === 'checkpoint') {
          await checkpointDirtyBitmaps(bb.node);
          if (cut === Number.MAX_SAFE_INTEGER) {
            this.mid = new Map([...bb.node.dirtyBitmaps].map((b) => [b.name, { inUse: false, extents: [...b.dirtyExtents()] }]));
            this.midWrites = file.writeCount;
            this.midData = await this.guestHash(bb);
          }
          await this.writes(bb, this.seed + 2, 4);
        }
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

  /** SHA-256 of the guest data. */
  private async guestHash(bb: BlockBackend): Promise<string> {
    return createHash('sha256').update(await bb.read(0, this.shape.size)).digest('hex');
  }

  /** Our view of an image: each bitmap's in-use state and extents. */
  private async survey(file: MemoryFile): Promise<{ seen: Seen }> {
    this.storage.files.set('survey', file);
    const bb = await this.open('survey', true);
    const seen: Seen = new Map();
    for (const b of bb.node.dirtyBitmaps) {
      seen.set(b.name, b.inconsistent ? { inUse: true } : { inUse: false, extents: [...b.dirtyExtents()] });
    }
    await bb.close();
    return { seen };
  }

  /**
   * Cuts at `cut` and checks the survivor; `nbd` also compares qemu-nbd's
   * extents. Returns which state it found.
   */
  async verifyCut(cut: number, nbd: boolean): Promise<CutState> {
    const file = await this.session(cut);
    writeFileSync(this.scratch, file.toBytes());
    const where = { scenario: this.scenario, shape: this.shape.name, seed: this.seed, cut };
    const c = qemuCheck(this.scratch);
    expect({ ...where, corruptions: c.corruptions ?? 0, errors: c['check-errors'] }).toEqual({ ...where, corruptions: 0, errors: 0 });
    const { seen } = await this.survey(file);
    // QEMU lists the same bitmaps, with in-use where we found them inconsistent.
    const info = infoBitmaps(this.scratch);
    expect({ ...where, bitmaps: info.map((b) => [b.name, b.flags.includes('in-use')]) }).toEqual({ ...where, bitmaps: [...seen].map(([n, s]) => [n, s.inUse]) });
    // Which legitimate state the bitmaps are in (by content: a directory may land where an older one was).
    const allInUse = (names: Iterable<string>) => new Map([...names].map((n) => [n, { inUse: true }]));
    const candidates: Array<[CutState, Seen]> = [
      ['old', this.before],
      ['old in use', allInUse(this.before.keys())],
      ['new', this.after],
    ];
    if (this.scenario.includes('remove')) candidates.push(['removed, in use', allInUse([...this.before.keys()].filter((n) => n !== 'a'))]);
    // Marked in use again after the checkpoint looks like 'old in use' (the same names, all in use).
    if (this.mid) candidates.push(['checkpoint', this.mid]);
    const state = candidates.find(([, want]) => sameSeen(seen, want))?.[0];
    if (!state) expect({ ...where, seen: [...seen] }).toEqual({ ...where, seen: 'one of the legitimate states' });
    // Bitmaps that are valid (not in use) must cover every guest write that landed: none since they were stored.
    if (state === 'old' || state === 'checkpoint') {
      this.storage.files.set('survey', file);
      const bb = await this.open('survey', true);
      const data = await this.guestHash(bb);
      await bb.close();
      expect({ ...where, state, dataAsWhenStored: data === (state === 'old' ? this.beforeData : this.midData) }).toEqual({ ...where, state, dataAsWhenStored: true });
    }
    if (nbd) {
      for (const [name, s] of seen) {
        if (s.inUse) continue;
        const theirs = await qemuDirtyExtents(this.scratch, name, `${this.scratch}.sock`);
        expect({ ...where, name, extents: theirs }).toEqual({ ...where, name, extents: s.extents });
      }
    }
    return state!;
  }
}

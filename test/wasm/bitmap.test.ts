import { describe, it, expect, beforeAll } from 'vitest';
import { BitmapEngine, DirtyBitmap, loadBitmapEngine } from '../../src/wasm/bitmap.js';
import { Prng } from './prng.js';
import { BlockError } from '../../src/core/errors.js';

let engine: BitmapEngine;
beforeAll(async () => {
  engine = await loadBitmapEngine();
});

/** Plain reference: one byte per bit, linear scans. */
class RefBitmap {
  readonly b: Uint8Array;
  constructor(readonly size: number) {
    this.b = new Uint8Array(size);
  }
  set(s: number, n: number, v = 1): void {
    this.b.fill(v, s, s + n);
  }
  count(): number {
    let c = 0;
    for (const x of this.b) c += x;
    return c;
  }
  next(s: number, e: number, v: number): number {
    for (let i = s; i < Math.min(e, this.size); i++) if (this.b[i] === v) return i;
    return -1;
  }
  serialize(s: number, n: number): Uint8Array {
    const out = new Uint8Array(Math.ceil(n / 8));
    for (let i = 0; i < n; i++) if (s + i < this.size && this.b[s + i]) out[i >> 3]! |= 1 << (i & 7);
    return out;
  }
}

describe('bitmap: WASM vs reference (randomized)', () => {
  it('agrees on set / reset / get / next / count / area / serialize (5000 ops over 40 bitmaps)', () => {
    const rng = new Prng(99);
    for (let t = 0; t < 40; t++) {
      const size = rng.pick([1, 63, 64, 65, 4095, 4096, 4097, 262144 + 13, 300000]);
      const w = engine.create(size);
      const r = new RefBitmap(size);
      for (let k = 0; k < 125; k++) {
        const s = rng.int(size);
        const n = rng.int(Math.min(size - s, rng.chance(0.5) ? 100 : size) + 1);
        const op = rng.int(7);
        if (op <= 1) {
          w.set(s, n);
          r.set(s, n, 1);
        } else if (op === 2) {
          w.reset(s, n);
          r.set(s, n, 0);
        } else if (op === 3) {
          const e = s + n;
          expect(w.nextDirty(s, e)).toBe(r.next(s, e, 1));
          expect(w.nextClear(s, e)).toBe(r.next(s, e, 0));
        } else if (op === 4) {
          const e = s + n;
          const a = w.nextDirtyArea(s, e, 1 + rng.int(500));
          const ds = r.next(s, e, 1);
          if (ds < 0) expect(a).toBeUndefined();
          else {
            expect(a![0]).toBe(ds);
            for (let i = ds; i < ds + a![1]; i++) expect(r.b[i]).toBe(1);
          }
        } else if (op === 5) {
          const s8 = s - (s % 8);
          const n2 = Math.min(n, size - s8);
          expect(Buffer.compare(w.serialize(s8, n2), r.serialize(s8, n2))).toBe(0);
          expect(w.countRange(s8, n2)).toBe(r.b.subarray(s8, s8 + n2).reduce((x, y) => x + y, 0));
        } else {
          const s8 = s - (s % 8);
          const n2 = Math.min(n, size - s8);
          const data = new Prng(k).bytes(Math.ceil(n2 / 8));
          w.deserialize(s8, n2, data);
          for (let i = 0; i < n2; i++) r.b[s8 + i] = (data[i >> 3]! >> (i & 7)) & 1;
        }
        expect(w.count()).toBe(r.count());
      }
      // Full walk of dirty runs.
      const runs = [...w.dirtyRuns()];
      const ref: [number, number][] = [];
      for (let i = 0; i < size; ) {
        if (!r.b[i]) {
          i++;
          continue;
        }
        let j = i;
        while (j < size && r.b[j]) j++;
        ref.push([i, j - i]);
        i = j;
      }
      expect(runs).toEqual(ref);
      w.destroy();
    }
  });

  it('merges (or) and subtracts (and-not) like the reference', () => {
    const rng = new Prng(5);
    for (let t = 0; t < 30; t++) {
      const size = rng.pick([100, 5000, 300000]);
      const a = engine.create(size);
      const b = engine.create(size);
      const ra = new RefBitmap(size);
      const rb = new RefBitmap(size);
      for (let k = 0; k < 30; k++) {
        const s = rng.int(size);
        const n = rng.int(Math.min(1000, size - s) + 1);
        if (rng.chance(0.5)) {
          a.set(s, n);
          ra.set(s, n);
        } else {
          b.set(s, n);
          rb.set(s, n);
        }
      }
      if (t % 2 === 0) {
        a.merge(b);
        for (let i = 0; i < size; i++) ra.b[i] = ra.b[i]! | rb.b[i]!;
      } else {
        a.subtract(b);
        for (let i = 0; i < size; i++) ra.b[i] = ra.b[i]! & (1 - rb.b[i]!);
      }
      expect(a.count()).toBe(ra.count());
      expect(Buffer.compare(a.serialize(0, size), ra.serialize(0, size))).toBe(0);
      for (let k = 0; k < 50; k++) {
        const s = rng.int(size);
        expect(a.nextDirty(s)).toBe(ra.next(s, size, 1));
      }
      a.destroy();
      b.destroy();
    }
  });
});

describe('bitmap: next-dirty search paths', () => {
  it('agrees with a linear scan whether the answer is in the start word, the next summary words or far away', () => {
    const rng = new Prng(1234);
    for (const size of [65, 4097, 262144 + 13, 2 ** 24 + 5]) {
      for (const meanGap of [3, 100, 5000, 300000]) {
        const w = engine.create(size);
        const ref = new Uint8Array(size);
        for (let pos = rng.int(meanGap); pos < size; pos += 1 + rng.int(2 * meanGap)) {
          const n = Math.min(1 + rng.int(64), size - pos);
          w.set(pos, n);
          ref.fill(1, pos, pos + n);
          pos += n;
        }
        const linear = (s: number, e: number): number => {
          for (let i = s; i < Math.min(e, size); i++) if (ref[i]) return i;
          return -1;
        };
        for (let k = 0; k < 300; k++) {
          const s = rng.int(size);
          const e = rng.chance(0.5) ? size : s + rng.int(2 * meanGap);
          expect(w.nextDirty(s, e)).toBe(linear(s, e));
          expect(w.nextDirty(s)).toBe(linear(s, size));
        }
        // Word and summary-word edges.
        for (const s of [0, 63, 64, 4095, 4096, 4097, size - 1]) if (s < size) expect(w.nextDirty(s)).toBe(linear(s, size));
        w.destroy();
      }
    }
  });

  it('takes fractional, negative, NaN and out-of-range starts and ends without surprises', () => {
    const w = engine.create(300000);
    w.set(1000, 10);
    w.set(250000, 1);
    expect(w.nextDirty(999.5)).toBe(1000);
    expect(w.nextDirty(1005.7)).toBe(1005);
    expect(w.nextDirty(-1)).toBe(-1);
    expect(w.nextDirty(Number.NaN)).toBe(-1);
    expect(w.nextDirty(2 ** 40)).toBe(-1);
    expect(w.nextDirty(1010, 2 ** 40)).toBe(250000);
    expect(w.nextDirty(1010, 250000)).toBe(-1);
    expect(w.nextDirty(0, -5)).toBe(-1);
    w.destroy();
    expect(() => w.nextDirty(0)).toThrow(BlockError);
  });
});

/**
 * The skip table (bitmaps below 2^31 bits): one entry per 64-bit word with the distance
 * to the next set bit after it, up to SKIP_WORDS words ahead; past that the summary
 * levels answer. These tests aim at the entries' maintenance (which entries an update
 * must rewrite, how far back) and at the edge of their reach.
 */
const SKIP_WORDS = 255; // assembly/bitmap.ts
const REACH = SKIP_WORDS * 64; // bits after a word's end that its entry covers

/** next[i] = first set bit at or after i (size if none), from a byte-per-bit reference. */
function nextTable(ref: Uint8Array): Int32Array {
  const next = new Int32Array(ref.length + 1);
  next[ref.length] = ref.length;
  for (let i = ref.length - 1; i >= 0; i--) next[i] = ref[i] ? i : next[i + 1]!;
  return next;
}

describe('bitmap: skip table', () => {
  it('stays exact through set / reset / deserialize / merge / subtract / clear, with gaps around its reach', () => {
    const rng = new Prng(4242);
    for (const size of [REACH * 2 + 64 * 7 + 5, 300000, 2 ** 20 + 37]) {
      const w = engine.create(size);
      const ref = new Uint8Array(size);
      const other = engine.create(size);
      const oref = new Uint8Array(size);
      const anchors: number[] = [size >> 1];
      // A position at about the skip reach (or a few words) from a bit set earlier.
      const near = (): number => {
        const a = rng.pick(anchors);
        const d = rng.pick([REACH, REACH + 64, 64, 128 * 64]) + rng.int(260) - 130;
        const p = rng.chance(0.5) ? a + d : a - d;
        return Math.min(size - 1, Math.max(0, p));
      };
      for (let k = 0; k < 160; k++) {
        const op = rng.int(10);
        if (op <= 3) {
          const s = rng.chance(0.7) ? near() : rng.int(size);
          const n = 1 + rng.int(Math.min(size - s, rng.chance(0.8) ? 70 : 5000));
          w.set(s, n);
          ref.fill(1, s, s + n);
          anchors.push(s);
        } else if (op <= 5) {
          // Resets, some wide enough to open gaps beyond the reach.
          const s = rng.chance(0.5) ? near() : rng.int(size);
          const n = 1 + rng.int(Math.min(size - s, rng.pick([64, 4096, REACH + 1000])));
          w.reset(s, n);
          ref.fill(0, s, s + n);
        } else if (op === 6) {
          const s8 = near() & ~7;
          const n = Math.min(size - s8, 1 + rng.int(3000));
          const data = rng.chance(0.5) ? new Uint8Array(Math.ceil(n / 8)) : new Prng(k).bytes(Math.ceil(n / 8)).map((b) => b & rng.int(256) & rng.int(256));
          w.deserialize(s8, n, data);
          for (let i = 0; i < n; i++) ref[s8 + i] = (data[i >> 3]! >> (i & 7)) & 1;
        } else if (op === 7 || op === 8) {
          // Merge / subtract another bitmap holding a few runs.
          other.clear();
          oref.fill(0);
          for (let r = 0; r < 3; r++) {
            const s = near();
            const n = 1 + rng.int(Math.min(size - s, 200));
            other.set(s, n);
            oref.fill(1, s, s + n);
          }
          if (op === 7) {
            w.merge(other);
            for (let i = 0; i < size; i++) ref[i]! |= oref[i]!;
          } else {
            w.subtract(other);
            for (let i = 0; i < size; i++) if (oref[i]) ref[i] = 0;
          }
        } else if (rng.chance(0.2)) {
          w.clear();
          ref.fill(0);
        }
        const next = nextTable(ref);
        const expectNext = (s: number, e = size): void => {
          const want = next[s]! < Math.min(e, size) ? next[s]! : -1;
          if (w.nextDirty(s, e) !== want) expect([s, e, w.nextDirty(s, e)]).toEqual([s, e, want]);
        };
        // Every word start and end, bits around every set bit, random starts and ends.
        for (let s = 0; s < size; s += 64) {
          expectNext(s);
          expectNext(Math.min(size - 1, s + 63));
        }
        for (let i = 0; i < size; i++) {
          if (ref[i] && (i === 0 || !ref[i - 1])) {
            for (const s of [i - 1, i, i + 1]) if (s >= 0 && s < size) expectNext(s);
            const s = Math.max(0, i - rng.int(REACH + 200));
            expectNext(s, i);
            expectNext(s, i + 1);
          }
        }
        for (let r = 0; r < 200; r++) {
          const s = rng.int(size);
          expectNext(s, s + rng.int(REACH * 2));
          // The general (float-argument) search, through a fractional start.
          const want = next[s]! < size ? next[s]! : -1;
          if (w.nextDirty(s + 0.5) !== want) expect([s + 0.5, w.nextDirty(s + 0.5)]).toEqual([s + 0.5, want]);
        }
        expect(w.count()).toBe(ref.reduce((x, y) => x + y, 0));
      }
      w.destroy();
      other.destroy();
    }
  });

  it('is built on demand from the bits already there (a loaded bitmap) and stays exact after', () => {
    const rng = new Prng(777);
    const size = 2 ** 20 + 333;
    const w = engine.create(size);
    const ex = engine.module.exports as unknown as { skipPtr(h: number): number };
    // Loaded in chunks, as a qcow2 open does: dense, sparse and empty stretches.
    const ref = new Uint8Array(size);
    for (let s = 0; s < size; s += 65536) {
      const n = Math.min(65536, size - s);
      const density = rng.pick([0, 0, 1, 8, 200]);
      const data = new Uint8Array(Math.ceil(n / 8));
      for (let i = 0; i < n; i++) if (rng.int(1000) < density) data[i >> 3]! |= 1 << (i & 7);
      w.deserialize(s, n, data);
      for (let i = 0; i < n; i++) ref[s + i] = (data[i >> 3]! >> (i & 7)) & 1;
    }
    expect(ex.skipPtr(w.ptr)).toBe(0);
    const check = (): void => {
      const next = nextTable(ref);
      for (let r = 0; r < 2000; r++) {
        const s = rng.int(size);
        const e = s + rng.int(REACH * 3);
        const want = next[s]! < Math.min(e, size) ? next[s]! : -1;
        if (w.nextDirty(s, e) !== want) expect([s, e, w.nextDirty(s, e)]).toEqual([s, e, want]);
      }
    };
    check();
    expect(ex.skipPtr(w.ptr)).not.toBe(0);
    for (let k = 0; k < 20; k++) {
      const s = rng.int(size);
      const n = 1 + rng.int(Math.min(size - s, rng.pick([10, 5000, REACH * 2])));
      const v = rng.int(2);
      if (v) w.set(s, n);
      else w.reset(s, n);
      ref.fill(v, s, s + n);
      check();
    }
    w.destroy();
  });

  it('hands over to the summary levels exactly at the edge of its reach', () => {
    const size = 400000;
    const far = size - 1;
    const w = engine.create(size);
    const word = 100;
    const after = (word + 1) * 64; // first bit past the start's word
    for (const d of [0, 1, 63, 64, 65, REACH - 65, REACH - 64, REACH - 1, REACH, REACH + 1, REACH + 63, REACH + 64, 100000]) {
      w.clear();
      const b = after + d;
      w.set(b, 1);
      w.set(far, 1);
      for (const s of [word * 64, word * 64 + 17, after - 1]) {
        expect([d, s, w.nextDirty(s)]).toEqual([d, s, b]);
        expect([d, s, w.nextDirty(s, b)]).toEqual([d, s, -1]);
        expect([d, s, w.nextDirty(s, b + 1)]).toEqual([d, s, b]);
        expect([d, s, w.nextDirty(s + 0.5)]).toEqual([d, s, b]);
      }
      // Clearing it again must reach back to every entry that pointed at it.
      w.reset(b, 1);
      for (let s = Math.max(0, b - REACH - 256); s <= b; s += 61) {
        expect([d, s, w.nextDirty(s)]).toEqual([d, s, far]);
        expect([d, s, w.nextDirty(s, far)]).toEqual([d, s, -1]);
      }
      // And setting a bit before a far one must not disturb the entries pointing past it.
      w.set(b, 1);
      w.set(b - 500, 1);
      expect(w.nextDirty(b - 499)).toBe(b);
      expect(w.nextDirty(Math.max(0, b - 500 - REACH))).toBe(b - 500);
    }
    w.destroy();
  });

  it('walks a sparse bitmap (set bits far beyond the reach) in both directions of change', () => {
    const size = 2 ** 22 + 3;
    const w = engine.create(size);
    const ref = new Uint8Array(size);
    const set = new Set([5, 70000, 70001, 500000, 2 ** 21, size - 1]);
    for (const b of set) {
      w.set(b, 1);
      ref[b] = 1;
    }
    const check = (): void => {
      const next = nextTable(ref);
      for (let s = 0; s < size; s += 4093) {
        const want = next[s]! < size ? next[s]! : -1;
        if (w.nextDirty(s) !== want) expect([s, w.nextDirty(s)]).toEqual([s, want]);
      }
      const found: number[] = [];
      for (let p = w.nextDirty(0); p >= 0; p = w.nextDirty(p + 1)) found.push(p);
      expect(found).toEqual([...set].sort((a, b) => a - b));
    };
    check();
    w.reset(70000, 2);
    ref[70000] = ref[70001] = 0;
    set.delete(70000);
    set.delete(70001);
    check();
    w.set(450000, 1);
    ref[450000] = 1;
    set.add(450000);
    check();
    w.reset(0, size);
    ref.fill(0);
    set.clear();
    check();
    w.destroy();
  });

  it('also serves bitmaps of a single word', () => {
    const rng = new Prng(8);
    for (let size = 1; size <= 64; size++) {
      const w = engine.create(size);
      const ref = new Uint8Array(size);
      for (let k = 0; k < 4; k++) {
        const s = rng.int(size);
        const n = 1 + rng.int(Math.min(3, size - s));
        w.set(s, n);
        ref.fill(1, s, s + n);
        const next = nextTable(ref);
        for (let s0 = 0; s0 <= size; s0++) {
          for (let e = 0; e <= size + 1; e++) {
            const want = next[Math.min(s0, size)]! < Math.min(e, size) ? next[s0]! : -1;
            if (w.nextDirty(s0, e) !== want) expect([size, s0, e, w.nextDirty(s0, e)]).toEqual([size, s0, e, want]);
          }
        }
      }
      w.destroy();
    }
  });

  it('bitmaps of 2^31 bits and more have no skip table and use the general search', () => {
    const size = 2 ** 31 + 100;
    const w = engine.create(size);
    w.set(5, 1);
    w.set(2 ** 31 - 1, 2);
    w.set(size - 1, 1);
    expect(w.nextDirty(0)).toBe(5);
    expect(w.nextDirty(6)).toBe(2 ** 31 - 1);
    expect(w.nextDirty(2 ** 31)).toBe(2 ** 31);
    expect(w.nextDirty(2 ** 31 + 1)).toBe(size - 1);
    expect(w.nextDirty(2 ** 31 + 1, size - 1)).toBe(-1);
    expect(w.nextDirtyArea(6)).toEqual([2 ** 31 - 1, 2]);
    expect(w.count()).toBe(4);
    w.reset(0, size);
    expect(w.nextDirty(0)).toBe(-1);
    w.destroy();
  });
});

describe('bitmap: size limits', () => {
  it('refuses sizes its 32-bit memory cannot hold with EINVAL naming the size', () => {
    for (const n of [2 ** 34 + 1, 2 ** 35, 2 ** 38, 0, -1, 1.5, Number.NaN]) {
      expect(() => engine.create(n)).toThrow(BlockError);
      try {
        engine.create(n);
      } catch (e) {
        expect((e as BlockError).code).toBe('EINVAL');
        expect((e as BlockError).message).toContain(String(n));
      }
    }
  });
});

describe('bitmap: scale and byte API', () => {
  it('1 TiB at 64 KiB granularity (16 Mi bits): next-dirty across a sparse bitmap', () => {
    const bm = new DirtyBitmap(engine, 2 ** 40, 65536);
    expect(bm.bits.size).toBe(2 ** 24);
    bm.setDirty(2 ** 39 + 100, 1);
    bm.setDirty(2 ** 40 - 1, 1);
    expect(bm.nextDirty(0)).toBe(2 ** 39);
    expect(bm.nextDirty(2 ** 39 + 65536)).toBe(2 ** 40 - 65536);
    expect(bm.dirtyBytes()).toBe(2 * 65536);
    expect([...bm.dirtyExtents()]).toEqual([[2 ** 39, 65536], [2 ** 40 - 65536, 65536]]);
    bm.resetDirty(0, 2 ** 40);
    expect(bm.nextDirty(0)).toBe(-1);
    bm.destroy();
  });
});

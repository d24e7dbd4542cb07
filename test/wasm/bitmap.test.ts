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

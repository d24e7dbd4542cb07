/**
 * Runs one seeded list of bitmap operations through the WASM and the
 * TypeScript bitmap engines side by side and compares every answer (values,
 * and errors by code and message), then the whole bitmap. Shared by
 * hbitmap-engines.test.ts (fixed seeds) and hbitmap-engines.fuzz.ts.
 */
import { BlockError } from '../../src/core/errors.js';
import type { HBitmap, HBitmapEngine } from '../../src/core/hbitmap.js';
import { Prng } from '../wasm/prng.js';

/** Sizes that hit word, summary-level and byte edges of both engines. */
const SIZES = [1, 7, 8, 31, 32, 33, 63, 64, 65, 1023, 1024, 1025, 4097, 32 * 32 * 32 + 5, 262144 + 13, 300000, 2 ** 21 + 3];

/** The outcome of one call: its value, or the error's code and message. */
function outcome(f: () => unknown): string {
  try {
    const v = f();
    return JSON.stringify(v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v === undefined ? null : v);
  } catch (e) {
    if (e instanceof BlockError) return `${e.code}: ${e.message}`;
    throw e;
  }
}

/** What a difference looks like. */
export interface EngineDiff {
  seed: number;
  step: number;
  op: string;
  a: string;
  b: string;
}

/**
 * Runs `ops` random operations on bitmaps of one random size made by `a`
 * and `b`; returns the first difference, or the number of compared answers.
 */
export function compareEngines(a: HBitmapEngine, b: HBitmapEngine, seed: number, ops: number): EngineDiff | number {
  const rng = new Prng(seed);
  const size = rng.chance(0.8) ? rng.pick(SIZES) : 1 + rng.int(100000);
  const pair: [HBitmap, HBitmap] = [a.create(size), b.create(size)];
  const other: [HBitmap, HBitmap] = [a.create(size), b.create(size)];
  let compared = 0;
  try {
    for (let step = 0; step < ops; step++) {
      // Mostly in range, sometimes past the end or negative, to compare the errors too.
      const start = rng.chance(0.05) ? size + rng.int(10) - 3 : rng.int(size);
      const span = rng.chance(0.5) ? 1 + rng.int(70) : rng.int(size + 1);
      const n = rng.chance(0.05) ? span : Math.min(span, size - Math.min(start, size));
      const opNo = rng.int(14);
      const seedBytes = rng.u32();
      let op = '';
      const run = (bm: HBitmap, o: HBitmap): string => {
        switch (opNo) {
          case 0:
          case 1:
            op = `set(${start}, ${n})`;
            return outcome(() => bm.set(start, n));
          case 2:
            op = `reset(${start}, ${n})`;
            return outcome(() => bm.reset(start, n));
          case 3:
            op = `nextDirty(${start}, ${start + n})`;
            return outcome(() => bm.nextDirty(start, start + n));
          case 4:
            op = `nextClear(${start}, ${start + n})`;
            return outcome(() => bm.nextClear(start, start + n));
          case 5:
            op = `nextDirtyArea(${start}, ${start + n}, ${1 + (seedBytes % 500)})`;
            return outcome(() => bm.nextDirtyArea(start, start + n, 1 + (seedBytes % 500)));
          case 6:
            op = `countRange(${start}, ${n})`;
            return outcome(() => bm.countRange(start, n));
          case 7: {
            const s8 = start - (start % 8);
            op = `serialize(${s8}, ${n})`;
            return outcome(() => bm.serialize(s8, n));
          }
          case 8: {
            const s8 = start - (start % 8);
            op = `deserialize(${s8}, ${n})`;
            const data = new Prng(seedBytes).bytes(Math.ceil(Math.max(0, n) / 8));
            return outcome(() => bm.deserialize(s8, n, data));
          }
          case 9:
            op = `get(${start})`;
            return outcome(() => bm.get(start));
          case 10:
            op = `other.set(${start}, ${n}); merge`;
            return outcome(() => {
              o.set(start, n);
              bm.merge(o);
            });
          case 11:
            op = `other.set(${start}, ${n}); subtract`;
            return outcome(() => {
              o.set(start, n);
              bm.subtract(o);
            });
          case 12:
            op = 'dirtyRuns';
            return outcome(() => [...bm.dirtyRuns(Math.min(start, size), size)]);
          default:
            if (seedBytes % 8 === 0) {
              op = 'clear';
              return outcome(() => bm.clear());
            }
            op = 'count';
            return outcome(() => bm.count());
        }
      };
      const ra = run(pair[0], other[0]);
      const rb = run(pair[1], other[1]);
      const ca = outcome(() => pair[0].count());
      const cb = outcome(() => pair[1].count());
      compared += 2;
      if (ra !== rb) return { seed, step, op, a: ra, b: rb };
      if (ca !== cb) return { seed, step, op: `count after ${op}`, a: ca, b: cb };
    }
    const fa = outcome(() => pair[0].serialize(0, size));
    const fb = outcome(() => pair[1].serialize(0, size));
    if (fa !== fb) return { seed, step: ops, op: 'final serialize', a: fa, b: fb };
    // Merges across engines (a bitmap made before a switch meets one made after).
    pair[0].merge(other[1]);
    pair[1].merge(other[0]);
    const xa = outcome(() => pair[0].serialize(0, size));
    const xb = outcome(() => pair[1].serialize(0, size));
    if (xa !== xb) return { seed, step: ops, op: 'cross-engine merge', a: xa, b: xb };
    return compared + 3;
  } finally {
    for (const bm of [...pair, ...other]) bm.destroy();
  }
}

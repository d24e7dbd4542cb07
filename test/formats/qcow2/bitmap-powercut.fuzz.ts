/**
 * Power cut during persistent-bitmap add / store / remove / checkpoint, every cut point
 * (`node scripts/fuzz.mjs bitmap-powercut --seed N --count N`): each scenario
 * on each shape, for `count` seeds from `seed`, cut at every write of the
 * session, checked with qemu-img check / info and qemu-nbd's extents (see
 * bitmap-powercut.ts). bitmap-powercut.test.ts runs a fixed sample.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { mkdirSync } from 'node:fs';
import { BITMAP_CUT_SHAPES, BITMAP_SCENARIOS, BitmapCutRig } from './bitmap-powercut.js';
import { tempDir } from './helpers.js';
import { fuzzParams } from '../../fuzz/params.js';

const t = tempDir();
afterAll(() => t.cleanup());

const { seed, count } = fuzzParams(1);

describe('qcow2 bitmaps: power cut (sweep)', () => {
  for (const shape of BITMAP_CUT_SHAPES) {
    for (const scenario of BITMAP_SCENARIOS) {
      it(`${scenario} on ${shape.name}: every cut point of seeds ${seed}..${seed + count - 1}`, async () => {
        const tally: Record<string, number> = {};
        for (let k = 0; k < count; k++) {
          const dir = t.path(`${scenario}-${shape.cs}-${k}`);
          mkdirSync(dir);
          const rig = new BitmapCutRig(shape, scenario, seed + k, dir);
          await rig.prepare();
          for (let cut = 0; cut <= rig.total; cut++) {
            const state = await rig.verifyCut(cut, true);
            tally[state] = (tally[state] ?? 0) + 1;
          }
        }
        process.stdout.write(`[bitmap-powercut] ${scenario}, ${shape.name}: ${JSON.stringify(tally)}\n`);
        expect(tally.new).toBeGreaterThan(0);
      }, 3_600_000);
    }
  }
});

/**
 * Power cut during persistent-bitmap add / store / remove / checkpoint, fixed sample
 * (bitmap-powercut.ts has the session and the checks; bitmap-powercut.fuzz.ts
 * cuts at every write): for each scenario, the cut points right around the
 * in-use mark, the checkpoint and the header switch plus a few seeded ones; qemu-img check
 * finds no corruption and each bitmap is intact, in use, or absent as QEMU
 * would treat it, with qemu-nbd's extents equal to ours.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { mkdirSync } from 'node:fs';
import { BITMAP_CUT_SHAPES, BITMAP_SCENARIOS, BitmapCutRig } from './bitmap-powercut.js';
import { cutPoints } from './powercut-sweep.js';
import { tempDir } from './helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());

const SEED = 20261206;

describe('qcow2 bitmaps: power cut (sample)', () => {
  BITMAP_SCENARIOS.forEach((scenario, i) => {
    const shape = BITMAP_CUT_SHAPES[i % BITMAP_CUT_SHAPES.length]!;
    it(`${scenario} on ${shape.name}: the first writes, the last writes and seeded cut points`, async () => {
      const dir = t.path(`s${i}`);
      mkdirSync(dir);
      const rig = new BitmapCutRig(shape, scenario, SEED + i, dir);
      await rig.prepare();
      expect(rig.total).toBeGreaterThan(10);
      // 0 and 1: before / after the in-use mark (then a removal's directory and header);
      // the last ones: around the header switch and the frees.
      const around = (w: number) => [w - 3, w - 2, w - 1, w, w + 1, w + 2];
      const special = [0, 1, 2, 3, 4, ...around(rig.total - 3), ...(scenario === 'checkpoint' ? around(rig.midWrites) : [])];
      const cuts = [...new Set([...special, ...cutPoints(rig.total, 4, SEED + i)])].filter((c) => c >= 0 && c <= rig.total).sort((a, b) => a - b);
      const states = new Set<string>();
      for (const cut of cuts) states.add(await rig.verifyCut(cut, cut === 0 || cut === rig.total || cut === rig.total - 2));
      // The sample saw every outcome (the removal's directory in the remove scenarios, the checkpoint's in that one).
      const want = [...(scenario === 'checkpoint' ? ['checkpoint'] : []), 'new', 'old', 'old in use', ...(scenario.includes('remove') ? ['removed, in use'] : [])];
      expect([...states].sort()).toEqual(want);
    }, 120_000);
  });
});

/**
 * Power-cut sweeps (`npm run fuzz -- powercut --seed N --count N`): for each
 * variant and each of `count` seeds from `seed`, the workload is cut at every
 * write (or at 400 evenly spread cut points when there are more). Each failure
 * names its seed and cut point; powercut.test.ts runs a fixed-seed sample.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { mkdirSync } from 'node:fs';
import { CUT_VARIANTS, CutRig, cutPoints } from './powercut-sweep.js';
import { tempDir } from './helpers.js';
import { fuzzParams } from '../../fuzz/params.js';

const t = tempDir();
afterAll(() => t.cleanup());

const { seed, count } = fuzzParams(1);
const MAX_CUTS = 400;

describe('qcow2 power cut (sweep)', () => {
  CUT_VARIANTS.forEach((v, i) => {
    it(`${v.name}: every cut point of seeds ${seed}..${seed + count - 1}`, async () => {
      for (let k = 0; k < count; k++) {
        const dir = t.path(`v${i}-${k}`);
        mkdirSync(dir);
        const rig = new CutRig(v, seed + k, dir);
        await rig.prepare();
        expect(rig.total).toBeGreaterThan(100);
        let dirty = 0;
        for (const cut of cutPoints(rig.total, MAX_CUTS, seed + k, true)) if (await rig.verifyCut(cut)) dirty++;
        // The lazy variant is only meaningful if cuts really left dirty images behind.
        if (v.lazy) expect(dirty).toBeGreaterThan(0);
      }
    });
  });
});

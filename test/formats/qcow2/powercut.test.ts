/**
 * Power cut, fast fixed-seed sample (the sweeps over every cut point and many
 * seeds are in powercut.fuzz.ts; the workload and the checks in
 * powercut-sweep.ts and crash-workload.ts): for each variant, a few random
 * cut points of one seeded run.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { mkdirSync } from 'node:fs';
import { CUT_VARIANTS, CutRig, cutPoints } from './powercut-sweep.js';
import { tempDir } from './helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());

const SEED = 20261205;
const CUTS = 8;

describe('qcow2 power cut (sample)', () => {
  CUT_VARIANTS.forEach((v, i) => {
    it(`${v.name}: ${CUTS} cut points of seed ${SEED} leave a consistent image with flushed data intact`, async () => {
      const dir = t.path(`v${i}`);
      mkdirSync(dir);
      const rig = new CutRig(v, SEED + i, dir);
      await rig.prepare();
      expect(rig.total).toBeGreaterThan(100);
      let dirty = 0;
      for (const cut of cutPoints(rig.total, CUTS, SEED + i)) if (await rig.verifyCut(cut)) dirty++;
      // The lazy variant is only meaningful if cuts really left dirty images behind.
      if (v.lazy) expect(dirty).toBeGreaterThan(0);
    });
  });
});

/**
 * Reads racing frees, many seeds (`npm run fuzz -- read-race --seed N --count N`);
 * read-race.test.ts runs a fixed-seed sample of the same workload (read-race.ts).
 */
import { describe, it, expect } from 'vitest';
import { raceReads } from './read-race.js';
import { fuzzParams } from '../../fuzz/params.js';

const { seed, count } = fuzzParams(20);

describe('qcow2 reads racing frees (fuzz)', () => {
  for (const [cs, clusters] of [
    [4096, 48],
    [65536, 24],
    [512, 96],
  ] as const) {
    it(`${cs} byte clusters, seeds ${seed}..${seed + count - 1}`, async () => {
      let heldBack = 0;
      for (let k = 0; k < count; k++) {
        const res = await raceReads(seed + k, { cs, clusters, ops: 2000, inFlight: 16 });
        expect({ seed: seed + k, foreign: res.foreign.slice(0, 5) }).toEqual({ seed: seed + k, foreign: [] });
        heldBack += res.heldBack;
      }
      expect(heldBack).toBeGreaterThan(0);
    });
  }
});

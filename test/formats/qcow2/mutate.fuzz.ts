/**
 * Mutated images, long seeded runs (`npm run fuzz -- mutate --seed N --count N`):
 * `count` mutated images from PRNG seed `seed` (fuzz.test.ts runs a fixed-seed
 * sample of the same code, mutate.ts).
 */
import { describe, it } from 'vitest';
import { fuzzImages } from './mutate.js';
import { fuzzParams } from '../../fuzz/params.js';

const { seed, count } = fuzzParams(20000);

describe('qcow2 fuzz (mutated images)', () => {
  it(`survives ${count} mutated images from seed ${seed}`, async () => {
    await fuzzImages(seed, count);
  });
});

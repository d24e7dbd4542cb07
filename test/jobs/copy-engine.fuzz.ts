/**
 * Copy engine long runs (`npm run fuzz -- copy-engine --seed N --count N`):
 * seeded random images on the memory back end copied with seeded random
 * chunk size, read-ahead, write depth and -S, compared byte for byte
 * (copy-engine.test.ts runs fixed seeds of the same case).
 */
import { describe, it } from 'vitest';
import { randomCopyCase } from './copy-engine-cases.js';
import { fuzzParams } from '../fuzz/params.js';

const { seed, count } = fuzzParams(500);

describe('copy engine (fuzz)', () => {
  it(`${count} random images from seed ${seed} copy byte for byte, sparse, within their buffer bound`, async () => {
    for (let i = 0; i < count; i++) await randomCopyCase(seed + i);
  });
});

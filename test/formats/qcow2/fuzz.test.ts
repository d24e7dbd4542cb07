/**
 * Mutated images, fixed-seed sample (mutate.fuzz.ts runs the long seeded
 * runs of the same code, mutate.ts): only BlockError may come out of opening,
 * reading, mapping, checking and writing a damaged image.
 */
import { describe, it } from 'vitest';
import { fuzzImages } from './mutate.js';

const CASES = 600;

describe('qcow2 fuzz (sample)', () => {
  it(`survives ${CASES} mutated images (seed 20240601)`, async () => {
    await fuzzImages(20240601, CASES);
  });
});

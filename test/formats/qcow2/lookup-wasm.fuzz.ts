/**
 * The WASM L2 mapper against the TypeScript walk on many random L2 tables
 * (`npm run fuzz -- lookup-wasm --seed N --count N`); lookup-wasm.test.ts runs a sample.
 */
import { describe, expect, it } from 'vitest';
import { compareTables } from './lookup-wasm-cases.js';
import { fuzzParams } from '../../fuzz/params.js';

const { seed, count } = fuzzParams(40);

describe('qcow2 lookup: WASM L2 mapper vs TypeScript walk (fuzz)', () => {
  it(`gives identical block status, data and errors (${count} tables from seed ${seed})`, async () => {
    const longRuns = await compareTables(Array.from({ length: count }, (_, i) => seed + i));
    expect(longRuns).toBeGreaterThan(0);
  });
});

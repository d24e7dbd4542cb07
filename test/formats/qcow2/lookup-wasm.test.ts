/**
 * The WASM L2 mapper gives the TypeScript walk's answers: a fixed-seed sample of
 * random L2 tables (lookup-wasm.fuzz.ts runs many; the cases are in lookup-wasm-cases.ts).
 */
import { describe, expect, it } from 'vitest';
import { compareTables } from './lookup-wasm-cases.js';

describe('qcow2 lookup: WASM L2 mapper vs TypeScript walk', () => {
  it('gives identical block status, data and errors (4 random tables)', async () => {
    const longRuns = await compareTables([0, 1, 2, 3]);
    // The tables have long runs, so the mapper was really asked.
    expect(longRuns).toBeGreaterThan(6);
  });
});

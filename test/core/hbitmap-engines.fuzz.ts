/**
 * Sweep of the TypeScript bitmap engine against the WASM one
 * (`node scripts/fuzz.mjs hbitmap-engines --seed N --count N`): the same
 * comparison as hbitmap-engines.test.ts over many more seeds and longer runs.
 */
import { it, expect } from 'vitest';
import { fuzzParams } from '../fuzz/params.js';
import { compareEngines } from './hbitmap-engines.js';
import { loadBitmapEngine } from '../../src/wasm/bitmap.js';
import { typescriptHBitmapEngine } from '../../src/core/hbitmap.js';

it('TypeScript and WASM bitmap engines agree on seeded operations', async () => {
  const { seed, count } = fuzzParams(500);
  const wasm = await loadBitmapEngine();
  let compared = 0;
  for (let s = seed; s < seed + count; s++) {
    const r = compareEngines(wasm, typescriptHBitmapEngine, s, 2000);
    if (typeof r !== 'number') process.stdout.write(`[hbitmap-engines] difference: ${JSON.stringify(r)}\n`);
    expect(typeof r === 'number' ? null : r).toBeNull();
    compared += r as number;
  }
  process.stdout.write(`[hbitmap-engines] ${count} cases from seed ${seed}: ${compared} answers compared, 0 differences\n`);
}, 3_600_000);

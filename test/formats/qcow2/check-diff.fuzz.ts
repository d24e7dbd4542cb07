/**
 * Long differential run of check and open against qemu-img / qemu-io 7.2
 * (`npm run fuzz -- check-diff --seed N --count N`): every case that differs
 * prints its seed, mutation and differences; add the seed to the fixed seeds
 * of check-diff.test.ts once fixed.
 */
import { it, expect } from 'vitest';
import { fuzzParams } from '../../fuzz/params.js';
import { runCase, report } from './check-diff.js';
import { hasQemu } from '../../cli/harness.js';

it('check, repairs and opens agree with QEMU on mutated images', async () => {
  expect(hasQemu()).toBe(true);
  const { seed, count } = fuzzParams(200);
  const failures: string[] = [];
  for (let s = seed; s < seed + count; s++) {
    const { info, diffs } = await runCase(s);
    if (diffs.length) {
      const text = report(info, diffs);
      failures.push(text);
      process.stdout.write(`${text}\n`);
    }
  }
  process.stdout.write(`[check-diff] ${count} cases from seed ${seed}: ${failures.length} with differences\n`);
  expect(failures.map((f) => f.split('\n')[0])).toEqual([]);
});

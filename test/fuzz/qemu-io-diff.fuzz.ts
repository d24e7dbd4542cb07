/**
 * Long differential run of qemu-io sessions against qemu-io 7.2
 * (`npm run fuzz -- qemu-io --seed N --count N`): every session that differs
 * prints its seed, a shell reproduction and the differences; add the seed to
 * the fixed seeds of qemu-io-diff.test.ts once fixed. DW_FUZZ_STRICT_LAYOUT=1
 * also fails on host cluster placement (see maskLayout in qemu-io-session.ts).
 */
import { it, expect } from 'vitest';
import { fuzzParams } from './params.js';
import { runSeeds } from './qemu-io-session.js';
import { hasQemu } from '../cli/harness.js';

it('random qemu-io sessions print, read and leave images as qemu-io does', async () => {
  expect(hasQemu()).toBe(true);
  const { seed, count } = fuzzParams(300);
  const strict = process.env.DW_FUZZ_STRICT_LAYOUT === '1';
  const failures: string[] = [];
  const layoutOnly: number[] = [];
  for (let s = seed; s < seed + count; s++) {
    const r = await runSeeds([s], strict);
    layoutOnly.push(...r.layoutOnly);
    for (const f of r.failures) process.stdout.write(`${f}\n======\n`);
    failures.push(...r.failures);
  }
  process.stdout.write(
    `[qemu-io-diff] ${count} sessions from seed ${seed}: ${failures.length} with differences, ` +
      `${layoutOnly.length} with host layout differences only${layoutOnly.length ? ` (seeds ${layoutOnly.join(' ')})` : ''}\n`,
  );
  expect(failures.map((f) => f.split('\n')[0])).toEqual([]);
});

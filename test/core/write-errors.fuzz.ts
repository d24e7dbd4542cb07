/**
 * Long run of the write-error workload: `npm run fuzz -- write-errors --seed N
 * --count N` runs `count` seeds from `seed`, each with errors injected at 32
 * write counts, over every image kind and for ENOSPC and EIO.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { fuzzParams } from '../fuzz/params.js';
import { KINDS, runKind, scratch } from './write-errors-workload.js';

afterAll(() => scratch.cleanup());
const { seed, count } = fuzzParams(20);

describe(`write errors, seeds ${seed}..${seed + count - 1}`, () => {
  for (const kind of KINDS) {
    for (const code of ['ENOSPC', 'EIO'] as const) {
      it(`${kind.name}: ${code}`, async () => {
        for (let s = seed; s < seed + count; s++) {
          const r = await runKind(kind, code, 32, s);
          expect(r.cuts, `seed ${s}`).toBe(32);
        }
      });
    }
  }
});

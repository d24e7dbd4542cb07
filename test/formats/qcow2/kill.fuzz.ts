/**
 * Real-process kills, many seeds (`npm run fuzz -- kill --seed N --count N`):
 * each seed kills a child running the crash workload at its own random moment
 * (kill.ts); kill.test.ts runs three fixed seeds.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { killOnce } from './kill.js';
import { tempDir } from './helpers.js';
import { fuzzParams } from '../../fuzz/params.js';

const t = tempDir();
afterAll(() => t.cleanup());

const { seed, count } = fuzzParams(50);

describe('qcow2 killed writer (fuzz)', () => {
  it(`${count} kills from seed ${seed}`, async () => {
    let mid = 0;
    for (let k = 0; k < count; k++) {
      const r = await killOnce(t.dir, seed + k, 4000);
      if (!r.finished && r.durable > 0) mid++;
    }
    process.stdout.write(`[kill] ${count} kills, ${mid} after a completed flush and before the end\n`);
    expect(mid).toBeGreaterThan(0);
  });
});

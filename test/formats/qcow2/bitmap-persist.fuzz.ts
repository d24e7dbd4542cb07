/**
 * Sweep of the persistent-bitmap round trip against QEMU
 * (`node scripts/fuzz.mjs bitmap-persist --seed N --count N`): each case
 * picks a cluster size, extended L2 or not, a size and a workload from its
 * seed, and runs the same comparison as bitmap-persist.test.ts (qemu-img
 * info and check, qemu-nbd's dirty extents both ways).
 */
import { it, expect, afterAll } from 'vitest';
import { fuzzParams } from '../../fuzz/params.js';
import { hasQemu } from '../../cli/harness.js';
import { prng, tempDir } from './helpers.js';
import { runPersistCase } from './bitmap-persist.js';

const t = tempDir();
afterAll(() => t.cleanup());

it('stored bitmaps equal the model in QEMU, and QEMU bitmaps read back in ours', async () => {
  expect(hasQemu()).toBe(true);
  const { seed, count } = fuzzParams(20);
  let extents = 0;
  for (let s = seed; s < seed + count; s++) {
    const r = prng(s);
    const clusterSize = 2 ** (12 + Math.floor(r() * 10));
    const extendedL2 = clusterSize >= 16384 && r() < 0.4;
    const size = (4 + Math.floor(r() * 60)) << 20;
    try {
      extents += await runPersistCase(t.dir, { clusterSize, extendedL2, size, seed: s, ops: 20 + Math.floor(r() * 80) });
    } catch (e) {
      process.stdout.write(`[bitmap-persist] seed ${s} (cluster ${clusterSize}, ext ${extendedL2}, size ${size}) failed: ${String(e)}\n`);
      throw e;
    }
  }
  process.stdout.write(`[bitmap-persist] ${count} cases from seed ${seed}: ${extents} extents compared, 0 differences\n`);
}, 3_600_000);

/**
 * `img convert -r`: the rate limit reaches the copy engine. The engine's
 * limiter is tested on a virtual clock (test/jobs/copy-engine.test.ts); here
 * only a lower bound on wall time is checked (a limit of 1 MiB/s cannot copy
 * 3 MiB in under 2 s, however fast the machine), and the result against
 * qemu-img's.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Fixture, hasQemu, ours, theirs } from './harness.js';

describe.skipIf(!hasQemu())('img convert -r', () => {
  const fx = new Fixture((_dir, sh) => {
    sh('qemu-img create -q -f qcow2 src.qcow2 8M');
    sh("qemu-io -f qcow2 -c 'write -P 7 0 3M' src.qcow2");
  });
  afterAll(() => fx.dispose());

  it('copies no faster than the limit and writes what qemu-img writes', async () => {
    const a = fx.copy();
    const b = fx.copy();
    const t0 = performance.now();
    const mine = await ours('img', ['convert', '-r', '1M', '-O', 'raw', 'src.qcow2', 'out.raw'], a);
    const seconds = (performance.now() - t0) / 1000;
    const ref = theirs('img', ['convert', '-r', '1M', '-O', 'raw', 'src.qcow2', 'out.raw'], b);
    expect(mine).toEqual({ code: ref.code, stdout: ref.stdout, stderr: ref.stderr });
    expect(seconds).toBeGreaterThanOrEqual(1.9);
    const cmp = spawnSync('cmp', [join(a, 'out.raw'), join(b, 'out.raw')]);
    expect(cmp.status).toBe(0);
  });

  it('refuses a bad rate as qemu-img does', async () => {
    const a = fx.copy();
    for (const r of ['-1', 'x', '1Q']) {
      const mine = await ours('img', ['convert', '-r', r, '-O', 'raw', 'src.qcow2', 'o.raw'], a);
      const ref = theirs('img', ['convert', '-r', r, '-O', 'raw', 'src.qcow2', 'o.raw'], a);
      expect(mine.code).toBe(ref.code);
      expect(mine.stderr.replace(/^diskworker img/gm, 'qemu-img')).toBe(ref.stderr);
    }
  });
});

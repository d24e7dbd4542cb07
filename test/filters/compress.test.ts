/**
 * The compress filter against qemu-io 7.2 (the cases of QEMU's iotest 214):
 * writes through it land compressed, unaligned ones as whole clusters (the
 * rest of each cluster read and merged), zero writes and discards pass
 * through; `qemu-img map` and `qemu-img check` (compressed cluster counts
 * included) of the image must agree with QEMU's run, and a file node that
 * cannot take compressed writes is refused with QEMU's message.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, hasQemu } from '../cli/harness.js';
import { runBoth, type Step } from './differential.js';

const over = (file: Record<string, unknown>) => `json:${JSON.stringify({ driver: 'compress', file })}`;
const qcow2 = over({ driver: 'qcow2', file: { driver: 'file', filename: 't.qcow2' } });
const map: Step = { tool: 'img', args: ['map', '--output=json', '-U', 't.qcow2'] };

const CASES: Array<{ name: string; io: string[] }> = [
  { name: 'aligned writes are compressed', io: ['write -P 0xbb 0 128k', 'read -P 0xbb 0 128k'] },
  { name: 'unaligned writes compress whole clusters (iotest 214)', io: ['write -P 0xbb 0 224k', 'write -P 0xcc 272k 224k', 'read -P 0xbb 0 224k', 'read -P 0 224k 32k', 'read -P 0xcc 272k 224k'] },
  { name: 'zero writes and discards pass through', io: ['write -P 7 0 192k', 'write -z 64k 64k', 'discard 128k 64k', 'read -P 0 64k 128k', 'read -P 7 0 64k'] },
];

describe.skipIf(!hasQemu())('compress filter vs qemu-io 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f qcow2 t.qcow2 2M');
      sh('qemu-img create -q -f raw r.raw 2M');
    });
  });
  afterAll(() => fx.dispose());

  for (const c of CASES) {
    it(c.name, async () => {
      const io: Step = { tool: 'io', args: [...c.io.flatMap((cmd) => ['-c', cmd]), qcow2] };
      const r = await runBoth(fx, [io, map], { check: ['t.qcow2'] });
      expect(r.ours).toEqual(r.theirs);
      expect(r.theirs.runs[0]!.code).toBe(0);
    }, 20_000);
  }

  it('refuses a file node without compressed writes, as QEMU', async () => {
    const r = await runBoth(fx, [
      { tool: 'io', args: ['-c', 'write 0 64k', over({ driver: 'raw', file: { driver: 'file', filename: 'r.raw' } })] },
      { tool: 'io', args: ['-c', 'write 0 64k', over({ driver: 'file', filename: 'r.raw' })] },
    ]);
    expect(r.ours).toEqual(r.theirs);
    expect(r.theirs.runs[0]!.stderr).toContain('Compression is not supported for underlying format: raw');
  }, 20_000);
});

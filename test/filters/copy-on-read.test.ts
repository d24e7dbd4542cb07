/**
 * The copy-on-read filter against qemu-io 7.2: reads through it over a
 * three-image chain (base: 0-64k, mid: 64k-128k, top: 192k-256k) copy into
 * top what it lacks, everything or only what comes from the chain down to
 * `bottom`; writes pass through. The same command lines run through both
 * tools, then `qemu-img map` of every image and `qemu-img check` of top must
 * agree.
 *
 *   copy-on-read ─file→ top ─backing→ mid ─backing→ base
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, hasQemu } from '../cli/harness.js';
import { runBoth, type Step } from './differential.js';

const chain = {
  driver: 'qcow2',
  'node-name': 'top',
  file: { driver: 'file', filename: 'top.qcow2' },
  backing: {
    driver: 'qcow2',
    'node-name': 'mid',
    file: { driver: 'file', filename: 'mid.qcow2' },
    backing: { driver: 'qcow2', 'node-name': 'base', file: { driver: 'file', filename: 'base.qcow2' } },
  },
};
const cor = (extra: Record<string, unknown> = {}) => `json:${JSON.stringify({ driver: 'copy-on-read', ...extra, file: chain })}`;
const maps: Step[] = ['top', 'mid', 'base'].map((n) => ({ tool: 'img', args: ['map', '--output=json', '-U', `${n}.qcow2`] }));

const CASES: Array<{ name: string; io: string[]; extra?: Record<string, unknown> }> = [
  { name: 'reads copy everything top lacks', io: ['read -P 1 0 64k', 'read -P 2 64k 64k', 'read -P 0 128k 64k', 'read -P 3 192k 64k'] },
  { name: 'unaligned reads copy whole clusters', io: ['read -P 1 1000 3000', 'read -P 2 100000 50'] },
  { name: 'bottom mid: data of mid is copied, data of base is not', io: ['read -P 1 0 64k', 'read -P 2 64k 64k', 'read -P 1 0 64k'], extra: { bottom: 'mid' } },
  { name: 'bottom base: the whole chain is copied', io: ['read -P 1 0 64k', 'read -P 2 64k 64k'], extra: { bottom: 'base' } },
  { name: 'writes pass through and are read back', io: ['write -P 9 32k 64k', 'read -P 9 32k 64k', 'read -P 1 0 32k', 'write -z 200k 4k', 'read -P 0 200k 4k'] },
];

describe.skipIf(!hasQemu())('copy-on-read filter vs qemu-io 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f qcow2 base.qcow2 1M');
      sh(`qemu-io -c 'write -P 1 0 64k' base.qcow2 >/dev/null`);
      sh('qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2');
      sh(`qemu-io -c 'write -P 2 64k 64k' mid.qcow2 >/dev/null`);
      sh('qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2');
      sh(`qemu-io -c 'write -P 3 192k 64k' top.qcow2 >/dev/null`);
    });
  });
  afterAll(() => fx.dispose());

  for (const c of CASES) {
    it(c.name, async () => {
      const io: Step = { tool: 'io', args: [...c.io.flatMap((cmd) => ['-c', cmd]), cor(c.extra)] };
      const r = await runBoth(fx, [io, ...maps], { check: ['top.qcow2'] });
      expect(r.ours).toEqual(r.theirs);
      expect(r.theirs.runs[0]!.code).toBe(0);
    }, 20_000);
  }

  it('refuses a bottom node that does not exist, as QEMU', async () => {
    const r = await runBoth(fx, [{ tool: 'io', args: ['-c', 'read 0 4k', cor({ bottom: 'nope' })] }]);
    expect(r.ours).toEqual(r.theirs);
    expect(r.theirs.runs[0]!.stderr).toContain("Bottom node 'nope' not found");
  }, 20_000);
});

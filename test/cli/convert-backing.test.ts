/**
 * `img convert` with a backing file for the target (iotests 019 / 122 use
 * -B): qemu-img 7.2 wants the backing format too, from -F or from
 * `-o backing_fmt`, and checks it after opening the sources; -o lists are
 * read as QemuOpts (bare keys are booleans) and their errors carry no file
 * name. Golden against qemu-img 7.2, images compared where both write one.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden, ours, theirs, words } from './harness.js';

describe('img convert -B / -o backing_file vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f qcow2 b.qcow2 4M');
      sh(`qemu-io -c 'write -P 1 0 64k' -c 'write -P 5 1M 64k' b.qcow2 >/dev/null`);
      sh('qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 s.qcow2');
      sh(`qemu-io -c 'write -P 2 64k 64k' -c 'write -P 1 1M 64k' s.qcow2 >/dev/null`);
    });
  });
  afterAll(() => fx.dispose());

  const cases: Array<[line: string, writes: boolean]> = [
    ['convert -O qcow2 -B b.qcow2 s.qcow2 o.qcow2', false],
    ['convert -O qcow2 -B b.qcow2 nosuch.qcow2 o.qcow2', false],
    ['convert -O raw -B b.qcow2 nosuch.qcow2 o.qcow2', false],
    ['convert -O raw -B b.qcow2 s.qcow2 o.qcow2', false],
    ['convert -O qcow2 -B b.qcow2 -o cluster_size=x s.qcow2 o.qcow2', false],
    ['convert -O qcow2 -o backing_file=b.qcow2 s.qcow2 o.qcow2', false],
    ['convert -O qcow2 -B b.qcow2 -o backing_fmt=qcow2 s.qcow2 o.qcow2', true],
    ['convert -O qcow2 -o backing_file=b.qcow2,backing_fmt=qcow2 s.qcow2 o.qcow2', true],
    ['convert -O qcow2 -B b.qcow2 -F qcow2 s.qcow2 o.qcow2', true],
    ['convert -O qcow2 -o lazy_refcounts,cluster_size=0x1000 s.qcow2 o.qcow2', true],
  ];
  for (const [line, writes] of cases) {
    it(`img ${line}`, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line), ...(writes ? { sameImages: ['o.qcow2'] } : {}) });
      expect(g.ours).toEqual(g.theirs);
      expect(g.imageDiffs).toEqual([]);
    });
  }

  it('img info of the -B target names the backing file and format as qemu-img made them', async () => {
    const dq = fx.copy();
    const dd = fx.copy();
    const args = words('convert -O qcow2 -B b.qcow2 -F qcow2 s.qcow2 o.qcow2');
    expect(theirs('img', args, dq).code).toBe(0);
    expect((await ours('img', args, dd)).code).toBe(0);
    const info = words('info --output=json o.qcow2');
    const q = theirs('img', info, dq);
    const d = theirs('img', info, dd);
    const pick = (t: string) => {
      const j = JSON.parse(t) as Record<string, unknown>;
      return [j['backing-filename'], j['backing-filename-format'], j['virtual-size']];
    };
    expect(pick(d.stdout)).toEqual(pick(q.stdout));
    expect(pick(q.stdout)).toEqual(['b.qcow2', 'qcow2', 4 * 2 ** 20]);
  });
});

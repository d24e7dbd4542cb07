/**
 * Format names qemu-img knows without being able to create or amend with
 * them (bochs, cloop, throttle, ...) against names it does not know, in every
 * command that looks a target format up (create, convert, dd, measure, amend
 * help), and convert's checks of -C (copy offloading) against -S, -c and
 * --salvage, in qemu-img's order. Golden: same lines, same exit code.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden, words } from './harness.js';
import { qemuOnlyDriver, qemuOnlyDriverNames } from '../../src/core/qemu-drivers.js';
import { FOREIGN_FORMATS } from '../../src/core/probe-foreign.js';

describe('format names vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => sh('qemu-img create -q -f qcow2 s.qcow2 1M'));
  });
  afterAll(() => fx.dispose());

  // Every name QEMU has without creation, and one it does not have.
  const noCreate = qemuOnlyDriverNames().filter((n) => !qemuOnlyDriver(n)!.create);
  for (const fmt of [...noCreate, 'nosuch']) {
    it(`img create / amend help with -f ${fmt}`, async () => {
      for (const line of [`create -f ${fmt} o.img 1M`, `create -f ${fmt} -o help`, `amend -f ${fmt} -o help`]) {
        const g = await golden(fx, { tool: 'img', args: words(line) });
        expect(g.ours, line).toEqual(g.theirs);
      }
    });
  }

  const lines = [
    'convert -O bochs s.qcow2 o.img',
    'convert -O bochs -o help',
    'convert -O vvfat -o help s.qcow2 o.img',
    'convert -O nosuch s.qcow2 o.img',
    'dd -O bochs if=s.qcow2 of=o.img',
    'dd -O nosuch if=s.qcow2 of=o.img',
    'measure -O bochs s.qcow2',
    'measure -O cloop --size 1M',
    'measure -O nosuch --size 1M',
    'amend -f vmdk -o help',
    'amend -f qed -o help',
    // convert -C (082) and the checks around it, in qemu-img's order.
    'convert -C -S 4k -O qcow2 s.qcow2 t.qcow2',
    'convert -C -S 0 -O qcow2 s.qcow2 t.qcow2',
    'convert -C -c -O qcow2 s.qcow2 t.qcow2',
    'convert -C --salvage -O qcow2 s.qcow2 t.qcow2',
    'convert -C -c -S 4k --salvage s.qcow2 t.qcow2',
    'convert -C -c --skip-broken-bitmaps s.qcow2 t.qcow2',
    'convert -C -c --target-image-opts s.qcow2 t.qcow2',
    'convert --target-image-opts s.qcow2 t.qcow2',
    'convert -C --salvage -n -o cluster_size=4k s.qcow2 t.qcow2',
    'convert -n -o cluster_size=4k --target-is-zero s.qcow2 t.qcow2',
    'convert -C -T bogus s.qcow2 t.qcow2',
    'convert -T bogus -O qcow2 -o help',
    'convert -T bogus s.qcow2',
    'convert -C -O qcow2 s.qcow2 t.qcow2',
  ];
  for (const line of lines) {
    it(`img ${line}`, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
    });
  }

  it('img convert -t with an unknown mode creates the target, then fails', async () => {
    const g = await golden(fx, { tool: 'img', args: words('convert -t bogus -O qcow2 s.qcow2 t.qcow2'), sameImages: ['t.qcow2'] });
    expect(g.ours).toEqual(g.theirs);
    expect(g.imageDiffs).toEqual([]);
  });

  it('every format the probe recognises is one of QEMU\'s drivers', () => {
    for (const f of FOREIGN_FORMATS) expect(qemuOnlyDriver(f.name), f.name).toBeDefined();
    expect(qemuOnlyDriver('toString')).toBeUndefined();
  });
});

/**
 * qemu-img commands on vpc images that the driver does not implement, or
 * implements through the generic layer, against qemu-img 7.2: option help,
 * convert / dd to vpc (same files but for timestamp, UUID and checksum),
 * measure, amend, resize, check, snapshots, commit, rebase, compare.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, golden, hasQemu, ours, theirs, words } from '../../cli/harness.js';
import { expectValidChecksums, maskVolatile } from './helpers.js';

function build(_dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f vpc a.vhd 10000001 && qemu-io -f vpc -c "write -P 3 1M 3M" a.vhd > /dev/null');
  sh('qemu-img create -q -f qcow2 s.qcow2 5M && qemu-io -c "write -P 4 0 1M" -c "write -z 2M 1M" s.qcow2 > /dev/null');
  sh('qemu-img create -q -f vpc -o subformat=fixed f.vhd 3M');
}

const LINES = [
  'create -f vpc -o help',
  'create -f vpc -o help x.vhd',
  'measure -O vpc --size 1M',
  'amend -f vpc -o subformat=fixed a.vhd',
  'amend -f vpc -o help',
  'resize a.vhd 20M',
  'resize -f vpc f.vhd 4M',
  'check a.vhd',
  'snapshot -l a.vhd',
  'snapshot -c s1 a.vhd',
  'commit a.vhd',
  'rebase -u -b s.qcow2 -F qcow2 a.vhd',
  'create -f vpc -b s.qcow2 -F qcow2 bk.vhd',
  'compare a.vhd a.vhd',
  'compare -f vpc -F qcow2 a.vhd s.qcow2',
  'convert -O vpc -c s.qcow2 cc.vhd',
];

/** Commands that write a vpc image: the image must match qemu-img's but for its volatile footer fields. */
const WRITERS: Array<[string, string]> = [
  ['convert -O vpc s.qcow2 c.vhd', 'c.vhd'],
  ['convert -O vpc -o subformat=fixed s.qcow2 cf.vhd', 'cf.vhd'],
  ['convert -O vpc -o force_size=on s.qcow2 cs.vhd', 'cs.vhd'],
  ['convert -f vpc -O vpc a.vhd aa.vhd', 'aa.vhd'],
  ['dd -O vpc if=s.qcow2 of=dd.vhd', 'dd.vhd'],
];

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('qemu-img commands on vpc images', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  });
  afterAll(() => fx.dispose());

  for (const line of LINES) {
    it(`img ${line}`, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line), sameImages: ['a.vhd', 'f.vhd'] });
      expect(g.ours).toEqual(g.theirs);
      expect(g.imageDiffs).toEqual([]);
    });
  }

  for (const [line, out] of WRITERS) {
    it(`img ${line}`, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      const g = await golden(fx, { tool: 'img', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
      // Run again in known directories to compare the files.
      expect(theirs('img', words(line), dq).code).toBe(0);
      expect((await ours('img', words(line), dd)).code).toBe(0);
      const q = readFileSync(join(dq, out));
      const o = readFileSync(join(dd, out));
      expectValidChecksums(o);
      expect(o.length).toBe(q.length);
      expect(maskVolatile(o).equals(maskVolatile(q)), `${out} differs`).toBe(true);
    });
  }
});

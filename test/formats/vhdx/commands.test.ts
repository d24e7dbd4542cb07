/**
 * qemu-img commands on vhdx images against qemu-img 7.2: info (human and
 * JSON), map, check, compare, convert to raw and to vhdx (the vhdx made the
 * same as qemu-img's but for GUIDs, sequence numbers and checksums), dd,
 * and what the driver does not do (resize, snapshots, amend, backing files).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, golden, hasQemu, ours, theirs, words } from '../../cli/harness.js';
import { expectSameRaw, expectValidChecksums, maskVolatile } from './helpers.js';

function build(_dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f vhdx a.vhdx 50000000 && qemu-io -c "write -P 3 1M 3M" -c "write -P 4 17M 100k" -c "write -z 30M 1M" a.vhdx > /dev/null');
  sh('qemu-img create -q -f vhdx -o subformat=fixed f.vhdx 10M && qemu-io -c "write -P 5 2M 1M" f.vhdx > /dev/null');
  sh('qemu-img create -q -f vhdx -o subformat=fixed,block_state_zero=off p.vhdx 10M');
  sh('qemu-img create -q -f vhdx -o block_size=1M,log_size=3M s.vhdx 5M && qemu-io -c "write -P 6 0 5M" s.vhdx > /dev/null');
  sh('qemu-img create -q -f vhdx e.vhdx 0');
  sh('qemu-img create -q -f qcow2 q.qcow2 20M && qemu-io -c "write -P 7 0 1M" -c "write -z 2M 1M" -c "write -P 8 9M 5M" q.qcow2 > /dev/null');
  // Truncated: its last block runs past the end of the file; in the middle of a BAT entry.
  sh('cp a.vhdx t.vhdx && truncate -s 20M t.vhdx');
  sh('cp a.vhdx u.vhdx && truncate -s 2097164 u.vhdx');
}

const LINES = [
  'info a.vhdx',
  'info --output=json a.vhdx',
  'info -f vhdx f.vhdx',
  'info --output=json p.vhdx',
  'info s.vhdx',
  'info e.vhdx',
  'info t.vhdx',
  'map a.vhdx',
  'map --output=json a.vhdx',
  'map --output=json f.vhdx',
  'map --output=json e.vhdx',
  'check a.vhdx',
  'check --output=json a.vhdx',
  'check f.vhdx',
  'check t.vhdx',
  'check --output=json t.vhdx',
  'check -r all t.vhdx',
  'check -r leaks s.vhdx',
  'compare a.vhdx a.vhdx',
  'compare a.vhdx f.vhdx',
  'compare -s a.vhdx s.vhdx',
  'compare q.qcow2 s.vhdx',
  'measure -O vhdx --size 1G',
  'create -f vhdx -o help',
  'amend -f vhdx -o block_size=1M a.vhdx',
  'resize a.vhdx 60M',
  'snapshot -l a.vhdx',
  'snapshot -c s1 a.vhdx',
  'create -f vhdx -b q.qcow2 -F qcow2 bk.vhdx',
  'rebase -u -b q.qcow2 -F qcow2 a.vhdx',
  'commit a.vhdx',
  'convert -O raw t.vhdx t.raw',
  'info u.vhdx',
  'check u.vhdx',
];

/** Commands that write a vhdx image: the image must match qemu-img's but for GUIDs, sequence numbers and checksums. */
const WRITERS: Array<[string, string]> = [
  ['convert -O vhdx q.qcow2 c.vhdx', 'c.vhdx'],
  ['convert -O vhdx -o subformat=fixed q.qcow2 cf.vhdx', 'cf.vhdx'],
  ['convert -O vhdx -o block_size=1M,block_state_zero=off q.qcow2 cb.vhdx', 'cb.vhdx'],
  ['convert -O vhdx -o subformat=fixed,block_state_zero=off q.qcow2 cp.vhdx', 'cp.vhdx'],
  ['convert -f vhdx -O vhdx a.vhdx aa.vhdx', 'aa.vhdx'],
  ['convert -O vhdx -S 0 s.vhdx ss.vhdx', 'ss.vhdx'],
  ['dd -O vhdx if=q.qcow2 of=dd.vhdx', 'dd.vhdx'],
];

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('qemu-img commands on vhdx images', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  });
  afterAll(() => fx.dispose());

  for (const line of LINES) {
    it(`img ${line}`, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
    });
  }

  for (const image of ['a.vhdx', 'f.vhdx', 'p.vhdx', 's.vhdx', 'e.vhdx']) {
    it(`img convert -O raw ${image}: the same bytes`, async () => {
      await expectSameRaw(fx.copy(), image);
    });
  }

  for (const [line, out] of WRITERS) {
    it(`img ${line}`, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      const g = await golden(fx, { tool: 'img', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
      expect(theirs('img', words(line), dq).code).toBe(0);
      expect((await ours('img', words(line), dd)).code).toBe(0);
      const q = readFileSync(join(dq, out));
      const o = readFileSync(join(dd, out));
      expectValidChecksums(o);
      expect(o.length).toBe(q.length);
      expect(maskVolatile(o).equals(maskVolatile(q)), `${out} differs`).toBe(true);
      const c = theirs('img', ['check', out], dd);
      expect(c.code, c.stdout + c.stderr).toBe(0);
    });
  }
});

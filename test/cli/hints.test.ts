/**
 * The advice lines qemu-img / qemu-io 7.2 print after some errors (QEMU's
 * error hints): a snapshot table that is too big or has too much extra data
 * (on open, and in check, which opens without the table and reports it), the
 * size suffix help after a bad size in resize / create / amend / convert, and
 * resize's hex-with-suffix warning. Golden: same lines, same exit code.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { Fixture, golden, words } from './harness.js';

const POKE = join(__dirname, 'snapshot-table.cjs');

describe('error hints vs qemu-img / qemu-io 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f qcow2 extra.qcow2 1M');
      sh(`node ${POKE} extra extra.qcow2 3 2048`);
      sh('qemu-img create -q -f qcow2 extra2.qcow2 1M');
      sh(`node ${POKE} extra extra2.qcow2 1 1025`);
      sh('qemu-img create -q -f qcow2 big.qcow2 1M');
      sh(`node ${POKE} big big.qcow2 520`);
      sh('qemu-img create -q -f qcow2 ok.qcow2 1M');
      sh('qemu-img create -q -f raw ok.raw 1M');
    });
  }, 60_000);
  afterAll(() => fx.dispose());

  const img = [
    'info extra.qcow2',
    'info extra2.qcow2',
    'info big.qcow2',
    'info --output=json big.qcow2',
    'check extra.qcow2',
    'check -r leaks extra.qcow2',
    'check --output=json extra.qcow2',
    'check big.qcow2',
    'check -r leaks big.qcow2',
    'convert -O raw big.qcow2 out.raw',
    'compare ok.qcow2 extra.qcow2',
    'map big.qcow2',
    'amend -o lazy_refcounts=on extra.qcow2',
    'create -f qcow2 -b big.qcow2 -F qcow2 top.qcow2',
    // Sizes: the suffix help after a bad one; hex with a suffix warned about.
    'resize ok.qcow2 1x',
    'resize ok.qcow2 +1x',
    'resize ok.qcow2 -- -1x',
    'resize ok.raw 0x100k',
    'resize ok.qcow2 0x200k',
    'resize ok.qcow2 18E',
    'resize ok.qcow2 16E',
    'resize ok.qcow2 8E',
    'resize ok.raw 15E',
    'resize ok.qcow2 0xffffffffffffffffk',
    'create -f qcow2 -o size=18E o.qcow2',
    'create -f qcow2 -o size=1x o.qcow2',
    'create -f qcow2 o.qcow2 1x',
    'amend -o size=1x ok.qcow2',
    'convert -O qcow2 -o cluster_size=1x ok.qcow2 o.qcow2',
  ];
  for (const line of img) {
    it(`img ${line}`, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
    });
  }

  const io = ['-c \'read 0 512\' big.qcow2', '-c \'read 0 512\' extra.qcow2', '-c \'open extra.qcow2\' -c \'read 0 512\''];
  for (const line of io) {
    it(`io ${line}`, async () => {
      const g = await golden(fx, { tool: 'io', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
    });
  }
});

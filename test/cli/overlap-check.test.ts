/**
 * qcow2's overlap-check option against qemu-io 7.2: the templates (none,
 * constant, cached, all) and the per-kind switches, at open and at reopen,
 * decide which metadata a write is checked against. The image is made so
 * that the next allocation lands on a table: a snapshot's L2 table (only
 * `inactive-l2` sees it, and reading it needs the snapshot's L1 table to be
 * valid) or the active L2 table (`cached` sees it, `constant` and `none` do
 * not). Same output, exit code and resulting image as qemu-io.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { Fixture, golden, words } from './harness.js';

const poke = (args: string) => `node ${JSON.stringify(join(__dirname, 'poke-qcow2.cjs'))} ${args}`;

describe('overlap-check vs qemu-io 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      // Cluster 4 is the first L2 table; after the snapshot and a rewrite it is the snapshot's only.
      sh('qemu-img create -q -f qcow2 snap.qcow2 4M');
      sh("qemu-io -c 'write -P 1 0 64k' snap.qcow2");
      sh('qemu-img snapshot -c s1 snap.qcow2');
      sh("qemu-io -c 'write -P 2 0 64k' snap.qcow2");
      sh(poke('refcount snap.qcow2 4 0'));
      // The same with the snapshot's L1 table offset made unaligned (080's case).
      sh('cp snap.qcow2 badl1.qcow2');
      sh("off=$(od -An -j64 -N8 -tx8 --endian=big badl1.qcow2 | tr -d ' '); printf '\\000\\000\\000\\000\\000\\001\\002\\000' | dd of=badl1.qcow2 bs=1 seek=$((0x$off)) conv=notrunc status=none");
      // The active L2 table (cluster 4) with refcount 0.
      sh('qemu-img create -q -f qcow2 active.qcow2 4M');
      sh("qemu-io -c 'write -P 1 0 64k' active.qcow2");
      sh(poke('refcount active.qcow2 4 0'));
    });
  });
  afterAll(() => fx.dispose());

  const w = "-c 'write -P 9 1M 64k' -c 'read -P 9 1M 64k'";
  const lines = [
    `${w} snap.qcow2`,
    `-c 'open -o overlap-check.inactive-l2=on snap.qcow2' ${w}`,
    `-c 'open -o overlap-check=all snap.qcow2' ${w}`,
    `-c 'open -o overlap-check.template=all,overlap-check.inactive-l2=off snap.qcow2' ${w}`,
    `-c 'reopen -o overlap-check.inactive-l2=on' ${w} snap.qcow2`,
    `-c 'open -o overlap-check.inactive-l2=on badl1.qcow2' ${w}`,
    `-c 'open -o overlap-check=all badl1.qcow2' -c 'read -P 1 0 64k'`,
    `${w} active.qcow2`,
    `-c 'open -o overlap-check=constant active.qcow2' ${w}`,
    `-c 'open -o overlap-check=none active.qcow2' ${w}`,
    `-c 'open -o overlap-check.active-l2=off active.qcow2' ${w}`,
    `-c 'open -o overlap-check.template=none,overlap-check.active-l2=on active.qcow2' ${w}`,
    `-c 'reopen -o overlap-check=none' ${w} active.qcow2`,
    `-c 'open -o overlap-check=some active.qcow2'`,
    `-c 'open -o overlap-check.template=some active.qcow2'`,
    `-c 'open -o overlap-check.active-l2=maybe active.qcow2'`,
  ];
  for (const line of lines) {
    it(`io ${line}`, async () => {
      const g = await golden(fx, { tool: 'io', args: words(line), sameImages: ['snap.qcow2', 'badl1.qcow2', 'active.qcow2'] });
      expect(g.ours).toEqual(g.theirs);
      expect(g.imageDiffs).toEqual([]);
    });
  }
});

/**
 * The other qemu-img / qemu-io commands on vmdk images, through qemu-img /
 * qemu-io 7.2 and diskworker on copies of the same images: commit into a
 * vmdk parent, rebase, resize, amend, snapshot, measure, convert -c, bench,
 * qemu-io's info and the COW of a partial write over a parent. Same lines,
 * same exit codes, and the images read the same afterwards.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden, hasQemu, words } from '../../cli/harness.js';
import { ioLine, maskInfo } from './helpers.js';

function build(_dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f vmdk base.vmdk 2M');
  sh(`qemu-io ${ioLine(['write -P 0x33 0 2M'], 'base.vmdk')} >/dev/null`);
  sh('qemu-img create -q -f vmdk -b base.vmdk -F vmdk over.vmdk');
  sh(`qemu-io ${ioLine(['write -P 0x44 70000 100000'], 'over.vmdk')} >/dev/null`);
  sh('qemu-img create -q -f vmdk -o subformat=monolithicFlat flat.vmdk 1M');
  sh('qemu-img create -q -f raw plain.raw 1M');
  sh('qemu-img create -q -f vmdk -o subformat=streamOptimized stream.vmdk 1M');
  sh('qemu-img create -q -f vmdk -o subformat=streamOptimized stream2.vmdk 2M');
}

const CASES: Array<[string, string, 'img' | 'io', string[]]> = [
  // The overlay no longer reads afterwards in either tool: the parent's CID changed (QEMU's check).
  ['commit into the vmdk parent', 'commit over.vmdk', 'img', ['base.vmdk']],
  ['commit -d', 'commit -d over.vmdk', 'img', ['base.vmdk']],
  ['rebase -u (vmdk cannot change its backing file)', 'rebase -u -b plain.raw -F raw over.vmdk', 'img', ['over.vmdk']],
  ['resize', 'resize over.vmdk 4M', 'img', ['over.vmdk']],
  ['amend', 'amend -o zeroed_grain=on over.vmdk', 'img', ['over.vmdk']],
  ['snapshot -c', 'snapshot -c s1 over.vmdk', 'img', ['over.vmdk']],
  ['snapshot -l', 'snapshot -l over.vmdk', 'img', ['over.vmdk']],
  ['measure', 'measure -O vmdk --size 1G', 'img', []],
  ['convert -c to monolithicSparse (no compressed writes)', 'convert -c -O vmdk over.vmdk c.vmdk', 'img', []],
  ['convert -n into a smaller streamOptimized image', 'convert -n -c -O vmdk over.vmdk stream.vmdk', 'img', ['stream.vmdk']],
  ['convert -n into a streamOptimized image (compressed without -c)', 'convert -n -O vmdk base.vmdk stream2.vmdk', 'img', ['stream2.vmdk']],
  ['convert -B onto the vmdk parent', 'convert -O vmdk -B base.vmdk -F vmdk over.vmdk b.vmdk', 'img', ['b.vmdk']],
  ['bench of writes', 'bench -w -c 20 -s 4k -o 0 -S 64k over.vmdk', 'img', ['over.vmdk']],
  ['dd out of the overlay', 'dd if=over.vmdk of=dd.raw bs=64k count=10 -O raw', 'img', ['dd.raw']],
  ['qemu-io info', ioLine(['info'], 'over.vmdk'), 'io', []],
  ['COW of partial writes over the parent', ioLine(['write -P 0x55 200k 1000', 'write -z 300k 512', 'read -v 199k 16', 'read -P 0x33 0 64k', 'map'], 'over.vmdk'), 'io', ['over.vmdk']],
  ['writes to a flat image', ioLine(['write -P 0x66 1000 5000', 'write -z 0 64k', 'read -v 900 200'], 'flat.vmdk'), 'io', ['flat.vmdk']],
  ['the parent changed under the overlay (CID mismatch)', ioLine(['read 0 64k'], 'over.vmdk'), 'io', []],
];

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('other commands on vmdk images, as qemu-img / qemu-io', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  }, 60_000);
  afterAll(() => fx.dispose());

  for (const [what, line, tool, images] of CASES) {
    it(what, async () => {
      const g = await golden(fx, { tool, args: words(tool === 'io' ? line : line), sameImages: images });
      const mask = (r: typeof g.ours) => ({ ...r, stdout: maskInfo(r.stdout) });
      expect(mask(g.ours)).toEqual(mask(g.theirs));
      expect(g.imageDiffs).toEqual([]);
    });
  }
});

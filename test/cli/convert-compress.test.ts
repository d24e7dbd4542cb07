/**
 * `img convert` cases of iotest 122 against qemu-img 7.2: compression of
 * images whose sizes are not multiples of the target cluster size (one
 * source, and several concatenated sources whose boundaries fall inside a
 * target cluster), for several cluster sizes; -S 0 with and without -c and
 * with a source backing file (every cluster written, compressed with -c);
 * -B with several sources (refused before the backing format is looked at);
 * -n into an image that has a backing file of its own (not a target backing
 * file for convert: zeros are written, as zero clusters or, in a v2 image,
 * as data). Same output and exit code, and the targets have the same
 * contents, allocation map and file length (a compressed target's file ends
 * on a sector boundary); qemu-img check finds ours clean.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, golden, hasQemu, theirs, words } from './harness.js';

/** `qemu-io -c` writes of pattern `p` at each [offset, length] (in KiB). */
const writes = (file: string, ws: Array<[number, number, number]>) =>
  `qemu-io ${ws.map(([p, o, l]) => `-c 'write -P ${p} ${o}k ${l}k'`).join(' ')} ${file} >/dev/null`;

describe.runIf(hasQemu())('img convert (iotest 122 cases) vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      // 122's misaligned case: two 1023k sources with 1k clusters.
      sh('qemu-img create -q -f qcow2 -o cluster_size=1024 m1.qcow2 1023k');
      sh('qemu-img create -q -f qcow2 -o cluster_size=1024 m2.qcow2 1023k');
      sh(writes('m1.qcow2', [[0x11, 16, 16], [0x22, 130, 130], [0x33, 1022, 1]]));
      sh(writes('m2.qcow2', [[0x44, 0, 1]]));
      // Odd sizes: a raw source of 100k + 3 sectors with data up to its end, and a small one.
      sh('qemu-img create -q -f raw odd.raw 103936');
      sh(writes('odd.raw', [[0x55, 0, 4], [0x66, 96, 5]]));
      sh('qemu-img create -q -f raw tiny.raw 1536');
      sh("qemu-io -f raw -c 'write -P 0x77 512 1024' tiny.raw >/dev/null");
      // -S 0 sources: data, explicit zeros, a backing file.
      sh('qemu-img create -q -f qcow2 s.qcow2 8M');
      sh(writes('s.qcow2', [[0x22, 0, 1024], [0, 1024, 1024]]));
      sh('qemu-img create -q -f qcow2 base.qcow2 8M');
      sh(writes('base.qcow2', [[0x11, 0, 4096]]));
      sh('qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 8M');
      sh(writes('top.qcow2', [[0x22, 0, 1024]]));
      // -n targets with a backing file of their own.
      sh('qemu-img create -q -f qcow2 empty.qcow2 8M');
      sh('qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 n11.qcow2 8M');
      sh('qemu-img create -q -f qcow2 -o compat=0.10 -b base.qcow2 -F qcow2 n010.qcow2 8M');
    });
  });
  afterAll(() => fx.dispose());

  const cases: Array<[line: string, target: string]> = [
    ['convert -c -O qcow2 m1.qcow2 m2.qcow2 out.qcow2', 'out.qcow2'],
    ['convert -c -O qcow2 -o cluster_size=4k m1.qcow2 m2.qcow2 out.qcow2', 'out.qcow2'],
    ['convert -c -O qcow2 -o cluster_size=1k m1.qcow2 m2.qcow2 out.qcow2', 'out.qcow2'],
    ['convert -c -O qcow2 -o cluster_size=2M m1.qcow2 m2.qcow2 out.qcow2', 'out.qcow2'],
    ['convert -c -O qcow2 odd.raw out.qcow2', 'out.qcow2'],
    ['convert -c -O qcow2 -o cluster_size=8k odd.raw tiny.raw out.qcow2', 'out.qcow2'],
    ['convert -c -O qcow2 -o cluster_size=4k tiny.raw odd.raw tiny.raw out.qcow2', 'out.qcow2'],
    ['convert -c -O qcow2 -o cluster_size=512 odd.raw m2.qcow2 out.qcow2', 'out.qcow2'],
    ['convert -c -O qcow2 -o compression_type=zstd,cluster_size=16k m2.qcow2 odd.raw out.qcow2', 'out.qcow2'],
    ['convert -c -S 0 -O qcow2 -o cluster_size=4k odd.raw tiny.raw out.qcow2', 'out.qcow2'],
    ['convert -S 0 -O qcow2 s.qcow2 out.qcow2', 'out.qcow2'],
    ['convert -c -S 0 -O qcow2 s.qcow2 out.qcow2', 'out.qcow2'],
    ['convert -S 0 -O qcow2 top.qcow2 out.qcow2', 'out.qcow2'],
    ['convert -c -S 0 -O qcow2 top.qcow2 out.qcow2', 'out.qcow2'],
    ['convert -S 0 -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 out.qcow2', 'out.qcow2'],
    ['convert -c -S 0 -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 out.qcow2', 'out.qcow2'],
    ['convert -n -O qcow2 empty.qcow2 n11.qcow2', 'n11.qcow2'],
    ['convert -n -O qcow2 empty.qcow2 n010.qcow2', 'n010.qcow2'],
  ];
  for (const [line, target] of cases) {
    it(line, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line), sameImages: [target] });
      expect(g.ours).toEqual(g.theirs);
      expect(g.ours.code).toBe(0);
      expect(g.imageDiffs).toEqual([]);
    });
  }

  it('compressed targets of misaligned sources read back as the sources and check clean', async () => {
    const dir = fx.copy();
    const { ours } = await import('./harness.js');
    const r = await ours('img', words('convert -c -O qcow2 -o cluster_size=8k odd.raw tiny.raw m2.qcow2 out.qcow2'), dir);
    expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
    // The concatenation, made by qemu-img without compression, is the reference content.
    expect(theirs('img', words('convert -O raw odd.raw tiny.raw m2.qcow2 ref.raw'), dir).code).toBe(0);
    const cmp = spawnSync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', join(dir, 'out.qcow2'), join(dir, 'ref.raw')], { encoding: 'utf8' });
    expect(cmp.stdout).toBe('Images are identical.\n');
    const chk = theirs('img', ['check', 'out.qcow2'], dir);
    expect(chk.stdout).toContain('No errors were found on the image.');
    expect(chk.code).toBe(0);
  });

  it.each(['512', '4k', '64k'])('convert -c with %s clusters leaves a file as long as qemu-img does (sector aligned)', async (cs) => {
    const dq = fx.copy();
    const dd = fx.copy();
    const { ours } = await import('./harness.js');
    const line = words(`convert -c -O qcow2 -o cluster_size=${cs} odd.raw tiny.raw out.qcow2`);
    expect(theirs('img', line, dq).code).toBe(0);
    expect((await ours('img', line, dd)).code).toBe(0);
    const len = (d: string) => statSync(join(d, 'out.qcow2')).size;
    expect(len(dd)).toBe(len(dq));
    expect(len(dd) % 512).toBe(0);
  });

  const refused = [
    'convert -O qcow2 -B base.qcow2 m1.qcow2 m2.qcow2 out.qcow2',
    'convert -O qcow2 -c -B base.qcow2 m1.qcow2 m2.qcow2 out.qcow2',
    'convert -O qcow2 -B base.qcow2 -F qcow2 m1.qcow2 m2.qcow2 out.qcow2',
    'convert -O qcow2 -o backing_file=base.qcow2 m1.qcow2 m2.qcow2 out.qcow2',
    'convert -O qcow2 -n -B base.qcow2 m1.qcow2 m2.qcow2 n11.qcow2',
    'convert -O qcow2 -B base.qcow2 m1.qcow2 out.qcow2',
  ];
  for (const line of refused) {
    it(line, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
      expect(g.ours.code).not.toBe(0);
    });
  }
});

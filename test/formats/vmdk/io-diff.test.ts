/**
 * Seeded qemu-io sessions on vmdk images of every writable kind (sparse,
 * zeroed grains, flat, split sparse, streamOptimized, an overlay over a
 * vmdk parent), run through qemu-io 7.2 and `diskworker io` on copies of
 * the same image: every printed line and the exit code must match, the
 * files must end byte-identical but for the random CID (streamOptimized:
 * the same guest bytes, zlib builds differ), and qemu-img check must find
 * ours clean.
 */
import { readdirSync } from 'node:fs';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, hasQemu, ours, theirs } from '../../cli/harness.js';
import { prng } from '../../prng.js';
import { bytesOf, ioLine, masked, MiB, norm } from './helpers.js';

function build(_dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f vmdk sparse.vmdk 3M');
  sh(`qemu-io ${ioLine(['write -P 0x5a 100k 200k'], 'sparse.vmdk')} >/dev/null`);
  sh('qemu-img create -q -f vmdk -o zeroed_grain=on zeroed.vmdk 2M');
  sh('qemu-img create -q -f vmdk -o subformat=monolithicFlat flat.vmdk 2M');
  sh('qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse split.vmdk 2M');
  sh('qemu-img create -q -f vmdk -o subformat=streamOptimized stream.vmdk 2M');
  sh('qemu-img create -q -f vmdk base.vmdk 2M');
  sh(`qemu-io ${ioLine(['write -P 0x33 0 2M'], 'base.vmdk')} >/dev/null`);
  sh('qemu-img create -q -f vmdk -b base.vmdk -F vmdk -o zeroed_grain=on over.vmdk');
  // Three extents of three kinds, the writes cross their ends: flat at an offset, sparse, flat.
  sh('head -c 700000 /dev/zero | tr "\\0" "\\21" > part-a.bin && head -c 300000 /dev/zero > part-c.bin');
  sh('qemu-img create -q -f vmdk -o zeroed_grain=on part-b.vmdk 1M');
  sh(
    `printf '# Disk DescriptorFile\\nversion=1\\nCID=12345678\\nparentCID=ffffffff\\ncreateType="twoGbMaxExtentFlat"\\n` +
      `RW 1000 FLAT "part-a.bin" 3\\nRW 2048 SPARSE "part-b.vmdk"\\nRW 500 FLAT "part-c.bin" 0\\n' > multi.vmdk`,
  );
}

/** A seeded session of `n` commands on an image of `size` bytes; `grains` keeps writes whole-grain (streamOptimized). */
function session(seed: number, size: number, n: number, grains: boolean): string[] {
  const rnd = prng(seed);
  const G = 64 * 1024;
  const range = (max: number): [number, number] => {
    if (grains) {
      const len = G * (1 + Math.floor(rnd() * Math.min(3, size / G)));
      return [G * Math.floor(rnd() * ((size - len) / G + 1)), len];
    }
    const unit = rnd() < 0.5 ? 512 : 1;
    const len = Math.max(unit, Math.floor((rnd() * Math.min(size, max)) / unit) * unit);
    return [Math.floor((rnd() * (size - len)) / unit) * unit, len];
  };
  const cmds: string[] = [];
  for (let i = 0; i < n; i++) {
    const k = rnd();
    const p = `0x${(1 + Math.floor(rnd() * 254)).toString(16)}`;
    if (k < 0.35) {
      const [o, l] = range(300 * 1024);
      cmds.push(`write -P ${p} ${o} ${l}`);
    } else if (k < 0.47) {
      const [o, l] = range(256 * 1024);
      cmds.push(`write -z ${o} ${l}`);
    } else if (k < 0.55) {
      const [o, l] = range(200 * 1024);
      const half = Math.max(1, Math.floor(l / 2));
      cmds.push(`writev -P ${p} ${o} ${half} ${l - half || 1}`);
    } else if (k < 0.65) {
      const [o, l] = range(48);
      cmds.push(`read -v ${o} ${Math.min(l, 48)}`);
    } else if (k < 0.72) {
      const [o, l] = range(MiB);
      cmds.push(`alloc ${o} ${l}`);
    } else if (k < 0.77) {
      cmds.push('map');
    } else if (k < 0.82) {
      const [o, l] = range(200 * 1024);
      cmds.push(`discard ${o} ${l}`);
    } else if (k < 0.9) {
      // One request in flight at a time: the completion order of concurrent ones is timing.
      const [o, l] = range(200 * 1024);
      cmds.push(`aio_write -P ${p} ${o} ${l}`, 'aio_flush');
    } else if (k < 0.95) {
      cmds.push('flush');
    } else {
      const [o] = range(64 * 1024);
      cmds.push(`write -c ${grains ? o : 0} 64k`);
    }
  }
  return cmds;
}

const IMAGES: Array<[string, number, boolean]> = [
  ['sparse.vmdk', 3 * MiB, false],
  ['zeroed.vmdk', 2 * MiB, false],
  ['flat.vmdk', 2 * MiB, false],
  ['split.vmdk', 2 * MiB, false],
  ['stream.vmdk', 2 * MiB, true],
  ['stream.vmdk', 2 * MiB, false],
  ['over.vmdk', 2 * MiB, false],
  ['multi.vmdk', (1000 + 2048 + 500) * 512, false],
];

it('compares against qemu-io 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('seeded qemu-io sessions on vmdk images: same lines, same bytes', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  }, 60_000);
  afterAll(() => fx.dispose());

  for (const [file, size, grains] of IMAGES) {
    for (const seed of [1, 2]) {
      it(`${file}${grains ? ' (whole grains)' : ''}, seed ${seed}`, async () => {
        const cmds = session(seed * 7919 + size + (grains ? 1 : 0), size, 20, grains);
        const args = ['-f', 'vmdk', ...cmds.flatMap((c) => ['-c', c]), file];
        const dq = fx.copy();
        const dd = fx.copy();
        const t = theirs('io', args, dq);
        const o = await ours('io', args, dd);
        expect(norm(o), cmds.join('\n')).toEqual(norm(t));
        const compressed = file.startsWith('stream');
        for (const f of readdirSync(dq).sort()) {
          if (compressed) continue;
          expect(masked(bytesOf(dd, f)).equals(masked(bytesOf(dq, f))), `${f} bytes\n${cmds.join('\n')}`).toBe(true);
        }
        theirs('img', ['convert', '-O', 'raw', file, 'q.raw'], dq);
        theirs('img', ['convert', '-O', 'raw', file, 'o.raw'], dd);
        expect(bytesOf(dd, 'o.raw').equals(bytesOf(dq, 'q.raw')), 'guest bytes').toBe(true);
        expect(theirs('img', ['check', file], dd).stdout).toBe('No errors were found on the image.\n');
      });
    }
  }
});

/**
 * vmdk images split into 2 GiB extents (twoGbMaxExtentSparse and
 * twoGbMaxExtentFlat) made by qemu-img / qemu-io 7.2, with data on both
 * sides of the extent ends: convert to raw gives qemu-img's bytes (compared
 * by qemu-img compare: gigabytes of holes), and info, map, check and
 * qemu-io's reads print what qemu-img / qemu-io print.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, hasQemu, ours, theirs, words } from '../../cli/harness.js';
import { ioLine, norm } from './helpers.js';

function build(_dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse,hwversion=7 split.vmdk 5G');
  sh(`qemu-io ${ioLine(['write -P 0x11 0 64k', 'write -P 0x22 2147418112 128k', 'write -P 0x33 4294901760 100k'], 'split.vmdk')} >/dev/null`);
  sh('qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentFlat,compat6=on splitflat.vmdk 3G');
  sh(`qemu-io ${ioLine(['write -P 0x44 2147483000 2000'], 'splitflat.vmdk')} >/dev/null`);
}

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('split vmdk images made by QEMU, read by diskworker', () => {
  let fx: Fixture;
  let dir: string;
  beforeAll(() => {
    fx = new Fixture(build);
    dir = fx.copy();
  }, 60_000);
  afterAll(() => fx.dispose());
  const both = async (tool: 'img' | 'io', line: string) => ({ theirs: norm(theirs(tool, words(line), dir)), ours: norm(await ours(tool, words(line), dir)) });

  it('split.vmdk: convert -O raw gives qemu-img\'s bytes', async () => {
    const t = theirs('img', ['convert', '-O', 'raw', 'split.vmdk', 'q.raw'], dir);
    const o = await ours('img', ['convert', '-O', 'raw', 'split.vmdk', 'o.raw'], dir);
    expect(norm(o)).toEqual(norm(t));
    // Gigabytes of holes: qemu-img compares them by block status, not byte by byte.
    expect(theirs('img', ['compare', '-f', 'raw', '-F', 'raw', 'q.raw', 'o.raw'], dir).stdout).toBe('Images are identical.\n');
  });

  for (const file of ['split.vmdk', 'splitflat.vmdk']) {
    for (const line of [`info ${file}`, `info --output=json ${file}`, `check ${file}`, `check --output=json ${file}`]) {
      it(`img ${line}`, async () => {
        const g = await both('img', line);
        expect(g.ours).toEqual(g.theirs);
      });
    }
  }

  // Flat extents are sparse host files whose holes qemu-img's map sees and Node cannot.
  for (const line of ['map split.vmdk', 'map --output=json split.vmdk']) {
    it(`img ${line}`, async () => {
      const g = await both('img', line);
      expect(g.ours).toEqual(g.theirs);
    });
  }

  it('qemu-io reads across the extent ends', async () => {
    for (const [file, cmds] of [
      ['split.vmdk', ['read -P 0x22 2147418112 128k', 'read -v 4294901750 20', 'alloc 2147418112 4M', 'map']],
      ['splitflat.vmdk', ['read -P 0x44 2147483000 2000', 'read -v 2147482990 20', 'read -P 0 2147485000 64k']],
    ] as const) {
      const g = await both('io', ioLine([...cmds], file));
      expect(g.ours, file).toEqual(g.theirs);
    }
  });
});

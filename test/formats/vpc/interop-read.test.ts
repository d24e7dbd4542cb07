/**
 * Reading VHD images made and written by qemu-img / qemu-io 7.2: the same
 * bytes through `img convert -O raw`, the same `img info` (human and JSON),
 * `img map` (human and JSON) and `io -c info` as qemu-img / qemu-io, for
 * fixed and dynamic images, sizes that CHS geometry rounds, force_size,
 * creator applications that change how the size is taken, the
 * force_size_calc open option, and differencing images (which QEMU 7.2 reads
 * as dynamic images without a parent).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, hasQemu } from '../../cli/harness.js';
import { FOOTER } from '../../../src/formats/vpc/footer.js';
import { both, expectSame, expectSameRaw, patchDynHeader, patchFooter } from './helpers.js';
import { join } from 'node:path';

/** qemu-io writes: block-crossing, unaligned, inside one block, and the last bytes. */
function writes(size: number): string {
  const cmds = [
    'write -P 0x11 0 4096',
    'write -P 0x22 2096000 10000',
    'write -P 0x33 4500001 777',
    `write -P 0x44 ${size - 1000} 1000`,
    'write -z 6000000 70000',
    'write -P 0x55 6029000 1000',
  ];
  return cmds
    .filter((c) => {
      const [off, len] = c.split(' ').slice(-2).map(Number);
      return off! + len! <= size;
    })
    .map((c) => `-c '${c}'`)
    .join(' ');
}

/** Images: name, create options, size. */
const IMAGES: Array<[string, string, number]> = [
  ['dyn1m.vhd', '', 1 << 20],
  ['dyn-chs.vhd', '', 10_000_001],
  ['dyn-odd.vhd', '', 7_654_321],
  ['fixed-chs.vhd', '-o subformat=fixed', 10_000_001],
  ['fixed5m.vhd', '-o subformat=fixed', 5 << 20],
  ['dyn-force.vhd', '-o force_size=on', 10_000_001],
  ['fixed-force.vhd', '-o subformat=fixed,force_size=on', 7_654_321],
  ['empty.vhd', '', 0],
];

/** Large images (info and map only): above 127 GiB the geometry is the largest and current_size counts. */
const LARGE: Array<[string, string]> = [
  ['g127.vhd', '127G'],
  ['g128.vhd', '128G'],
  ['g2040.vhd', '2040G'],
  ['g200-force.vhd', '200G'],
];

function build(dir: string, sh: (cmd: string) => void): void {
  for (const [name, opts, size] of IMAGES) {
    sh(`qemu-img create -q -f vpc ${opts} ${name} ${size}`);
    if (size > 0) sh(`qemu-io -f vpc ${writes(size)} ${name} > /dev/null`);
  }
  for (const [name, size] of LARGE) sh(`qemu-img create -q -f vpc ${name.includes('force') ? '-o force_size=on' : ''} ${name} ${size}`);
  sh('qemu-io -f vpc -c "write -P 0x66 100G 3M" g128.vhd > /dev/null');
  // Creator applications: a current_size 1 MiB larger than the geometry says.
  for (const app of ['vpc ', 'qemu', 'qem2', 'win ', 'd2v ', 'CTXS', 'tap\0', 'tap ']) {
    const name = `app-${app.replace('\0', '0').trim()}.vhd`;
    sh(`cp dyn-chs.vhd '${name}'`);
    patchFooter(join(dir, name), (f) => {
      f.write(app, FOOTER.creatorApp, 4, 'latin1');
      f.writeBigUInt64BE(f.readBigUInt64BE(FOOTER.currentSize) + 65536n, FOOTER.currentSize);
    });
  }
  // current_size past what the BAT covers: "Page table too small" where current_size counts.
  for (const app of ['qemu', 'win ']) {
    const name = `big-${app.trim()}.vhd`;
    sh(`cp dyn-chs.vhd '${name}'`);
    patchFooter(join(dir, name), (f) => {
      f.write(app, FOOTER.creatorApp, 4, 'latin1');
      f.writeBigUInt64BE(f.readBigUInt64BE(FOOTER.currentSize) + 1048576n, FOOTER.currentSize);
    });
  }
  // The largest geometry makes current_size count whatever the creator.
  sh('cp dyn-chs.vhd maxchs.vhd');
  patchFooter(join(dir, 'maxchs.vhd'), (f) => {
    f.writeUInt16BE(65535, FOOTER.cyls);
    f.writeUInt8(16, FOOTER.heads);
    f.writeUInt8(255, FOOTER.secsPerCyl);
  });
  // Differencing: type 4 with a parent name and a parent locator.
  sh('qemu-img create -q -f raw parent.raw 10000001 && qemu-io -f raw -c "write -P 0x77 0 1M" parent.raw > /dev/null');
  sh('cp dyn-chs.vhd diff.vhd');
  patchFooter(join(dir, 'diff.vhd'), (f) => f.writeUInt32BE(4, FOOTER.type));
  patchDynHeader(join(dir, 'diff.vhd'), (h) => {
    h.write('parent.raw', 64, 'utf16le');
    h.write('W2ru', 576, 'latin1');
    h.writeUInt32BE(512, 580);
    h.writeUInt32BE(20, 584);
    h.writeBigUInt64BE(1536n, 592);
  });
  // A fixed footer at offset 0 too: QEMU looks for a dynamic header, then does fixed I/O.
  sh('cp dyn-chs.vhd fixed-at0.vhd');
  patchFooter(join(dir, 'fixed-at0.vhd'), (f) => f.writeUInt32BE(2, FOOTER.type));
}

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('vpc images made by qemu-img: read the same as qemu-img', () => {
  let fx: Fixture;
  let dir: string;
  beforeAll(() => {
    fx = new Fixture(build);
    dir = fx.copy();
  }, 60_000);
  afterAll(() => fx.dispose());

  for (const [name] of IMAGES) {
    it(`${name}: convert -O raw, info, map, io info`, async () => {
      // Fixed images have no footer at 0: they probe as raw, so -f vpc throughout (and once probed).
      const raw = await expectSameRaw(dir, name, 'vpc');
      expect(raw.some((x) => x !== 0) || name === 'empty.vhd').toBe(true);
      for (const f of [['-f', 'vpc'], []]) {
        await expectSame('img', ['info', ...f, name], dir);
        await expectSame('img', ['info', ...f, '--output=json', name], dir);
        await expectSame('img', ['map', ...f, name], dir);
        await expectSame('img', ['map', ...f, '--output=json', name], dir);
      }
      await expectSame('io', ['-f', 'vpc', '-r', '-c', 'info', '-c', 'read -P 0x11 0 4096', name], dir);
    });
  }

  for (const [name] of LARGE) {
    it(`${name}: info and map of a large image`, async () => {
      await expectSame('img', ['info', name], dir);
      await expectSame('img', ['info', '--output=json', name], dir);
      await expectSame('img', ['map', '--output=json', name], dir);
    });
  }

  it('creator applications choose geometry or current_size as QEMU does', async () => {
    const sizes = new Set<string>();
    for (const name of ['app-vpc.vhd', 'app-qemu.vhd', 'app-qem2.vhd', 'app-win.vhd', 'app-d2v.vhd', 'app-CTXS.vhd', 'app-tap0.vhd', 'app-tap.vhd', 'maxchs.vhd']) {
      sizes.add(await expectSame('img', ['info', '--output=json', name], dir));
      await expectSame('img', ['map', '--output=json', name], dir);
      await expectSameRaw(dir, name);
    }
    // Both rules were exercised.
    expect(sizes.size).toBeGreaterThan(1);
    await expectSame('img', ['info', 'big-qemu.vhd'], dir);
    expect(await both('img', ['info', 'big-win.vhd'], dir)).toEqual({
      theirs: { code: 1, out: '', err: "diskworker img: Could not open 'big-win.vhd': Page table too small\n" },
      ours: { code: 1, out: '', err: "diskworker img: Could not open 'big-win.vhd': Page table too small\n" },
    });
  });

  it('force_size_calc=chs / current_size override the creator, an unknown mode is refused', async () => {
    for (const image of ['app-win.vhd', 'app-qemu.vhd', 'maxchs.vhd']) {
      for (const mode of ['chs', 'current_size', 'bogus']) {
        const opts = `driver=vpc,force_size_calc=${mode},file.driver=file,file.filename=${image}`;
        // QEMU names the image by its options (json:{...}: force_size_calc is a strong
        // option); we name it by its file: the rest of the output must agree.
        const r = await both('img', ['info', '--image-opts', opts], dir);
        const unnamed = (x: { out: string }) => ({ ...x, out: x.out.replace(/^image: .*$/m, 'image: <name>') });
        expect(unnamed(r.ours), opts).toEqual(unnamed(r.theirs));
        await expectSame('img', ['map', '--output=json', '--image-opts', opts], dir);
      }
    }
  });

  it('a differencing image reads as a dynamic one without parent (QEMU 7.2)', async () => {
    await expectSame('img', ['info', 'diff.vhd'], dir);
    await expectSame('img', ['info', '--output=json', 'diff.vhd'], dir);
    await expectSame('img', ['map', '--output=json', 'diff.vhd'], dir);
    const raw = await expectSameRaw(dir, 'diff.vhd');
    // The parent's data (0x77) never shows through.
    expect(raw.subarray(4096, 1 << 20).every((x) => x === 0)).toBe(true);
    await expectSame('io', ['-f', 'vpc', '-c', 'write -P 0x12 5000000 5000', '-c', 'read -P 0x12 5000000 5000', '-c', 'map', 'diff.vhd'], dir);
    await expectSameRaw(dir, 'diff.vhd');
  });

  it('a fixed footer at offset 0 of a dynamic layout: fixed I/O as QEMU', async () => {
    await expectSame('img', ['info', 'fixed-at0.vhd'], dir);
    await expectSame('img', ['map', '--output=json', 'fixed-at0.vhd'], dir);
    await expectSameRaw(dir, 'fixed-at0.vhd');
  });
});

/**
 * qemu-img create -f vmdk and convert -O vmdk, through qemu-img 7.2 and
 * diskworker in two directories: the same printed lines and exit codes,
 * the same files, byte-identical but for the random CID (streamOptimized
 * grains aside: zlib builds differ, so those compare as converted to raw),
 * and qemu-img check finds ours clean.
 */
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, hasQemu, ours, theirs } from '../../cli/harness.js';
import { prng } from '../../prng.js';
import { bytesOf, isDescriptorFile, maskInfo, masked, MiB, norm } from './helpers.js';

/** Files are compared byte for byte up to this size; past it (sparse flat extents) by length. */
const BYTE_LIMIT = 64 * MiB;

function build(dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f vmdk base.vmdk 3M');
  sh("qemu-io -f vmdk -c 'write -P 0x5a 64k 200k' base.vmdk >/dev/null");
  sh('qemu-img create -q -f raw plain.raw 1M');
  // A raw source with data, zeros and holes for convert.
  const rnd = prng(7);
  const src = Buffer.alloc(3 * MiB + 4096);
  for (let i = 0; i < 24; i++) {
    const off = Math.floor(rnd() * (src.length - 70000));
    const len = Math.floor(rnd() * 70000);
    if (rnd() < 0.8) for (let j = 0; j < len; j++) src[off + j] = Math.floor(rnd() * 256);
    else src.fill(0, off, off + len);
  }
  writeFileSync(join(dir, 'src.raw'), src);
}

/** Both directories hold the same files with the same bytes (CID masked). */
function sameFiles(dq: string, dd: string, skipBytes = false): void {
  const names = readdirSync(dq).sort();
  expect(readdirSync(dd).sort()).toEqual(names);
  for (const n of names) {
    const sq = statSync(join(dq, n)).size;
    if (skipBytes) continue;
    const descriptor = sq <= BYTE_LIMIT && isDescriptorFile(bytesOf(dq, n));
    if (!descriptor) expect(statSync(join(dd, n)).size, `${n} length`).toBe(sq);
    if (sq > BYTE_LIMIT) continue;
    const a = masked(bytesOf(dd, n));
    const b = masked(bytesOf(dq, n));
    if (!a.equals(b) && a.length < 4096) expect(a.toString('latin1'), n).toBe(b.toString('latin1'));
    expect(a.equals(b), `${n} bytes`).toBe(true);
  }
}

const CREATES: Array<[string, string]> = [
  ['monolithicSparse', '-o subformat=monolithicSparse'],
  ['default options, odd size', ''],
  ['monolithicFlat, lsilogic', '-o subformat=monolithicFlat,adapter_type=lsilogic'],
  ['buslogic adapter, hwversion 4', '-o adapter_type=buslogic,hwversion=4'],
  ['ide adapter, toolsversion', '-o adapter_type=ide,toolsversion=11333'],
  ['twoGbMaxExtentSparse over 2 GiB', '-o subformat=twoGbMaxExtentSparse,adapter_type=legacyESX'],
  ['twoGbMaxExtentFlat over 2 GiB', '-o subformat=twoGbMaxExtentFlat,hwversion=10'],
  ['streamOptimized', '-o subformat=streamOptimized,toolsversion=42'],
  ['zeroed grains, compat6', '-o zeroed_grain=on,compat6=on'],
  ['backing file', '-b base.vmdk -F vmdk'],
  ['backing file, zeroed grains, 6M', '-b base.vmdk -F vmdk -o zeroed_grain=on'],
];

const SIZES: Record<string, string> = {
  'default options, odd size': '1000001',
  'twoGbMaxExtentSparse over 2 GiB': '4300M',
  'twoGbMaxExtentFlat over 2 GiB': '2049M',
  'backing file': '',
  'backing file, zeroed grains, 6M': '6M',
};

const ERRORS: string[] = [
  '-o adapter_type=scsi',
  '-o subformat=monolithicsparse',
  '-o compat6=on,hwversion=7',
  '-o subformat=monolithicFlat,zeroed_grain=on',
  '-o subformat=twoGbMaxExtentFlat -b base.vmdk -F vmdk',
  '-o backing_fmt=raw,backing_file=plain.raw',
  '-b plain.raw -F raw',
];

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('img create -f vmdk as qemu-img', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  }, 60_000);
  afterAll(() => fx.dispose());

  for (const [what, opts] of CREATES) {
    it(what, async () => {
      const size = SIZES[what] ?? '3M';
      const args = ['create', '-f', 'vmdk', ...opts.split(' ').filter(Boolean), 'new.vmdk', ...(size ? [size] : [])];
      const dq = fx.copy();
      const dd = fx.copy();
      const t = theirs('img', args, dq);
      const o = await ours('img', args, dd);
      expect(norm(o)).toEqual(norm(t));
      sameFiles(dq, dd);
      expect(theirs('img', ['check', 'new.vmdk'], dd).stdout).toBe('No errors were found on the image.\n');
      const iq = theirs('img', ['info', '--output=json', 'new.vmdk'], dq);
      const id = theirs('img', ['info', '--output=json', 'new.vmdk'], dd);
      expect(maskInfo(norm(id).stdout)).toBe(maskInfo(norm(iq).stdout));
    });
  }

  for (const opts of ERRORS) {
    it(`refused: ${opts}`, async () => {
      const args = ['create', '-f', 'vmdk', ...opts.split(' '), 'bad.vmdk', '1M'];
      const dq = fx.copy();
      const dd = fx.copy();
      const t = theirs('img', args, dq);
      const o = await ours('img', args, dd);
      expect(norm(o)).toEqual(norm(t));
      expect(existsSync(join(dd, 'bad.vmdk'))).toBe(existsSync(join(dq, 'bad.vmdk')));
    });
  }

  it('create -o help', async () => {
    const t = theirs('img', ['create', '-f', 'vmdk', '-o', 'help'], fx.root);
    const o = await ours('img', ['create', '-f', 'vmdk', '-o', 'help'], fx.root);
    expect(norm(o)).toEqual(norm(t));
  });
});

describe('img convert -O vmdk as qemu-img', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  }, 60_000);
  afterAll(() => fx.dispose());

  for (const sub of ['monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat', 'streamOptimized']) {
    for (const from of ['src.raw', 'base.vmdk']) {
      it(`${from} to ${sub}`, async () => {
        const args = ['convert', '-O', 'vmdk', '-o', `subformat=${sub}`, from, 'out.vmdk'];
        const dq = fx.copy();
        const dd = fx.copy();
        const t = theirs('img', args, dq);
        const o = await ours('img', args, dd);
        expect(norm(o)).toEqual(norm(t));
        // Compressed grains are zlib's output, which differs between zlib builds.
        sameFiles(dq, dd, sub === 'streamOptimized');
        expect(theirs('img', ['check', 'out.vmdk'], dd).stdout).toBe('No errors were found on the image.\n');
        theirs('img', ['convert', '-O', 'raw', 'out.vmdk', 'back.raw'], dd);
        theirs('img', ['convert', '-O', 'raw', from, 'want.raw'], dd);
        expect(bytesOf(dd, 'back.raw').equals(bytesOf(dd, 'want.raw'))).toBe(true);
        const mq = theirs('img', ['map', '--output=json', 'out.vmdk'], dq).stdout;
        const md = theirs('img', ['map', '--output=json', 'out.vmdk'], dd).stdout;
        if (!sub.endsWith('Flat')) expect(md).toBe(mq);
      });
    }
  }
});

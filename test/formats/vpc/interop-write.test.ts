/**
 * Writing VHD images against qemu-img / qemu-io 7.2:
 * - `img create -f vpc` gives qemu-img's output and the same file, byte for
 *   byte except the timestamp, UUID and checksum of the footers;
 * - seeded qemu-io command sequences give the same printed lines (timings
 *   masked) and the same final file, byte for byte, through both tools on
 *   copies of one image (block allocation, BAT, bitmap and footer moves);
 * - images created and written by diskworker read back in qemu-img as the
 *   written model says, with the same `qemu-img info` as qemu's own.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, ours, theirs } from '../../cli/harness.js';
import { prng } from '../../prng.js';
import { both, expectSame, expectSameRaw, expectValidChecksums, maskVolatile } from './helpers.js';

/** Create cases: options and size; the sizes hit the CHS rounding at its steps. */
const CREATES: Array<[string, string]> = [
  ['', '1M'],
  ['', '10000001'],
  ['', '0'],
  ['', '511'],
  ['', '33554432'],
  ['', '4193280'],
  ['', '127G'],
  ['', '200G'],
  ['', '2040G'],
  ['-o subformat=fixed', '10000001'],
  ['-o subformat=fixed', '0'],
  ['-o subformat=dynamic,force_size=on', '10000001'],
  ['-o subformat=fixed,force_size=on', '7654321'],
  ['-o force_size=off', '65536'],
  ['-o preallocation=full', '1M'],
  ['-o nocow=on', '1M'],
  // Refused: past 2040 GiB (rounded or forced), bad values.
  ['', '2041G'],
  ['-o force_size=on', '3T'],
  ['-o subformat=bogus', '1M'],
  ['-o force_size=maybe', '1M'],
  ['-o cluster_size=64k', '1M'],
];

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('img create -f vpc', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(() => {});
  });
  afterAll(() => fx.dispose());

  CREATES.forEach(([opts, size], i) => {
    it(`create ${opts} ${size}: qemu-img's output and file`, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      const args = ['create', '-f', 'vpc', ...opts.split(' ').filter(Boolean), `c${i}.vhd`, size];
      const r = await both('img', args, dq, dd);
      expect(r.ours).toEqual(r.theirs);
      if (r.theirs.code !== 0) return;
      const q = readFileSync(join(dq, `c${i}.vhd`));
      const o = readFileSync(join(dd, `c${i}.vhd`));
      expect(o.length).toBe(q.length);
      expectValidChecksums(o);
      expect(maskVolatile(o).equals(maskVolatile(q)), 'bytes differ beyond timestamp, uuid and checksum').toBe(true);
      // qemu-img sees both alike.
      const iq = theirs('img', ['info', '-f', 'vpc', '--output=json', `c${i}.vhd`], dq);
      const io = theirs('img', ['info', '-f', 'vpc', '--output=json', `c${i}.vhd`], dd);
      expect(io).toEqual(iq);
    });
  });
});

/** A seeded qemu-io command sequence over an image of `size` bytes, with a model of its contents to verify reads. */
function commandSequence(seed: number, size: number, count: number): string[] {
  const rnd = prng(seed);
  const model = new Uint8Array(size);
  const cmds: string[] = [];
  const int = (n: number) => Math.floor(rnd() * n);
  // Mostly near a few block boundaries, sometimes anywhere.
  const offset = (len: number) => {
    const hot = [0, 2 << 20, 4 << 20, size - len].filter((x) => x >= 0);
    const base = rnd() < 0.6 ? hot[int(hot.length)]! + int(65536) - 32768 : int(size);
    return Math.max(0, Math.min(size - len, base));
  };
  for (let i = 0; i < count; i++) {
    const len = 1 + int(rnd() < 0.2 ? 3 << 20 : 70000);
    const off = offset(len);
    const pat = 1 + int(254);
    const k = rnd();
    if (k < 0.35) {
      cmds.push(`write -P ${pat} ${off} ${len}`);
      model.fill(pat, off, off + len);
    } else if (k < 0.45) {
      cmds.push(`write -z ${off} ${len}`);
      model.fill(0, off, off + len);
    } else if (k < 0.55) {
      const half = Math.floor(len / 2) || 1;
      if (half < len) {
        cmds.push(`writev -P ${pat} ${off} ${half} ${len - half}`);
        model.fill(pat, off, off + len);
      }
    } else if (k < 0.65) {
      // One aio write at a time: QEMU completes concurrent ones in any order.
      cmds.push(`aio_write -P ${pat} ${off} ${len}`, 'aio_flush');
      model.fill(pat, off, off + len);
    } else if (k < 0.85) {
      const v = model[off]!;
      const same = model.subarray(off, off + len).every((x) => x === v);
      cmds.push(same ? `read -P ${v} ${off} ${len}` : `read -v ${off} ${Math.min(len, 64)}`);
    } else if (k < 0.92) {
      cmds.push(`discard ${off} ${len}`);
    } else if (k < 0.96) {
      cmds.push(`alloc ${off} ${len}`);
    } else {
      cmds.push('map');
    }
  }
  cmds.push('map', 'info');
  return cmds;
}

describe('seeded qemu-io sequences: same lines and same final file', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f vpc dyn.vhd 10000001');
      sh('qemu-img create -q -f vpc -o subformat=fixed fixed.vhd 10000001');
      sh('qemu-img create -q -f vpc -o force_size=on force.vhd 7654321');
      // An image with blocks already allocated (and its bitmap state) by qemu-io.
      sh('qemu-img create -q -f vpc used.vhd 10000001 && qemu-io -f vpc -c "write -P 9 2000000 300000" -c "write -P 8 9000000 4096" used.vhd > /dev/null');
    });
  });
  afterAll(() => fx.dispose());

  const cases: Array<[string, number, number]> = [
    ['dyn.vhd', 10027008, 1],
    ['dyn.vhd', 10027008, 2],
    ['fixed.vhd', 10027008, 3],
    ['force.vhd', 7654400, 4],
    ['used.vhd', 10027008, 5],
    ['dyn.vhd', 10027008, 6],
  ];
  for (const [image, size, seed] of cases) {
    it(`${image}, seed ${seed}`, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      const cmds = commandSequence(seed, size, 40);
      const args = ['-f', 'vpc', ...cmds.flatMap((c) => ['-c', c]), image];
      const r = await both('io', args, dq, dd);
      expect(r.ours).toEqual(r.theirs);
      expect(r.theirs.out).not.toMatch(/Pattern verification failed/);
      const q = readFileSync(join(dq, image));
      const o = readFileSync(join(dd, image));
      expect(o.length).toBe(q.length);
      expect(o.equals(q), `${image}: final files differ`).toBe(true);
      await expectSame('img', ['map', '--output=json', '-f', 'vpc', image], dq, dd);
    });
  }
});

describe('images created and written by diskworker, read by qemu-img', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(() => {});
  });
  afterAll(() => fx.dispose());

  const cases: Array<[string, string, number]> = [
    ['', '10000001', 11],
    ['-o subformat=fixed', '10000001', 12],
    ['-o force_size=on', '7654321', 13],
    ['', '33554432', 14],
  ];
  for (const [opts, size, seed] of cases) {
    it(`create ${opts} ${size}, seeded writes (seed ${seed})`, async () => {
      const dd = fx.copy();
      const dq = join(dd, 'q');
      mkdirSync(dq);
      const o = opts.split(' ').filter(Boolean);
      expect((await ours('img', ['create', '-q', '-f', 'vpc', ...o, 'img.vhd', size], dd)).code).toBe(0);
      expect(theirs('img', ['create', '-q', '-f', 'vpc', ...o, 'img.vhd', size], dq).code).toBe(0);
      const length = JSON.parse(theirs('img', ['info', '-f', 'vpc', '--output=json', 'img.vhd'], dd).stdout)['virtual-size'] as number;
      // Writes only: the model is what the image must hold.
      const rnd = prng(seed);
      const model = new Uint8Array(length);
      const cmds: string[] = [];
      for (let i = 0; i < 30; i++) {
        const len = 1 + Math.floor(rnd() * 300000);
        const off = Math.floor(rnd() * (length - len));
        const pat = 1 + Math.floor(rnd() * 254);
        cmds.push(`write -P ${pat} ${off} ${len}`);
        model.fill(pat, off, off + len);
      }
      const args = ['-f', 'vpc', ...cmds.flatMap((c) => ['-c', c]), 'img.vhd'];
      const wo = await ours('io', args, dd);
      expect(wo.code, wo.stderr).toBe(0);
      expect(theirs('io', args, dq).code).toBe(0);
      // qemu-img reads what was written.
      const raw = await expectSameRaw(dd, 'img.vhd', 'vpc');
      expect(raw.equals(Buffer.from(model)), 'qemu-img reads other bytes than were written').toBe(true);
      // qemu-img says the same of our image as of its own (same writes), and the files agree.
      for (const out of [[], ['--output=json']]) {
        const a = theirs('img', ['info', '-f', 'vpc', ...out, 'img.vhd'], dd);
        const b = theirs('img', ['info', '-f', 'vpc', ...out, 'img.vhd'], dq);
        expect(a.stdout.replace(/^disk size: .*$/m, '').replace(/"actual-size": \d+/, '')).toBe(b.stdout.replace(/^disk size: .*$/m, '').replace(/"actual-size": \d+/, ''));
      }
      expect(theirs('img', ['map', '-f', 'vpc', '--output=json', 'img.vhd'], dd).stdout).toBe(theirs('img', ['map', '-f', 'vpc', '--output=json', 'img.vhd'], dq).stdout);
      const fo = readFileSync(join(dd, 'img.vhd'));
      expectValidChecksums(fo);
      expect(maskVolatile(fo).equals(maskVolatile(readFileSync(join(dq, 'img.vhd'))))).toBe(true);
    });
  }
});

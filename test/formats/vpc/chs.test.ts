/**
 * CHS geometry and size rounding against qemu-img 7.2: for seeded sizes from
 * a sector to 2040 GiB (log-uniform, plus the geometry's step boundaries),
 * the footer qemu-img writes holds the geometry and size `roundedImageSize`
 * computes, with and without force_size.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prng } from '../../prng.js';
import { MAX_GEOMETRY, roundedImageSize } from '../../../src/formats/vpc/chs.js';
import { FOOTER } from '../../../src/formats/vpc/footer.js';
import { hasQemu } from '../../cli/harness.js';

/** Sizes in bytes: the steps of the geometry rules and seeded log-uniform ones. */
function sizes(seed: number, count: number): number[] {
  const rnd = prng(seed);
  const steps = [0, 1, 511, 512, 513, 4096 * 17 * 512, 65535 * 16 * 17 * 512, 65535 * 16 * 31 * 512, 65535 * 16 * 63 * 512, MAX_GEOMETRY * 512, 0xff000000 * 512];
  const out = steps.flatMap((s) => [s - 512, s, s + 1, s + 512]).filter((s) => s >= 0 && s <= 0xff000000 * 512);
  for (let i = 0; i < count; i++) out.push(Math.floor(2 ** (9 + rnd() * 32)));
  return out;
}

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('CHS rounding as qemu-img create', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'dw-vpc-chs-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const force of [false, true]) {
    it(`force_size=${force ? 'on' : 'off'}: geometry and size of the footer`, () => {
      const file = join(dir, 'g.vhd');
      for (const size of sizes(force ? 2 : 1, 30)) {
        const r = spawnSync('qemu-img', ['create', '-q', '-f', 'vpc', '-o', `force_size=${force ? 'on' : 'off'}`, file, String(size)], { encoding: 'utf8' });
        expect(r.status, r.stderr).toBe(0);
        const f = readFileSync(file).subarray(0, 512);
        unlinkSync(file);
        const ours = roundedImageSize(Math.ceil(size / 512) * 512, force);
        const theirs = {
          cyls: f.readUInt16BE(FOOTER.cyls),
          heads: f.readUInt8(FOOTER.heads),
          secsPerCyl: f.readUInt8(FOOTER.secsPerCyl),
          totalSectors: Number(f.readBigUInt64BE(FOOTER.currentSize) / 512n),
        };
        expect(ours, `size ${size}`).toEqual(theirs);
      }
    });
  }

  it('refuses sizes past 2040 GiB with EFBIG', () => {
    for (const force of [false, true]) {
      expect(() => roundedImageSize(0xff000000 * 512 + 512, force)).toThrow(expect.objectContaining({ code: 'EFBIG' }));
    }
  });
});

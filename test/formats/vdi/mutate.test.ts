/**
 * Seeded mutations of a VDI header's fields (interesting values and random
 * ones): `diskworker img info`, `img check` and `img map` must answer as qemu-img 7.2
 * does, in text and exit code, except where we refuse a block map that ends
 * past the end of the file (qemu-img then opens the image); any failure of
 * ours is a BlockError, never a crash.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, normalize, ours, theirs, type RunResult } from '../../cli/harness.js';
import { prng } from '../../prng.js';
import { F, ioLine, MiB } from './helpers.js';

const FIELDS: Array<[string, number, 4 | 8]> = [
  ['signature', F.signature, 4],
  ['version', F.version, 4],
  ['header size', F.headerSize, 4],
  ['image type', F.imageType, 4],
  ['map offset', F.offsetBmap, 4],
  ['data offset', F.offsetData, 4],
  ['sector size', F.sectorSize, 4],
  ['disk size', F.diskSize, 8],
  ['block size', F.blockSize, 4],
  ['blocks in image', F.blocksInImage, 4],
  ['blocks allocated', F.blocksAllocated, 4],
  ['map entry 0', 512, 4],
  ['map entry 3', 512 + 12, 4],
];

const INTERESTING = [0, 1, 2, 0x1ff, 0x200, 0x201, 0x400, 0x600, 512, 4096, MiB, 2 * MiB, 0x00010001, 0xbeda107f, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 0x1fffff80, 0x1fffff81];

/** One mutation: a field and its new value (a pick of the interesting ones or random bits). */
function mutation(seed: number): { what: string; apply: (b: Buffer) => void } {
  const rnd = prng(seed);
  const [name, at, width] = FIELDS[Math.floor(rnd() * FIELDS.length)]!;
  const pick = rnd() < 0.6 ? INTERESTING[Math.floor(rnd() * INTERESTING.length)]! : Math.floor(rnd() * 2 ** 32);
  if (width === 8) {
    const v = rnd() < 0.3 ? BigInt(pick) * BigInt(MiB) : BigInt(pick);
    return { what: `${name} = ${v}`, apply: (b) => void b.writeBigUInt64LE(v, at) };
  }
  return { what: `${name} = 0x${pick.toString(16)}`, apply: (b) => void b.writeUInt32LE(pick >>> 0, at) };
}

const norm = (r: RunResult): RunResult => ({ code: r.code, stdout: normalize(r.stdout), stderr: normalize(r.stderr) });
const SEEDS = Array.from({ length: 60 }, (_, i) => 7000 + i);

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('mutated vdi headers vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((dir, sh) => {
      sh('qemu-img create -q -f vdi base.vdi 6M');
      sh(`qemu-io ${ioLine(['write -P 0x61 1M 8k', 'write -P 0x62 4M 4k'], 'base.vdi')} >/dev/null`);
      for (const seed of SEEDS) {
        const b = readFileSync(join(dir, 'base.vdi'));
        mutation(seed).apply(b);
        writeFileSync(join(dir, `m${seed}.vdi`), b);
      }
    });
  }, 60_000);
  afterAll(() => fx.dispose());

  for (const seed of SEEDS) {
    it(`seed ${seed} (${mutation(seed).what})`, async () => {
      const d = fx.copy();
      const f = `m${seed}.vdi`;
      for (const args of [['info', '-f', 'vdi', f], ['check', '-f', 'vdi', f], ['map', '--output=json', '-f', 'vdi', f]]) {
        const t = norm(theirs('img', args, d));
        const o = norm(await ours('img', args, d));
        if (o.code !== 0 && /VDI block map of \d+ entries at offset 0x[0-9a-f]+ ends at \d+, beyond the end of the file/.test(o.stderr)) {
          // Our refusal of a map outside the file: QEMU reads zeros there and goes on.
          expect(t.code === 0 || t.code === 2, `${args.join(' ')}: ${t.stderr}`).toBe(true);
          continue;
        }
        expect(o, args.join(' ')).toEqual(t);
      }
    });
  }
});

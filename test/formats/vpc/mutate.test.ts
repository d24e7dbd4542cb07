/**
 * Seeded mutations of a dynamic and a fixed VHD (footer fields with a valid
 * checksum, dynamic header fields, BAT entries, truncation): `img info`,
 * `img map` and `img convert -O raw` through both tools must agree with
 * qemu-img 7.2, in output, exit code and converted bytes. Seeds 1-40 by
 * default; `VPC_MUTATE_SEEDS=first:count` for a long run.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, normalize, ours, theirs } from '../../cli/harness.js';
import { prng } from '../../prng.js';
import { FOOTER } from '../../../src/formats/vpc/footer.js';
import { both, patchDynHeader, patchFooter } from './helpers.js';

const APPS = ['vpc ', 'qemu', 'qem2', 'win ', 'd2v ', 'CTXS', 'tap\0', 'xxxx'];

/** One seeded mutation of `file` (dynamic when `dynamic`); returns what was done. */
function mutate(file: string, seed: number, dynamic: boolean): string {
  const rnd = prng(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const size = readFileSync(file).length;
  const kinds = dynamic ? ['footer', 'footer', 'header', 'header', 'bat', 'truncate'] : ['footer', 'footer', 'truncate'];
  const kind = pick(kinds);
  if (kind === 'footer') {
    const field = pick(['dataOffset', 'creatorApp', 'currentSize', 'geometry', 'type'] as const);
    patchFooter(file, (f) => {
      if (field === 'dataOffset') f.writeBigUInt64BE(pick([0n, 512n, 1024n, BigInt(size), 1n << 53n, 1n << 62n, 0xffffffffffffffffn, BigInt(int(size))]), FOOTER.dataOffset);
      if (field === 'creatorApp') f.write(pick(APPS), FOOTER.creatorApp, 4, 'latin1');
      if (field === 'currentSize') f.writeBigUInt64BE(pick([0n, 512n, BigInt(int(64 << 20)), 1n << 41n, 1n << 60n]), FOOTER.currentSize);
      if (field === 'geometry') {
        f.writeUInt16BE(int(65536), FOOTER.cyls);
        f.writeUInt8(int(256), FOOTER.heads);
        f.writeUInt8(int(256), FOOTER.secsPerCyl);
        if (rnd() < 0.5) f.write(pick(APPS), FOOTER.creatorApp, 4, 'latin1');
      }
      if (field === 'type') f.writeUInt32BE(int(6), FOOTER.type);
    });
    return `footer ${field}`;
  }
  if (kind === 'header') {
    const field = pick(['tableOffset', 'entries', 'blockSize'] as const);
    patchDynHeader(file, (h) => {
      if (field === 'tableOffset') h.writeBigUInt64BE(pick([0n, 512n, 1536n, BigInt(int(size)), BigInt(size - 4), 1n << 60n]), 16);
      if (field === 'entries') h.writeUInt32BE(pick([0, 1, 4, 5, 6, 100, int(2 ** 32)]), 28);
      if (field === 'blockSize') h.writeUInt32BE(pick([512, 4096, 1 << 20, 1 << 21, 1 << 22, 1 << 30, int(2 ** 32)]), 32);
    });
    return `header ${field}`;
  }
  if (kind === 'bat') {
    const b = readFileSync(file);
    const i = int(5);
    b.writeUInt32BE(pick([0, 1, 3, 8, 0xffffffff, int(size / 512), int(2 ** 32)]), 1536 + 4 * i);
    writeFileSync(file, b);
    return `bat[${i}]`;
  }
  const at = int(size);
  truncateSync(file, at);
  return `truncate ${at}`;
}

function build(_dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f vpc d.vhd 10000001 && qemu-io -f vpc -c "write -P 1 0 5000" -c "write -P 2 3M 4096" -c "write -P 3 9000000 1000" d.vhd > /dev/null');
  sh('qemu-img create -q -f vpc -o subformat=fixed f.vhd 3000000 && qemu-io -f vpc -c "write -P 4 0 1M" f.vhd > /dev/null');
}

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('seeded VHD mutations: same answers as qemu-img', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  });
  afterAll(() => fx.dispose());

  // Seeds 1-40; a long run: VPC_MUTATE_SEEDS=first:count.
  const [first, count] = (process.env['VPC_MUTATE_SEEDS'] ?? '1:40').split(':').map(Number) as [number, number];
  for (let seed = first; seed < first + count; seed++) {
    const dynamic = seed % 4 !== 0;
    it(`seed ${seed} (${dynamic ? 'dynamic' : 'fixed'})`, async () => {
      const dir = fx.copy();
      const image = dynamic ? 'd.vhd' : 'f.vhd';
      const what = mutate(join(dir, image), seed, dynamic);
      for (const args of [
        ['info', '-f', 'vpc', image],
        ['map', '-f', 'vpc', '--output=json', image],
      ]) {
        const r = await both('img', args, dir);
        expect(r.ours, `${what}: ${args.join(' ')}`).toEqual(r.theirs);
      }
      // The bytes, for images small enough to copy whole.
      const info = theirs('img', ['info', '-f', 'vpc', '--output=json', image], dir);
      if (info.code !== 0 || (JSON.parse(info.stdout) as { 'virtual-size': number })['virtual-size'] > 256 << 20) return;
      const q = theirs('img', ['convert', '-f', 'vpc', '-O', 'raw', image, 'q.raw'], dir);
      const o = await ours('img', ['convert', '-f', 'vpc', '-O', 'raw', image, 'o.raw'], dir);
      expect({ code: o.code, err: normalize(o.stderr) }, what).toEqual({ code: q.code, err: normalize(q.stderr) });
      if (q.code === 0) expect(readFileSync(join(dir, 'o.raw')).equals(readFileSync(join(dir, 'q.raw'))), `${what}: bytes`).toBe(true);
    });
  }
});

/**
 * Corrupt LUKS headers: each mutation of a header qemu-img wrote is refused by
 * `img info` (which reads the header without a key) with QEMU's message and
 * exit code, and by the library with a BlockError naming the bad value, before
 * anything of the size the header claims is allocated.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, normalize, ours, theirs } from '../cli/harness.js';
import { LuksVolume } from '../../src/crypto/luks.js';
import { BlockError } from '../../src/core/errors.js';

type Mutation = [name: string, mutate: (b: Buffer) => void];

const SLOT = (i: number) => 208 + 48 * i;

const MUTATIONS: Mutation[] = [
  ['bad magic', (b) => b.write('LUKX', 0)],
  ['version 2', (b) => b.writeUInt16BE(2, 6)],
  ['cipher name without NUL', (b) => b.fill(0x61, 8, 40)],
  ['cipher mode without NUL', (b) => b.fill(0x61, 40, 72)],
  ['hash spec without NUL', (b) => b.fill(0x61, 72, 104)],
  ['payload offset 0', (b) => b.writeUInt32BE(0, 104)],
  ['master key iterations 0', (b) => b.writeUInt32BE(0, 164)],
  ['slot 0 stripes 3999', (b) => b.writeUInt32BE(3999, SLOT(0) + 44)],
  ['slot 3 state garbage', (b) => b.writeUInt32BE(0x12345678, SLOT(3))],
  ['active slot 0 iterations 0', (b) => b.writeUInt32BE(0, SLOT(0) + 4)],
  ['slot 2 key offset inside the header', (b) => b.writeUInt32BE(1, SLOT(2) + 40)],
  ['slot 7 key material past the payload', (b) => b.writeUInt32BE(b.readUInt32BE(104) - 8, SLOT(7) + 40)],
  ['slots 1 and 2 overlapping', (b) => b.writeUInt32BE(b.readUInt32BE(SLOT(1) + 40) + 8, SLOT(2) + 40)],
  ['cipher mode without an IV generator', (b) => b.fill(0, 40, 72).write('xts', 40)],
  ['unknown cipher mode', (b) => b.fill(0, 40, 72).write('foo-plain64', 40)],
  ['unknown IV generator', (b) => b.fill(0, 40, 72).write('xts-bar', 40)],
  ['essiv without hash', (b) => b.fill(0, 40, 72).write('xts-essiv', 40)],
  ['unknown hash', (b) => b.fill(0, 72, 104).write('sha3', 72)],
  ['unknown cipher', (b) => b.fill(0, 8, 40).write('rot13', 8)],
  ['key length of no AES', (b) => b.writeUInt32BE(40, 108)],
  ['payload offset past 4 GiB of sectors', (b) => b.writeUInt32BE(0xffffffff, 104)],
];

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('corrupt LUKS headers', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      const c = 'qemu-img create -q -f luks --object secret,id=s,data=pw -o key-secret=s,iter-time=10 good.luks 1M';
      sh(Array(12).fill(c).join(" || "));
    });
  });
  afterAll(() => fx.dispose());

  for (const [name, mutate] of MUTATIONS) {
    it(`${name}: img info as qemu-img`, async () => {
      const dir = fx.copy();
      const b = readFileSync(join(dir, 'good.luks'));
      mutate(b);
      writeFileSync(join(dir, 'bad.luks'), b);
      for (const args of [['info', 'bad.luks'], ['info', '-f', 'luks', 'bad.luks']]) {
        const t = theirs('img', args, dir);
        const o = await ours('img', args, dir);
        expect({ code: o.code, out: normalize(o.stdout + o.stderr) }).toEqual({ code: t.code, out: normalize(t.stdout + t.stderr) });
      }
    });
  }

  it('a huge master key length is refused by value before the key material is read', async () => {
    const dir = fx.copy();
    const b = readFileSync(join(dir, 'good.luks'));
    b.writeUInt32BE(0x7fffffff, 108);
    let asked = 0;
    const read = async (off: number, len: number) => {
      asked = Math.max(asked, len);
      return new Uint8Array(b.subarray(off, off + len));
    };
    const err = await LuksVolume.open(read, new TextEncoder().encode('pw')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlockError);
    expect((err as BlockError).message).toMatch(/2147483647/);
    expect(asked).toBeLessThan(4096);
  });

  it('a wrong password is EPERM with QEMU message; the right one opens', async () => {
    const dir = fx.copy();
    const b = readFileSync(join(dir, 'good.luks'));
    const read = async (off: number, len: number) => new Uint8Array(b.subarray(off, off + len));
    const err = await LuksVolume.open(read, new TextEncoder().encode('wrong')).catch((e: unknown) => e);
    expect((err as BlockError).code).toBe('EPERM');
    expect((err as BlockError).message).toBe('Invalid password, cannot unlock any keyslot');
    const vol = await LuksVolume.open(read, new TextEncoder().encode('pw'));
    expect(vol.unlocked).toBe(true);
    vol.close();
  });
});

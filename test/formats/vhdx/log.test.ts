/**
 * The VHDX log against QEMU 7.2: dirty logs made from images qemu-io wrote
 * (the last BAT update put back in the log and taken out of the BAT: a crash
 * between the journal write and its replay) are refused read-only with
 * QEMU's message, replayed by `check -r all` with its report, and replayed
 * alike by a read-write open; the ring wraps alike in both tools.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, theirs } from '../../cli/harness.js';
import { both, expectSame, expectSameRaw, makeDirty, maskVolatile } from './helpers.js';

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

/** Sets the BAT entry at `at` (bytes into its sector) back to ZERO, as before the write. */
const unsetEntry = (at: number) => (sector: Buffer) => sector.writeBigUInt64LE(2n, at);

describe('dirty logs', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((dir, sh) => {
      // Block 2 (BAT entry 2) is the last one allocated: its entry is what the last log entry wrote.
      sh('qemu-img create -q -f vhdx a.vhdx 64M && qemu-io -c "write -P 0x5a 8M 64k" -c "write -P 0x6b 20M 1M" a.vhdx > /dev/null');
      sh('cp a.vhdx clean.vhdx');
      makeDirty(join(dir, 'a.vhdx'), unsetEntry(16));
      // A log entry whose BAT update already reached the BAT (replay writes it again).
      sh('qemu-img create -q -f vhdx -o block_size=1M,log_size=2M b.vhdx 12M && qemu-io -c "write -P 7 5M 3000" b.vhdx > /dev/null');
      sh('cp b.vhdx bclean.vhdx');
      makeDirty(join(dir, 'b.vhdx'));
    });
  });
  afterAll(() => fx.dispose());

  for (const line of ['info a.vhdx', 'info --output=json b.vhdx', 'check a.vhdx', 'map a.vhdx', 'convert -O raw a.vhdx x.raw', 'compare a.vhdx clean.vhdx']) {
    it(`refused read-only: img ${line}`, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      const before = readFileSync(join(dd, line.includes('b.vhdx') ? 'b.vhdx' : 'a.vhdx'));
      const r = await both('img', line.split(' '), dq, dd);
      expect(r.ours).toEqual(r.theirs);
      expect(r.theirs.err).toMatch(/contains a log that needs to be replayed/);
      expect(readFileSync(join(dd, line.includes('b.vhdx') ? 'b.vhdx' : 'a.vhdx')).equals(before)).toBe(true);
    });
  }

  for (const image of ['a.vhdx', 'b.vhdx']) {
    it(`check -r all ${image}: replayed, reported, same file and contents`, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      await expectSame('img', ['check', '-r', 'all', image], dq, dd);
      await expectSame('img', ['check', '--output=json', image], dq, dd);
      const q = readFileSync(join(dq, image));
      const o = readFileSync(join(dd, image));
      expect(o.length).toBe(q.length);
      expect(maskVolatile(o).equals(maskVolatile(q)), 'replayed files differ').toBe(true);
      const clean = image === 'a.vhdx' ? 'clean.vhdx' : 'bclean.vhdx';
      expect(theirs('img', ['compare', image, clean], dd).code).toBe(0);
      await expectSameRaw(dd, image, 'vhdx');
    });

    it(`a read-write open of ${image} replays the log (qemu-io)`, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      const io = image === 'a.vhdx' ? ['read -P 0x6b 20M 1M', 'write -P 3 40M 4k'] : ['read -P 7 5M 3000', 'write -P 3 9M 4k'];
      await expectSame('io', [...io.flatMap((c) => ['-c', c]), image], dq, dd);
      const q = readFileSync(join(dq, image));
      const o = readFileSync(join(dd, image));
      expect(maskVolatile(o).equals(maskVolatile(q)), 'files differ').toBe(true);
      expect(theirs('img', ['check', image], dd).code).toBe(0);
    });

    it(`check -r all --output=json ${image}`, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      await expectSame('img', ['check', '-r', 'all', '--output=json', image], dq, dd);
    });
  }

  it('a log entry with a bad checksum is no log: the image opens read-only', async () => {
    const dq = fx.copy();
    const dd = fx.copy();
    for (const d of [dq, dd]) {
      const f = join(d, 'a.vhdx');
      const b = readFileSync(f);
      // The last entry's data sector (the BAT sector's copy) loses a byte.
      const cur = b.readBigUInt64LE(0x10000 + 8) > b.readBigUInt64LE(0x20000 + 8) ? 0x10000 : 0x20000;
      let last = -1;
      for (let s = 1 << 20; s < 2 << 20; s += 4096) if (b.toString('latin1', s, s + 4) === 'loge' && b.subarray(s + 32, s + 48).equals(b.subarray(cur + 48, cur + 64))) last = s;
      expect(last).toBeGreaterThan(0);
      b[last + 4096 + 100] ^= 0xff;
      writeFileSync(f, b);
    }
    await expectSame('img', ['info', 'a.vhdx'], dq, dd);
    await expectSame('img', ['check', '-r', 'all', 'a.vhdx'], dq, dd);
  });
});

describe('the ring wraps', () => {
  let fx: Fixture;
  beforeAll(() => {
    // 131 new 1 MiB blocks: 131 two-sector entries in a 1 MiB ring of 256 sectors.
    fx = new Fixture((_dir, sh) => sh('qemu-img create -q -f vhdx -o block_size=1M w.vhdx 200M'));
  });
  afterAll(() => fx.dispose());

  it('131 allocations: same lines, same file; a dirty log at the wrap is replayed alike', async () => {
    const dq = fx.copy();
    const dd = fx.copy();
    await expectSame('io', ['-c', 'write -P 0x21 1000000 130M', 'w.vhdx'], dq, dd);
    const q = readFileSync(join(dq, 'w.vhdx'));
    const o = readFileSync(join(dd, 'w.vhdx'));
    expect(maskVolatile(o).equals(maskVolatile(q)), 'files differ').toBe(true);
    copyFileSync(join(dq, 'w.vhdx'), join(dq, 'v.vhdx'));
    copyFileSync(join(dd, 'w.vhdx'), join(dd, 'v.vhdx'));
    // Entry 131 sits at ring sector 4 after the wrap; block 130 is BAT entry 130 (a bitmap entry comes per 8 GiB only).
    for (const d of [dq, dd]) makeDirty(join(d, 'v.vhdx'), unsetEntry(130 * 8));
    await expectSame('img', ['check', '-r', 'all', 'v.vhdx'], dq, dd);
    await expectSame('img', ['compare', 'v.vhdx', 'w.vhdx'], dq, dd);
  });
});

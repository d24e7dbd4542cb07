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
import { MiB, both, craftLogEntry, currentHeader, expectSame, expectSameRaw, makeDirty, maskVolatile, patch } from './helpers.js';

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

describe('crafted logs (sequences of several entries, zero descriptors, file growth)', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => sh('qemu-img create -q -f vhdx -o block_size=1M c.vhdx 16M && qemu-io -c "write -P 0x11 0 3M" c.vhdx > /dev/null'));
  });
  afterAll(() => fx.dispose());

  /** Puts `entries` into the ring from `at` (bytes into the log, wrapping) and their GUID into the current header. */
  function install(file: string, guid: Buffer, entries: Buffer[], at: number): void {
    patch(file, (b) => {
      const cur = currentHeader(b);
      const logOffset = Number(b.readBigUInt64LE(cur + 72));
      const logLength = b.readUInt32LE(cur + 68);
      let pos = at;
      for (const e of entries) {
        for (let s = 0; s < e.length; s += 4096) {
          e.copy(b, logOffset + pos, s, s + 4096);
          pos = (pos + 4096) % logLength;
        }
      }
      guid.copy(b, cur + 48);
    }, ['headers']);
  }

  const cases: Array<[string, (len: number, b: Buffer) => { entries: Buffer[]; at: number }]> = [
    ['two entries: data over block 0, then zeros over block 1 and the file grown', (len) => {
      const guid = Buffer.alloc(16, 0x77);
      const s1 = Buffer.alloc(4096, 0xab);
      return {
        at: 64 * 4096,
        entries: [
          craftLogEntry({ sequence: 40n, logGuid: guid, tail: 64 * 4096, flushed: BigInt(len), last: BigInt(len), descs: [{ data: s1, offset: 8 * MiB }] }),
          craftLogEntry({ sequence: 41n, logGuid: guid, tail: 64 * 4096, flushed: BigInt(len), last: BigInt(len + 12345), descs: [{ zero: 8192, offset: 9 * MiB }, { data: Buffer.alloc(4096, 0xcd), offset: 9 * MiB + 4096 }] }),
        ],
      };
    }],
    ['an entry across the end of the ring', (len) => {
      const guid = Buffer.alloc(16, 0x78);
      return { at: 255 * 4096, entries: [craftLogEntry({ sequence: 9n, logGuid: guid, tail: 0, flushed: BigInt(len), last: BigInt(len), descs: [{ data: Buffer.alloc(4096, 0x5e), offset: 8 * MiB + 8192 }] })] };
    }],
    ['an entry out of sequence right after a sequence (the search steps past it)', (len) => {
      const guid = Buffer.alloc(16, 0x79);
      const mk = (seq: bigint, v: number) => craftLogEntry({ sequence: seq, logGuid: guid, tail: 0, flushed: BigInt(len), last: BigInt(len), descs: [{ data: Buffer.alloc(4096, v), offset: 8 * MiB }] });
      return { at: 0, entries: [mk(5n, 1), mk(6n, 2), mk(100n, 3)] };
    }],
    ['flushed file offset past the end of the file', (len) => {
      const guid = Buffer.alloc(16, 0x7a);
      return { at: 0, entries: [craftLogEntry({ sequence: 3n, logGuid: guid, tail: 0, flushed: BigInt(len + MiB), last: BigInt(len), descs: [{ zero: 4096, offset: 8 * MiB }] })] };
    }],
    ['a descriptor with a file offset not in whole sectors', (len) => {
      const guid = Buffer.alloc(16, 0x7b);
      return { at: 0, entries: [craftLogEntry({ sequence: 3n, logGuid: guid, tail: 0, flushed: BigInt(len), last: BigInt(len), descs: [{ zero: 4096, offset: 100 }] })] };
    }],
  ];

  for (const [name, make] of cases) {
    it(name, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      for (const d of [dq, dd]) {
        const f = join(d, 'c.vhdx');
        const b = readFileSync(f);
        const { entries, at } = make(b.length, b);
        install(f, entries[0]!.subarray(32, 48), entries, at);
      }
      await expectSame('img', ['info', 'c.vhdx'], dq, dd);
      await expectSame('img', ['check', '-r', 'all', 'c.vhdx'], dq, dd);
      const q = readFileSync(join(dq, 'c.vhdx'));
      const o = readFileSync(join(dd, 'c.vhdx'));
      expect(o.length).toBe(q.length);
      expect(maskVolatile(o).equals(maskVolatile(q)), 'replayed files differ').toBe(true);
    });
  }
});

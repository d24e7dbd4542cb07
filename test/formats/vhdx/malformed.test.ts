/**
 * Malformed VHDX images against qemu-img / qemu-io 7.2: each edit of a
 * qemu-img-made image (checksums made valid again unless the edit is about
 * them) gives the same lines and exit codes in `img info`, `img check` and a
 * qemu-io read / write; then seeded random edits of the header section,
 * metadata and BAT do too. Errors name the value in their detail (checked
 * through the library).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { Fixture, hasQemu } from '../../cli/harness.js';
import { prng } from '../../prng.js';
import { createNodeGraph, BlockBackend } from '../../../src/node.js';
import { isBlockError } from '../../../src/core/errors.js';
import { expectSame, patch, MiB } from './helpers.js';

const KiB = 1024;
const H1 = 64 * KiB;
const H2 = 128 * KiB;
const RT = 192 * KiB;
/** qemu-img's layout of a 64 MiB image with a 1 MiB log: the BAT at 2 MiB, the metadata region at 3 MiB. */
const BAT = 2 * MiB;
const MD = 3 * MiB;
const ITEMS = MD + 64 * KiB;
const mdEntry = (k: number) => MD + 32 + 32 * k;

type Edit = (b: Buffer) => void;
/** Name, edit, which checksums to make valid again. */
const CASES: Array<[string, Edit, Array<'headers' | 'regions'>]> = [
  ['header 1 checksum wrong, header 2 fine', (b) => void (b[H1 + 100] = 1), []],
  ['both header checksums wrong', (b) => void ((b[H1 + 100] = 1), (b[H2 + 100] = 1)), []],
  ['header 2 version 2, header 1 older', (b) => b.writeUInt16LE(2, H2 + 66), ['headers']],
  ['both headers of version 0', (b) => void (b.writeUInt16LE(0, H1 + 66), b.writeUInt16LE(0, H2 + 66)), ['headers']],
  ['equal sequence numbers, different headers', (b) => void (b.writeBigUInt64LE(7n, H1 + 8), b.writeBigUInt64LE(7n, H2 + 8), (b[H1 + 16] ^= 1)), ['headers']],
  ['equal sequence numbers, identical headers', (b) => void (b.copy(b, H1, H2, H2 + 80)), ['headers']],
  ['bad header signature', (b) => void (b.write('HEAD', H1), b.write('HEAD', H2)), ['headers']],
  ['log offset 0', (b) => void (b.writeBigUInt64LE(0n, H1 + 72), b.writeBigUInt64LE(0n, H2 + 72)), ['headers']],
  ['log offset not a whole MiB', (b) => void (b.writeBigUInt64LE(BigInt(MiB + 4096), H1 + 72), b.writeBigUInt64LE(BigInt(MiB + 4096), H2 + 72)), ['headers']],
  ['log version 1', (b) => void (b.writeUInt16LE(1, H1 + 64), b.writeUInt16LE(1, H2 + 64)), ['headers']],
  ['a log GUID, no log entry', (b) => void (b.fill(0x42, H1 + 48, H1 + 64), b.fill(0x42, H2 + 48, H2 + 64)), ['headers']],
  ['a log GUID, log length not whole MiBs', (b) => void (b.fill(0x42, H1 + 48, H1 + 64), b.fill(0x42, H2 + 48, H2 + 64), b.writeUInt32LE(MiB + 4096, H1 + 68), b.writeUInt32LE(MiB + 4096, H2 + 68)), ['headers']],
  ['a log GUID, log length 0', (b) => void (b.fill(0x42, H1 + 48, H1 + 64), b.fill(0x42, H2 + 48, H2 + 64), b.writeUInt32LE(0, H1 + 68), b.writeUInt32LE(0, H2 + 68)), ['headers']],
  ['region table checksum wrong', (b) => void (b[RT + 1000] = 1), []],
  ['region table signature', (b) => b.write('REGI', RT), ['regions']],
  ['region table of 2048 entries', (b) => b.writeUInt32LE(2048, RT + 8), ['regions']],
  ['region table of 3 entries (a zero one)', (b) => b.writeUInt32LE(3, RT + 8), ['regions']],
  ['region table without the metadata region', (b) => b.writeUInt32LE(1, RT + 8), ['regions']],
  ['BAT region over the log', (b) => b.writeBigUInt64LE(BigInt(MiB), RT + 16 + 16), ['regions']],
  ['metadata region over the BAT', (b) => b.writeBigUInt64LE(BigInt(BAT + 4096), RT + 48 + 16), ['regions']],
  ['two BAT regions', (b) => void (b.copy(b, RT + 48, RT + 16, RT + 32), b.writeUInt32LE(MiB * 4, RT + 48 + 16)), ['regions']],
  ['an unknown required region', (b) => void ((b[RT + 48] ^= 0xff), b.writeUInt32LE(1, RT + 48 + 28)), ['regions']],
  ['an unknown optional region', (b) => void ((b[RT + 48] ^= 0xff), b.writeUInt32LE(3, RT + 8), b.copy(b, RT + 80, RT + 48, RT + 80), (b[RT + 80] ^= 0xff), b.writeBigUInt64LE(20n * BigInt(MiB), RT + 80 + 16)), ['regions']],
  ['metadata signature', (b) => b.write('METADATA', MD), []],
  ['metadata of 2048 entries', (b) => b.writeUInt16LE(2048, MD + 10), []],
  ['metadata without physical sector size', (b) => b.writeUInt16LE(4, MD + 10), []],
  ['metadata item twice', (b) => b.copy(b, mdEntry(4), mdEntry(3), mdEntry(3) + 16), []],
  ['an unknown required metadata item', (b) => void ((b[mdEntry(4)] ^= 0xff)), []],
  ['an unknown optional metadata item', (b) => void (b.writeUInt16LE(6, MD + 10), b.copy(b, mdEntry(5), mdEntry(4), mdEntry(5)), (b[mdEntry(5)] ^= 0xff), b.writeUInt32LE(2, mdEntry(5) + 24)), []],
  ['has a parent, no locator', (b) => b.writeUInt32LE(2, ITEMS + 4), []],
  ['has a parent and a locator (differencing)', (b) => void (b.writeUInt32LE(2, ITEMS + 4), b.writeUInt16LE(6, MD + 10), b.copy(b, mdEntry(5), mdEntry(4), mdEntry(5)), b.set([0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45, 0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c], mdEntry(5))), []],
  ['fixed flag on a dynamic image', (b) => b.writeUInt32LE(1, ITEMS + 4), []],
  ['block size 512 KiB', (b) => b.writeUInt32LE(512 * KiB, ITEMS), []],
  ['block size 512 MiB', (b) => b.writeUInt32LE(512 * MiB, ITEMS), []],
  ['block size 3 MiB', (b) => b.writeUInt32LE(3 * MiB, ITEMS), []],
  ['block size 1 MiB (more BAT entries, still fit)', (b) => b.writeUInt32LE(MiB, ITEMS), []],
  ['logical sector size 4096', (b) => b.writeUInt32LE(4096, ITEMS + 32), []],
  ['physical sector size 3', (b) => b.writeUInt32LE(3, ITEMS + 36), []],
  ['virtual size 0', (b) => b.writeBigUInt64LE(0n, ITEMS + 8), []],
  ['virtual size 1000 (not whole sectors)', (b) => b.writeBigUInt64LE(1000n, ITEMS + 8), []],
  ['virtual size past the BAT region', (b) => b.writeBigUInt64LE(2n ** 40n, ITEMS + 8), []],
  ['virtual size 2^62', (b) => b.writeBigUInt64LE(2n ** 62n, ITEMS + 8), []],
  ['metadata item offset far past the file', (b) => b.writeUInt32LE(0xfffff000, mdEntry(1) + 16), []],
  ['BAT entry 0 partially present', (b) => b.writeBigUInt64LE(7n, BAT), []],
  ['BAT entry 0 of state 4', (b) => b.writeBigUInt64LE(4n, BAT), []],
  ['BAT entry 1 unmapped / undefined', (b) => void (b.writeBigUInt64LE(3n, BAT + 8), b.writeBigUInt64LE(1n, BAT + 16)), []],
  ['BAT entry past the end of the file', (b) => b.writeBigUInt64LE(BigInt(200 * MiB) | 6n, BAT + 8), []],
  ['BAT entry over the BAT region', (b) => b.writeBigUInt64LE(BigInt(BAT) | 6n, BAT + 8), []],
  ['BAT entry at file offset 0', (b) => b.writeBigUInt64LE(6n, BAT + 8), []],
  ['BAT entry offset overflowing', (b) => b.writeBigUInt64LE(0xfffffffffff00006n, BAT + 8), []],
];

const COMMANDS = [
  'img info -f vhdx m.vhdx',
  'img check -f vhdx m.vhdx',
  "io -f vhdx -c 'read -v 0 16' -c 'read 8M 2M' -c 'write -P 7 9M 4k' -c 'read -P 7 9M 4k' m.vhdx",
];

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

function build(_dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f vhdx m.vhdx 64M && qemu-io -c "write -P 1 0 64k" -c "write -P 2 8M 1M" m.vhdx > /dev/null');
}

describe('malformed images: the same lines and exit codes', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  });
  afterAll(() => fx.dispose());

  for (const [name, edit, fix] of CASES) {
    it(name, async () => {
      for (const cmd of COMMANDS) {
        const dq = fx.copy();
        const dd = fx.copy();
        for (const d of [dq, dd]) patch(join(d, 'm.vhdx'), edit, fix);
        const [tool, ...args] = cmd.match(/'[^']*'|\S+/g)!.map((w) => w.replace(/^'|'$/g, ''));
        await expectSame(tool as 'img' | 'io', args, dq, dd);
      }
    });
  }
});

describe('seeded random edits of the metadata structures', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  });
  afterAll(() => fx.dispose());

  /** Where edits land: header fields, region entries, metadata entries and items, the first BAT entries. */
  const SPOTS = [
    [H1, 80], [H2, 80], [RT, 80], [MD, 200], [ITEMS, 40], [BAT, 32],
  ] as const;
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    it(`seed ${seed}`, async () => {
      const rnd = prng(seed);
      const edits: Array<[number, number]> = [];
      for (let i = 0; i < 3; i++) {
        const [at, n] = SPOTS[Math.floor(rnd() * SPOTS.length)]!;
        edits.push([at + Math.floor(rnd() * n), 1 << Math.floor(rnd() * 8)]);
      }
      const dq = fx.copy();
      const dd = fx.copy();
      for (const d of [dq, dd]) patch(join(d, 'm.vhdx'), (b) => edits.forEach(([at, bit]) => (b[at] ^= bit)));
      for (const cmd of COMMANDS.slice(0, 2)) {
        const [tool, ...args] = cmd.split(' ');
        await expectSame(tool as 'img', args, dq, dd);
      }
    });
  }
});

describe('errors name the value', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  });
  afterAll(() => fx.dispose());

  const named: Array<[string, Edit, RegExp]> = [
    ['block size', (b) => b.writeUInt32LE(3 * MiB, ITEMS), /block size 3145728/],
    ['logical sector size', (b) => b.writeUInt32LE(4096, ITEMS + 32), /logical sector size 4096/],
    ['log version', (b) => void (b.writeUInt16LE(1, H1 + 64), b.writeUInt16LE(1, H2 + 64)), /log version 1/],
    ['region count', (b) => b.writeUInt32LE(2048, RT + 8), /entry count 2048/],
    ['BAT past the file', (b) => b.writeBigUInt64LE(BigInt(200 * MiB) | 6n, BAT + 8), /start offset 209715200/],
  ];
  for (const [name, edit, re] of named) {
    it(name, async () => {
      const d = fx.copy();
      patch(join(d, 'm.vhdx'), edit);
      const graph = createNodeGraph();
      let err: unknown;
      try {
        const bb = await BlockBackend.open(graph, join(d, 'm.vhdx'), { format: 'vhdx', readOnly: true });
        await bb.close();
      } catch (e) {
        err = e;
      }
      expect(isBlockError(err)).toBe(true);
      expect((err as Error).message).toMatch(re);
    });
  }
});

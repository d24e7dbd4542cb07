/**
 * vmdk images made by qemu-img / qemu-io 7.2 in every subformat (sparse,
 * flat, streamOptimized with compressed grains, a hand-made COWD file,
 * zeroed grains, a parentFileNameHint chain, a descriptor in a
 * subdirectory naming its extents relatively): `diskworker img convert -O
 * raw` gives qemu-img's bytes, and info (human and JSON), map and check
 * print what qemu-img prints.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, hasQemu, ours, theirs, words } from '../../cli/harness.js';
import { bytesOf, ioLine, MiB, norm, seededWrites } from './helpers.js';

const SIZE = 5 * MiB + 512;

/**
 * An ESX "COWD" sparse file (QEMU's VMDK3): 1 MiB of 4 KiB grains, one grain
 * directory entry, a 4096-entry grain table, two grains. The sector at 0x200
 * holds the CID text QEMU looks for there.
 */
function cowdImage(path: string): void {
  const b = Buffer.alloc(50 * 512);
  b.write('COWD', 0, 'latin1');
  b.writeUInt32LE(1, 4); // version
  b.writeUInt32LE(2048, 12); // disk sectors
  b.writeUInt32LE(8, 16); // granularity
  b.writeUInt32LE(2, 20); // grain directory at sector 2
  b.writeUInt32LE(1, 24); // one entry
  b.write('CID=2a\nparentCID=ffffffff\n', 512, 'latin1');
  b.writeUInt32LE(3, 2 * 512); // grain table at sector 3 (32 sectors)
  b.writeUInt32LE(35, 3 * 512 + 3 * 4); // guest grain 3 at sector 35
  b.writeUInt32LE(43, 3 * 512 + 200 * 4); // guest grain 200 at sector 43 (past the end: zeros)
  for (let i = 0; i < 4096; i++) b[35 * 512 + i] = (i * 7) & 0xff;
  writeFileSync(path, b);
}

/**
 * An ESXi seSparse extent and its descriptor: 1 MiB of 4 KiB grains, one
 * grain table, two grains, one zeroed grain entry.
 */
function seSparseImage(dir: string): void {
  const b = Buffer.alloc(83 * 512);
  const q = (i: number, v: bigint) => b.writeBigUInt64LE(v, i * 8);
  q(0, 0xcafebaben);
  q(1, 0x200000001n);
  q(2, 2048n); // capacity
  q(3, 8n); // grain size
  q(4, 64n); // grain table size
  q(10, 1n); // volatile header at sector 1
  q(11, 1n);
  q(16, 2n); // grain directory at sector 2, one sector
  q(17, 1n);
  q(18, 3n); // grain tables from sector 3
  q(19, 64n);
  q(24, 67n); // grains from sector 67
  q(25, 16n);
  b.writeBigUInt64LE(0xcafecafen, 512);
  b.writeBigUInt64LE(0x1000000000000000n, 2 * 512);
  b.writeBigUInt64LE(0x3000000000000000n, 3 * 512 + 1 * 8); // guest grain 1: grain 0
  b.writeBigUInt64LE(0x2000000000000000n, 3 * 512 + 5 * 8); // guest grain 5: zeroed
  b.writeBigUInt64LE(0x3000000000000001n, 3 * 512 + 7 * 8); // guest grain 7: grain 1
  for (let i = 0; i < 8192; i++) b[67 * 512 + i] = (i * 13 + 1) & 0xff;
  writeFileSync(join(dir, 'se.bin'), b);
  writeFileSync(join(dir, 'sesparse.vmdk'), '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="seSparse"\n\nRW 2048 SESPARSE "se.bin"\n');
}

function build(dir: string, sh: (cmd: string) => void): void {
  cowdImage(join(dir, 'cowd.vmdk'));
  seSparseImage(dir);
  const img = (name: string, opts: string, size: number | string, seed: number) => {
    sh(`qemu-img create -q -f vmdk ${opts ? `-o ${opts}` : ''} ${name} ${size}`);
    if (seed) sh(`qemu-io ${ioLine(seededWrites(seed, typeof size === 'number' ? size : 4 * MiB, 10), name)} >/dev/null`);
  };
  img('sparse.vmdk', '', SIZE, 1);
  img('empty.vmdk', '', '3M', 0);
  img('zeroed.vmdk', 'zeroed_grain=on', SIZE, 2);
  img('flat.vmdk', 'subformat=monolithicFlat,adapter_type=lsilogic', SIZE, 3);
  img('stream.vmdk', 'subformat=streamOptimized', '1M', 0);
  sh(`qemu-io ${ioLine(['write -P 0x55 0 64k', 'write -P 0x66 192k 64k', 'write -z 512k 64k'], 'stream.vmdk')} >/dev/null`);
  sh('qemu-img convert -O vmdk -o subformat=streamOptimized sparse.vmdk conv-stream.vmdk');
  img('base.vmdk', '', 2 * MiB, 4);
  sh('qemu-img create -q -f vmdk -b base.vmdk -F vmdk over.vmdk');
  sh(`qemu-io ${ioLine(['write -P 0x77 100k 70k', 'write -z 1M 64k'], 'over.vmdk')} >/dev/null`);
  // A hand-written descriptor: a flat extent at an offset, a sparse one, lines QEMU skips (not RW), CRLF ends.
  sh('head -c 300000 /dev/urandom > part-a.bin && qemu-img create -q -f vmdk part-b.vmdk 1M');
  sh(`qemu-io ${ioLine(['write -P 0x99 4k 70k'], 'part-b.vmdk')} >/dev/null`);
  sh('head -c 70000 /dev/urandom > ext/part-c.bin 2>/dev/null || (mkdir ext && head -c 70000 /dev/urandom > ext/part-c.bin)');
  sh(
    `printf '# Disk DescriptorFile\\r\\nversion=1\\r\\nCID=12345678\\r\\nparentCID=ffffffff\\r\\ncreateType="twoGbMaxExtentFlat"\\r\\n` +
      `RW 500 FLAT "part-a.bin" 7\\r\\nRDONLY 100 FLAT "part-a.bin" 0\\r\\nRW 2048 SPARSE "part-b.vmdk"\\r\\nNOACCESS 9 FLAT "x" 0\\r\\nRW 128 FLAT "ext/part-c.bin" 1\\r\\n' > multi.vmdk`,
  );
  sh('mkdir sub && qemu-img create -q -f vmdk -o subformat=monolithicFlat sub/in-dir.vmdk 1M');
  sh(`qemu-io ${ioLine(['write -P 0x88 1000 3000'], 'sub/in-dir.vmdk')} >/dev/null`);
}

const ALL = ['cowd.vmdk', 'sesparse.vmdk', 'multi.vmdk', 'sparse.vmdk', 'empty.vmdk', 'zeroed.vmdk', 'flat.vmdk', 'stream.vmdk', 'conv-stream.vmdk', 'base.vmdk', 'over.vmdk', 'sub/in-dir.vmdk'];
/** Flat extents are sparse host files qemu-img map sees holes in (Node copies write them whole). */
const MAPPABLE = ALL.filter((f) => !['flat.vmdk', 'sub/in-dir.vmdk'].includes(f));

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('vmdk images made by QEMU, read by diskworker', () => {
  let fx: Fixture;
  /** One copy for the commands that change nothing (both tools run in it). */
  let dir: string;
  beforeAll(() => {
    fx = new Fixture(build);
    dir = fx.copy();
  }, 60_000);
  afterAll(() => fx.dispose());
  const both = async (tool: 'img' | 'io', line: string) => ({ theirs: norm(theirs(tool, words(line), dir)), ours: norm(await ours(tool, words(line), dir)) });

  for (const file of ALL) {
    it(`${file}: convert -O raw gives qemu-img's bytes`, async () => {
      const dq = dir;
      const t = theirs('img', ['convert', '-O', 'raw', file, 'q.raw'], dq);
      const o = await ours('img', ['convert', '-O', 'raw', file, 'o.raw'], dq);
      expect(norm(o)).toEqual(norm(t));
      expect(bytesOf(dq, 'o.raw').equals(bytesOf(dq, 'q.raw'))).toBe(true);
    });
  }

  for (const file of ALL) {
    for (const line of [`info ${file}`, `info --output=json ${file}`, `info --backing-chain ${file}`, `check ${file}`, `check --output=json ${file}`, `check -r all ${file}`]) {
      it(`img ${line}`, async () => {
        const g = await both('img', line);
        expect(g.ours).toEqual(g.theirs);
      });
    }
  }

  for (const file of MAPPABLE) {
    for (const line of [`map ${file}`, `map --output=json ${file}`]) {
      it(`img ${line}`, async () => {
        const g = await both('img', line);
        expect(g.ours).toEqual(g.theirs);
      });
    }
  }

  it('qemu-io reads, alloc and map agree on the chain and the compressed image', async () => {
    for (const [file, cmds] of [
      ['over.vmdk', ['read -v 102390 20', 'read -P 0 1M 64k', 'alloc 0 2M', 'map']],
      ['stream.vmdk', ['read -P 0x55 0 64k', 'read -P 0 64k 128k', 'read -v 196600 16', 'alloc 0 1M', 'map']],
    ] as const) {
      const g = await both('io', ioLine([...cmds], file));
      expect(g.ours, file).toEqual(g.theirs);
    }
    // seSparse opens read-only only.
    for (const line of [`-r ${ioLine(['read -v 4090 16', 'read -P 0 20k 4k', 'read -v 28680 16', 'alloc 0 1M', 'map'], 'sesparse.vmdk')}`, ioLine(['read 0 512'], 'sesparse.vmdk')]) {
      const g = await both('io', line);
      expect(g.ours, line).toEqual(g.theirs);
    }
  });

  it('img compare against the raw copy and between subformats', async () => {
    const dq = dir;
    theirs('img', ['convert', '-O', 'raw', 'sparse.vmdk', 'sparse.raw'], dq);
    for (const args of [['compare', 'sparse.vmdk', 'sparse.raw'], ['compare', 'sparse.vmdk', 'conv-stream.vmdk'], ['compare', 'sparse.vmdk', 'zeroed.vmdk'], ['compare', '-s', 'over.vmdk', 'base.vmdk']]) {
      const t = theirs('img', args, dq);
      const o = await ours('img', args, dq);
      expect(norm(o), args.join(' ')).toEqual(norm(t));
    }
  });
});

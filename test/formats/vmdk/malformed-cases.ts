/**
 * Damaged vmdk images: header fields, footers, grain tables, compressed
 * grains and descriptors edited by hand in images qemu-img made. Each is
 * opened, read and checked through qemu-img / qemu-io 7.2 and diskworker:
 * the same messages and exit codes (or, where QEMU has none, a BlockError
 * naming the value), never a hang or an allocation sized by the damage.
 * The cases are split over two test files (sparse files, descriptors).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, hasQemu, ours, theirs } from '../../cli/harness.js';
import { ioLine, norm } from './helpers.js';

/** Byte offsets of KDMV header fields (written by hand on purpose, not from src/). */
const H = { version: 4, flags: 8, capacity: 12, granularity: 20, descOffset: 28, gtes: 44, rgd: 48, gd: 56, grainOffset: 64, compress: 77 } as const;

type Edit = (b: Buffer) => Buffer | void;

function patch(dir: string, from: string, to: string, edit: Edit): void {
  const b = readFileSync(join(dir, from));
  writeFileSync(join(dir, to), edit(b) ?? b);
}

/** The sector the first grain table of a qemu-img image starts at (GD entry 0). */
const gt0 = (b: Buffer): number => b.readUInt32LE(Number(b.readBigUInt64LE(H.gd)) * 512);

const DESC = (extents: string, extra = '') =>
  `# Disk DescriptorFile\nversion=1\nCID=abcdef01\nparentCID=ffffffff\ncreateType="monolithicFlat"\n${extra}\n# Extent description\n${extents}\n`;

const CASES: Array<[string, string, Edit | string]> = [
  ['version 4', 'sparse.vmdk', (b) => void b.writeUInt32LE(4, H.version)],
  ['version 3 without compression', 'sparse.vmdk', (b) => void b.writeUInt32LE(3, H.version)],
  ['grain tables of 1024 entries', 'sparse.vmdk', (b) => void b.writeUInt32LE(1024, H.gtes)],
  ['grain size 0', 'sparse.vmdk', (b) => void b.writeBigUInt64LE(0n, H.granularity)],
  ['grain size 2^64-1', 'sparse.vmdk', (b) => void b.writeBigUInt64LE(0xffffffffffffffffn, H.granularity)],
  ['grain of 2 GiB', 'sparse.vmdk', (b) => void b.writeBigUInt64LE(0x400000n, H.granularity)],
  ['grain directory of 40M entries', 'sparse.vmdk', (b) => {
    b.writeUInt32LE(1, H.gtes);
    b.writeBigUInt64LE(8n, H.granularity);
    b.writeBigUInt64LE(8n * 40n * 1024n * 1024n, H.capacity);
  }],
  ['grain directory of 32M entries past the end of the file', 'sparse.vmdk', (b) => {
    b.writeUInt32LE(512, H.gtes);
    b.writeBigUInt64LE(1n, H.granularity);
    b.writeBigUInt64LE(512n * 32n * 1024n * 1024n, H.capacity);
  }],
  ['capacity 2^64-1', 'sparse.vmdk', (b) => void b.writeBigUInt64LE(0xffffffffffffffffn, H.capacity)],
  ['grains start past the end of the file', 'sparse.vmdk', (b) => void b.writeBigUInt64LE(100000n, H.grainOffset)],
  ['grain directory at the end, no footer', 'sparse.vmdk', (b) => void b.writeBigUInt64LE(0xffffffffffffffffn, H.gd)],
  ['grain directory far past the end', 'sparse.vmdk', (b) => {
    b.writeBigUInt64LE(0xffffffffn, H.gd);
    b.writeUInt32LE(b.readUInt32LE(H.flags) & ~2, H.flags);
  }],
  ['grain table entry past the end of the file', 'sparse.vmdk', (b) => void b.writeUInt32LE(0x7fffffff, gt0(b) * 512 + 4)],
  ['grain directory entry past the end of the file', 'sparse.vmdk', (b) => void b.writeUInt32LE(0xfffffff0, Number(b.readBigUInt64LE(H.gd)) * 512)],
  ['compressed grain with marker size 0', 'stream.vmdk', (b) => void b.writeUInt32LE(0, b.readUInt32LE(gt0(b) * 512) * 512 + 8)],
  ['compressed grain with a huge marker size', 'stream.vmdk', (b) => void b.writeUInt32LE(0xfffffff0, b.readUInt32LE(gt0(b) * 512) * 512 + 8)],
  ['compressed grain with garbage data', 'stream.vmdk', (b) => void b.fill(0x41, b.readUInt32LE(gt0(b) * 512) * 512 + 12, b.readUInt32LE(gt0(b) * 512) * 512 + 40)],
  ['no CID in the descriptor', 'sparse.vmdk', (b) => void b.write('XID', 0x200 + 0x22, 'latin1')],
  ['unterminated parentFileNameHint', 'sparse.vmdk', (b) => void b.write('parentFileNameHint="abc', 0x200 + 0x80, 'latin1')],
  ['a file of 3 bytes', 'sparse.vmdk', (b) => b.subarray(0, 3)],
  ['descriptor without createType', '', DESC('RW 8 FLAT "data.bin" 0').replace('createType', 'kind')],
  ['descriptor of an unknown type', '', DESC('RW 8 FLAT "data.bin" 0').replace('monolithicFlat', 'fancyDisk')],
  ['monolithicSparse descriptor file', '', DESC('RW 8 SPARSE "sparse.vmdk"').replace('monolithicFlat', 'monolithicSparse')],
  ['FLAT extent line without an offset', '', DESC('RW 8 FLAT "data.bin"')],
  ['FLAT extent line with a negative offset', '', DESC('RW 8 FLAT "data.bin" -1')],
  ['VMFS extent line with an offset', '', DESC('RW 8 VMFS "data.bin" 4')],
  ['SPARSE extent line with an offset', '', DESC('RW 8 SPARSE "sparse.vmdk" 4')],
  ['extent file missing', '', DESC('RW 8 FLAT "missing.bin" 0')],
  ['extent of zero sectors and unknown types (skipped)', '', DESC('RW 0 FLAT "data.bin" 0\nRW 8 ZIP "data.bin" 0\nRW 4 FLAT "data.bin" 0')],
  ['extent line with a 600-byte name', '', DESC(`RW 8 FLAT "${'n'.repeat(600)}" 0`)],
  ['extent size near 2^63 sectors', '', DESC('RW 9223372036854775807 FLAT "data.bin" 0')],
  ['flat extent offset near 2^63 sectors', '', DESC('RW 8 FLAT "data.bin" 9223372036854775000')],
  ['SESPARSE extent', '', DESC('RW 8 SESPARSE "sparse.vmdk"').replace('monolithicFlat', 'seSparse')],
  ['descriptor naming itself as a sparse extent', '', DESC('RW 8 SPARSE "self.vmdk"').replace('monolithicFlat', 'twoGbMaxExtentSparse')],
];

/** Cases whose image is terabytes of tiny grains: walking all of it (check, map) takes QEMU hours too. */
const HUGE = new Set(['grain directory of 32M entries past the end of the file']);

/**
 * Where we differ from QEMU on purpose, by case and qemu-io command (every
 * command when none is named): what we print instead.
 */
const DIVERGES: Record<string, { command?: string; ours: RegExp }> = {
  // QEMU writes the data over the header (an offset it never set): we refuse.
  'grain directory far past the end': { command: 'write -P 1 0 512', ours: /write failed: Input\/output error/ },
  // QEMU's offset wraps to a negative number in its map; ours cannot be a file offset and fails.
  'flat extent offset near 2^63 sectors': { command: 'map', ours: /Invalid argument/ },
};

function commands(f: string, huge: boolean): Array<['img' | 'io', string[]]> {
  const out: Array<['img' | 'io', string[]]> = [['img', ['info', '-f', 'vmdk', f]]];
  // QEMU reads the whole huge directory at each open: 128 MiB, slow on a loaded machine.
  if (!huge) {
    out.push(['io', ['-f', 'vmdk', '-r', '-c', 'read -P 0 0 512', '-c', 'read 0 64k', '-c', 'alloc 0 1M', f]]);
    out.push(['io', ['-f', 'vmdk', '-c', 'write -P 1 0 512', '-c', 'read -P 1 0 512', f]]);
    out.splice(1, 0, ['img', ['check', '-f', 'vmdk', f]], ['img', ['map', '-f', 'vmdk', '--output=json', f]]);
  }
  return out;
}

function build(_dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f vmdk sparse.vmdk 1M');
  sh(`qemu-io ${ioLine(['write -P 0x5a 0 128k'], 'sparse.vmdk')} >/dev/null`);
  sh('qemu-img create -q -f vmdk -o subformat=streamOptimized stream.vmdk 1M');
  sh(`qemu-io ${ioLine(['write -P 0x5a 0 64k'], 'stream.vmdk')} >/dev/null`);
  sh('head -c 8192 /dev/zero | tr "\\0" "\\7" > data.bin');
}

/** Writes case `i` into `dir` (a copy of the fixture). */
function makeCase(dir: string, i: number): string {
  const [, from, edit] = CASES[i]!;
  const name = `case${i}.vmdk`;
  if (typeof edit === 'string') writeFileSync(join(dir, name), edit.replace('"self.vmdk"', `"${name}"`));
  else patch(dir, from, name, edit);
  return name;
}

/** Defines the suite for the cases whose source is (`descriptors` false) or is not a sparse file. */
export function malformedSuite(descriptors: boolean): void {
  it('compares against qemu-img 7.2', () => {
    expect(hasQemu()).toBe(true);
  });

  describe(`malformed vmdk ${descriptors ? 'descriptors' : 'sparse files'}: QEMU messages, bounded work`, () => {
    let fx: Fixture;
    beforeAll(() => {
      fx = new Fixture(build);
    }, 60_000);
    afterAll(() => fx.dispose());

    CASES.forEach(([what, from], i) => {
      if ((from === '') !== descriptors) return;
      it(what, async () => {
        // Separate copies: QEMU may damage an image further (see DIVERGES).
        const dq = fx.copy();
        const dd = fx.copy();
        makeCase(dq, i);
        for (const [tool, args] of commands(makeCase(dd, i), HUGE.has(what))) {
          const t = norm(theirs(tool, args, dq));
          const o = norm(await ours(tool, args, dd));
          const line = `${tool} ${args.join(' ')}`;
          const known = DIVERGES[what];
          if (known && (known.command === undefined || args.includes(known.command))) {
            expect(o.stdout + o.stderr, line).toMatch(known.ours);
            continue;
          }
          expect(o, line).toEqual(t);
        }
      }, 50_000);
    });
  });
}

/**
 * Shared pieces of the VDI tests: seeded qemu-io command lists, a hand-made
 * image in VirtualBox's layout, the header's field offsets, and running one
 * command line through both tools on copies of a fixture.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { prng } from '../../prng.js';
import { golden, words, type Fixture, type RunResult } from '../../cli/harness.js';

export const MiB = 1 << 20;

/** `count` seeded qemu-io writes inside `size` bytes: patterns, zero writes, unaligned and block-crossing ranges. */
export function seededWrites(seed: number, size: number, count: number): string[] {
  const rnd = prng(seed);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const aligned = rnd() < 0.5;
    const unit = aligned ? 512 : 1;
    const len = Math.max(unit, Math.floor((rnd() * Math.min(size, 3 * MiB)) / unit) * unit);
    const off = Math.floor((rnd() * (size - len)) / unit) * unit;
    if (rnd() < 0.15) out.push(`write -z ${off} ${len}`);
    else out.push(`write -P 0x${(1 + Math.floor(rnd() * 254)).toString(16)} ${off} ${len}`);
  }
  return out;
}

/** A qemu-io command line: `-f vdi -c '...' ... file`. */
export function ioLine(cmds: string[], file: string): string {
  return `-f vdi ${cmds.map((c) => `-c '${c}'`).join(' ')} ${file}`;
}

/** Field offsets of the VDI header (the tests write them by hand on purpose, not through src/). */
export const F = {
  signature: 64,
  version: 68,
  headerSize: 72,
  imageType: 76,
  offsetBmap: 340,
  offsetData: 344,
  sectorSize: 360,
  diskSize: 368,
  blockSize: 376,
  blocksInImage: 384,
  blocksAllocated: 388,
  uuidImage: 392,
  uuidLastSnap: 408,
  uuidLink: 424,
  uuidParent: 440,
} as const;

/**
 * An image laid out as VirtualBox writes them: its own text, header size
 * 0x190, the map at 1 MiB and the data at 2 MiB, blocks in slots out of
 * order, one block discarded (0xfffffffe), an odd disk size.
 */
export function vboxImage(path: string): void {
  const blocks = 8;
  const slots: Array<[number, number]> = [
    [0, 2],
    [5, 0],
    [3, 1],
    [7, 3],
  ];
  const dataAt = 2 * MiB;
  const b = Buffer.alloc(dataAt + slots.length * MiB);
  b.write('<<< Oracle VM VirtualBox Disk Image >>>\n', 0, 'latin1');
  b.writeUInt32LE(0xbeda107f, F.signature);
  b.writeUInt32LE(0x00010001, F.version);
  b.writeUInt32LE(0x190, F.headerSize);
  b.writeUInt32LE(1, F.imageType);
  b.write('a description', 84, 'latin1');
  b.writeUInt32LE(MiB, F.offsetBmap);
  b.writeUInt32LE(dataAt, F.offsetData);
  b.writeUInt32LE(512, F.sectorSize);
  b.writeBigUInt64LE(BigInt(blocks * MiB - 1000), F.diskSize);
  b.writeUInt32LE(MiB, F.blockSize);
  b.writeUInt32LE(blocks, F.blocksInImage);
  b.writeUInt32LE(slots.length, F.blocksAllocated);
  for (let i = 0; i < 16; i++) b[F.uuidImage + i] = 0x10 + i;
  for (let i = 0; i < blocks; i++) b.writeUInt32LE(0xffffffff, MiB + 4 * i);
  b.writeUInt32LE(0xfffffffe, MiB + 4 * 6);
  for (const [block, slot] of slots) {
    b.writeUInt32LE(slot, MiB + 4 * block);
    const at = dataAt + slot * MiB;
    for (let i = 0; i < MiB; i += 512) b.fill((block * 37 + i / 512) & 0xff, at + i, at + i + 512);
  }
  writeFileSync(path, b);
}

/** Both tools' answers to one command line, normalized. */
export async function both(fx: Fixture, tool: 'img' | 'io', line: string): Promise<{ theirs: RunResult; ours: RunResult }> {
  const g = await golden(fx, { tool, args: words(line) });
  return { theirs: g.theirs, ours: g.ours };
}

/** The bytes of `file` in directory `dir`. */
export function bytesOf(dir: string, file: string): Buffer {
  return readFileSync(join(dir, file));
}

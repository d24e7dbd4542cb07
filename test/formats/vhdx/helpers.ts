/**
 * Helpers of the vhdx tests: masking what two tools' images may differ in
 * (random GUIDs and sequence numbers, and the checksums over them), editing
 * structures of qemu-img-made images with valid checksums, and making a
 * dirty log from an image qemu-io wrote.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { expect } from 'vitest';
import { setVhdxChecksum, vhdxChecksum } from '../../../src/formats/vhdx/crc32c.js';
import { prng } from '../../prng.js';

export { both, expectSame, expectSameRaw } from '../vpc/helpers.js';

const KiB = 1024;
export const MiB = 1024 * 1024;
export const HEADERS = [64 * KiB, 128 * KiB];
export const REGION_TABLES = [192 * KiB, 256 * KiB];

/** The current header's offset (higher sequence number). */
export function currentHeader(b: Buffer): number {
  const [a, c] = HEADERS.map((h) => b.readBigUInt64LE(h + 8)) as [bigint, bigint];
  return a > c ? HEADERS[0]! : HEADERS[1]!;
}

/** The BAT and metadata region offsets from the first region table (qemu-img puts the BAT first). */
export function regions(b: Buffer): { bat: number; batLength: number; metadata: number } {
  const t = REGION_TABLES[0]!;
  return { bat: Number(b.readBigUInt64LE(t + 16 + 16)), batLength: b.readUInt32LE(t + 16 + 24), metadata: Number(b.readBigUInt64LE(t + 48 + 16)) };
}

/**
 * The bytes with the run-dependent parts zeroed: both headers' checksum,
 * sequence number and GUIDs, each log entry's checksum, log GUID and the
 * unused rest of its descriptor sectors, and the page 83 GUID.
 */
export function maskVolatile(b: Buffer): Buffer {
  const c = Buffer.from(b);
  for (const h of HEADERS) c.fill(0, h + 4, h + 64);
  const cur = currentHeader(b);
  const logOffset = Number(b.readBigUInt64LE(cur + 72));
  const logLength = b.readUInt32LE(cur + 68);
  for (let s = logOffset; s < logOffset + logLength && s + 4096 <= c.length; s += 4096) {
    if (c.toString('latin1', s, s + 4) === 'loge') {
      c.fill(0, s + 4, s + 8);
      c.fill(0, s + 32, s + 48);
      // QEMU leaves the rest of the descriptor sectors as its buffer held them (uninitialised).
      const descEnd = 64 + 32 * c.readUInt32LE(s + 24);
      c.fill(0, Math.min(c.length, s + descEnd), Math.min(c.length, s + Math.ceil(descEnd / 4096) * 4096));
    }
  }
  const md = regions(b).metadata;
  // The third item of qemu-img's table is page 83.
  const page83 = md + b.readUInt32LE(md + 32 + 2 * 32 + 16);
  c.fill(0, page83, page83 + 16);
  return c;
}

/** Both headers and both region tables carry valid checksums. */
export function expectValidChecksums(b: Buffer): void {
  for (const h of HEADERS) {
    const blk = b.subarray(h, h + 4096);
    expect(blk.readUInt32LE(4), `header at ${h}`).toBe(vhdxChecksum(blk, 4));
  }
  for (const t of REGION_TABLES) {
    const blk = b.subarray(t, t + 64 * KiB);
    expect(blk.readUInt32LE(4), `region table at ${t}`).toBe(vhdxChecksum(blk, 4));
  }
}

/** Edits the file's bytes with `edit`, then fixes the checksums of the headers and region tables it names. */
export function patch(file: string, edit: (b: Buffer) => void, fix: Array<'headers' | 'regions'> = ['headers', 'regions']): void {
  const b = readFileSync(file);
  edit(b);
  if (fix.includes('headers')) for (const h of HEADERS) setVhdxChecksum(b.subarray(h, h + 4096), 4);
  if (fix.includes('regions')) for (const t of REGION_TABLES) setVhdxChecksum(b.subarray(t, t + 64 * KiB), 4);
  writeFileSync(file, b);
}

/**
 * Makes the image as it was when its last BAT update was in the log but not
 * yet replayed (a crash between the two): the log entry with the highest
 * sequence number is made current again (its log GUID back in the current
 * header), and the BAT sector it describes gets `stale` (the sector before
 * the write), or is left as is.
 */
export function makeDirty(file: string, stale?: (batSector: Buffer) => void): { sequence: bigint; fileOffset: number } {
  const b = readFileSync(file);
  const cur = currentHeader(b);
  const logOffset = Number(b.readBigUInt64LE(cur + 72));
  const logLength = b.readUInt32LE(cur + 68);
  let best: { seq: bigint; at: number } | undefined;
  for (let s = logOffset; s < logOffset + logLength; s += 4096) {
    if (b.toString('latin1', s, s + 4) !== 'loge') continue;
    const seq = b.readBigUInt64LE(s + 16);
    if (!best || seq > best.seq) best = { seq, at: s };
  }
  if (!best) throw new Error(`${file}: no log entry`);
  b.copy(b, cur + 48, best.at + 32, best.at + 48);
  setVhdxChecksum(b.subarray(cur, cur + 4096), 4);
  const fileOffset = Number(b.readBigUInt64LE(best.at + 64 + 16));
  stale?.(b.subarray(fileOffset, fileOffset + 4096));
  writeFileSync(file, b);
  return { sequence: best.seq, fileOffset };
}

/**
 * A seeded qemu-io command sequence over an image of `size` bytes in blocks
 * of `block` bytes, whose model of the contents (`before`: pattern, offset,
 * length of what the image holds already) makes its reads verifiable.
 */
export function commandSequence(seed: number, size: number, block: number, count: number, before: Array<[number, number, number]> = []): string[] {
  const rnd = prng(seed);
  const model = new Uint8Array(size);
  for (const [pat, off, len] of before) model.fill(pat, off, off + len);
  const cmds: string[] = [];
  const int = (n: number) => Math.floor(rnd() * n);
  // Mostly near block boundaries, sometimes anywhere; whole sectors (the driver's alignment) or not.
  const offset = (len: number) => {
    const hot = [0, block, 2 * block, size - len].filter((x) => x >= 0);
    const base = rnd() < 0.6 ? hot[int(hot.length)]! + int(65536) - 32768 : int(size);
    return Math.max(0, Math.min(size - len, base));
  };
  for (let i = 0; i < count; i++) {
    const len = 1 + int(rnd() < 0.2 ? 3 << 20 : 70000);
    const off = offset(len);
    const pat = 1 + int(254);
    const k = rnd();
    if (k < 0.35) {
      cmds.push(`write -P ${pat} ${off} ${len}`);
      model.fill(pat, off, off + len);
    } else if (k < 0.45) {
      cmds.push(`write -z ${off} ${len}`);
      model.fill(0, off, off + len);
    } else if (k < 0.55) {
      const half = Math.floor(len / 2) || 1;
      if (half < len) {
        cmds.push(`writev -P ${pat} ${off} ${half} ${len - half}`);
        model.fill(pat, off, off + len);
      }
    } else if (k < 0.65) {
      cmds.push(`aio_write -P ${pat} ${off} ${len}`, 'aio_flush');
      model.fill(pat, off, off + len);
    } else if (k < 0.85) {
      const v = model[off]!;
      const same = model.subarray(off, off + len).every((x) => x === v);
      cmds.push(same ? `read -P ${v} ${off} ${len}` : `read -v ${off} ${Math.min(len, 64)}`);
    } else if (k < 0.92) {
      cmds.push(`discard ${off} ${len}`);
    } else if (k < 0.96) {
      cmds.push(`alloc ${off} ${len}`);
    } else {
      cmds.push('map');
    }
  }
  cmds.push('map', 'info');
  return cmds;
}

/** One descriptor of a crafted log entry: 4 KiB of data at a file offset, or a range of zeros. */
export type CraftedDesc = { data: Buffer; offset: number } | { zero: number; offset: number };

/**
 * A log entry as the VHDX spec lays it out (what Hyper-V writes; QEMU itself
 * only ever writes one data descriptor): header and descriptors in whole
 * sectors, then a data sector per data descriptor, with a valid checksum.
 */
export function craftLogEntry(e: { sequence: bigint; logGuid: Buffer; tail: number; flushed: bigint; last: bigint; descs: CraftedDesc[] }): Buffer {
  const descSectors = Math.ceil((e.descs.length + 2) / 128);
  const dataSectors = e.descs.filter((d) => 'data' in d).length;
  const b = Buffer.alloc((descSectors + dataSectors) * 4096);
  b.write('loge', 0, 'latin1');
  b.writeUInt32LE(b.length, 8);
  b.writeUInt32LE(e.tail, 12);
  b.writeBigUInt64LE(e.sequence, 16);
  b.writeUInt32LE(e.descs.length, 24);
  e.logGuid.copy(b, 32);
  b.writeBigUInt64LE(e.flushed, 48);
  b.writeBigUInt64LE(e.last, 56);
  let data = descSectors * 4096;
  e.descs.forEach((d, i) => {
    const at = 64 + 32 * i;
    b.writeBigUInt64LE(BigInt(d.offset), at + 16);
    b.writeBigUInt64LE(e.sequence, at + 24);
    if ('zero' in d) {
      b.write('zero', at, 'latin1');
      b.writeBigUInt64LE(BigInt(d.zero), at + 8);
      return;
    }
    b.write('desc', at, 'latin1');
    d.data.copy(b, at + 4, 4092, 4096);
    d.data.copy(b, at + 8, 0, 8);
    b.write('data', data, 'latin1');
    b.writeUInt32LE(Number(e.sequence >> 32n), data + 4);
    d.data.copy(b, data + 8, 8, 4092);
    b.writeUInt32LE(Number(e.sequence & 0xffffffffn), data + 4092);
    data += 4096;
  });
  setVhdxChecksum(b, 4);
  return b;
}

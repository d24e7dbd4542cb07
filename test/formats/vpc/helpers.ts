/**
 * Helpers of the vpc tests: editing VHD footers and dynamic headers of
 * qemu-img-made images, masking what differs between two creates, and
 * running both tools.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { normalize, ours, theirs, type Tool } from '../../cli/harness.js';
import { FOOTER, vhdChecksum } from '../../../src/formats/vpc/footer.js';

const COOKIE = Buffer.from('conectix', 'latin1');

/** Offsets of the footer copies in a VHD file: 0 (dynamic) and the end. */
export function footerOffsets(b: Buffer): number[] {
  const at: number[] = [];
  if (b.subarray(0, 8).equals(COOKIE)) at.push(0);
  if (b.length >= 512 && b.subarray(b.length - 512, b.length - 504).equals(COOKIE) && b.length - 512 !== 0) at.push(b.length - 512);
  return at;
}

/** Edits every footer copy of `file` with `edit`, then stores a valid checksum (unless `keepChecksum`). */
export function patchFooter(file: string, edit: (footer: Buffer) => void, keepChecksum = false): void {
  const b = readFileSync(file);
  for (const at of footerOffsets(b)) {
    const f = b.subarray(at, at + 512);
    edit(f);
    if (!keepChecksum) f.writeUInt32BE(vhdChecksum(f, FOOTER.checksum), FOOTER.checksum);
  }
  writeFileSync(file, b);
}

/** Edits the dynamic disk header (at 512 in qemu-img's images; QEMU checks no header checksum). */
export function patchDynHeader(file: string, edit: (header: Buffer) => void): void {
  const b = readFileSync(file);
  edit(b.subarray(512, 1536));
  writeFileSync(file, b);
}

/** The bytes with what two creates of one image differ in (timestamp, checksum, UUID) zeroed in each footer. */
export function maskVolatile(b: Buffer): Buffer {
  const c = Buffer.from(b);
  for (const at of footerOffsets(c)) {
    c.fill(0, at + FOOTER.timestamp, at + FOOTER.timestamp + 4);
    c.fill(0, at + FOOTER.checksum, at + FOOTER.uuid + 16);
  }
  return c;
}

/** Every footer copy carries a valid checksum. */
export function expectValidChecksums(b: Buffer): void {
  const at = footerOffsets(b);
  expect(at.length).toBeGreaterThan(0);
  for (const o of at) {
    const f = b.subarray(o, o + 512);
    expect(f.readUInt32BE(FOOTER.checksum), `footer at ${o}`).toBe(vhdChecksum(f, FOOTER.checksum));
  }
}

/** Runs one command through both tools in `dir` (qemu's in `dirQ`, ours in `dirO`), normalized. */
export async function both(tool: Tool, args: string[], dirQ: string, dirO: string = dirQ, input?: string) {
  const t = theirs(tool, args, dirQ, input);
  const o = await ours(tool, args, dirO, input);
  return {
    theirs: { code: t.code, out: normalize(t.stdout), err: normalize(t.stderr) },
    ours: { code: o.code, out: normalize(o.stdout), err: normalize(o.stderr) },
  };
}

/** Runs one command through both tools in the same directory and expects equal output and exit codes. */
export async function expectSame(tool: Tool, args: string[], dirQ: string, dirO: string = dirQ, input?: string): Promise<string> {
  const r = await both(tool, args, dirQ, dirO, input);
  expect(r.ours, `${tool} ${args.join(' ')}`).toEqual(r.theirs);
  return r.theirs.out;
}

/** `img convert -O raw` of `image` by both tools; expects equal bytes and returns them. */
export async function expectSameRaw(dir: string, image: string, fmt?: string): Promise<Buffer> {
  const f = fmt ? ['-f', fmt] : [];
  const q = theirs('img', ['convert', ...f, '-O', 'raw', image, `${image}.q.raw`], dir);
  expect(q.code, q.stderr).toBe(0);
  const o = await ours('img', ['convert', ...f, '-O', 'raw', image, `${image}.o.raw`], dir);
  expect(o.code, o.stderr).toBe(0);
  const a = readFileSync(join(dir, `${image}.q.raw`));
  const b = readFileSync(join(dir, `${image}.o.raw`));
  expect(b.length).toBe(a.length);
  expect(b.equals(a), `${image}: converted bytes differ`).toBe(true);
  return a;
}

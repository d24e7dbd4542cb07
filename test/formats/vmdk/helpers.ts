/**
 * Shared pieces of the vmdk tests: seeded qemu-io command lists, qemu-io
 * command lines, and the comparison of two vmdk files with the random CID
 * masked (QEMU picks a new one at create and at the first write).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { prng } from '../../prng.js';
import { normalize, type RunResult } from '../../cli/harness.js';

export const MiB = 1 << 20;

/** `count` seeded qemu-io writes inside `size` bytes: patterns, zero writes, unaligned and grain-crossing ranges. */
export function seededWrites(seed: number, size: number, count: number): string[] {
  const rnd = prng(seed);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const unit = rnd() < 0.5 ? 512 : 1;
    const len = Math.max(unit, Math.floor((rnd() * Math.min(size, 300 * 1024)) / unit) * unit);
    const off = Math.floor((rnd() * (size - len)) / unit) * unit;
    if (rnd() < 0.15) out.push(`write -z ${off} ${len}`);
    else out.push(`write -P 0x${(1 + Math.floor(rnd() * 254)).toString(16)} ${off} ${len}`);
  }
  return out;
}

/** A qemu-io command line: `-f vmdk -c '...' ... file`. */
export function ioLine(cmds: string[], file: string): string {
  return `-f vmdk ${cmds.map((c) => `-c '${c}'`).join(' ')} ${file}`;
}

/** The bytes of `file` in directory `dir`. */
export function bytesOf(dir: string, file: string): Buffer {
  return readFileSync(join(dir, file));
}

/** A copy of a descriptor area or file with every `CID=<hex>` value replaced (parentCID kept). */
export function maskCid(b: Buffer): Buffer {
  const s = b.toString('latin1').replace(/(^|[^t])CID=[0-9a-f]+\n/gm, '$1CID=<cid>\n');
  return Buffer.from(s, 'latin1');
}

/** A vmdk file with its CID masked: the descriptor area at 0x200 of a sparse file, or the whole descriptor file. */
export function masked(b: Buffer): Buffer {
  if (b.length >= 4 && b.subarray(0, 4).toString('latin1') === 'KDMV') {
    const area = b.subarray(0x200, 0x200 + 20 * 512);
    const nul = area.indexOf(0);
    const text = maskCid(area.subarray(0, nul < 0 ? area.length : nul));
    // The area's text with the CID masked, then zeros: the bytes after the text are QEMU's leftovers.
    const fixed = Buffer.alloc(area.length);
    text.copy(fixed);
    return Buffer.concat([b.subarray(0, 0x200), fixed, b.subarray(0x200 + area.length)]);
  }
  // A descriptor file: its text. What follows (leftovers of a longer CID, as above) and
  // the length (QEMU cuts a new descriptor file at its text's end) move with the CID's digits.
  const nul = b.indexOf(0);
  return maskCid(nul < 0 ? b : b.subarray(0, nul));
}

/** Whether `b` is a descriptor file (text), whose length depends on the CID's digits. */
export function isDescriptorFile(b: Buffer): boolean {
  return b.length >= 4 && b.subarray(0, 4).toString('latin1') !== 'KDMV' && b.toString('latin1', 0, Math.min(b.length, 4096)).includes('createType=');
}

export const norm = (r: RunResult): RunResult => ({ code: r.code, stdout: normalize(r.stdout), stderr: normalize(r.stderr) });

/** Info output with the CIDs (random at create) masked. */
export function maskInfo(text: string): string {
  return text.replace(/("?cid"?:? )[0-9]+/g, '$1<cid>').replace(/("?parent[ -]cid"?:? )[0-9]+/g, '$1<cid>');
}

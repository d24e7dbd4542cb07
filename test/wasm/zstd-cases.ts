/**
 * Seeded zstd cases shared by zstd.test.ts (fixed-seed samples) and zstd.fuzz.ts
 * (long runs): data of varied compressibility, corrupted frames, and encoder
 * round trips.
 */
import { expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decompress as fzstd } from 'fzstd';
import { BlockError } from '../../src/core/errors.js';
import type { WasmZstd } from '../../src/wasm/zstd.js';
import { Prng } from './prng.js';

/** /usr/bin/zstd on stdin (no content size in the header). */
export function zstdCli(args: string[], input: Uint8Array): Uint8Array {
  return new Uint8Array(execFileSync('zstd', [...args, '-q', '-c'], { input, maxBuffer: 1 << 28 }));
}

/**
 * Frames made by /usr/bin/zstd at levels 1, 3, 9 and 19 from real and synthetic
 * inputs decode to their input: with `all`, with and without checksum and content
 * size (stdin or a file in `dir`) each; else one of those four per input and
 * level, in turn. Returns the number of frames.
 */
export function decodeCliFrames(z: WasmZstd, dir: string, text: Uint8Array, binary: Uint8Array, all: boolean): number {
  const rng = new Prng(11);
  const inputs: [string, Uint8Array][] = [
    ['binary', binary.subarray(0, 300_000)],
    ['text', text],
    ['zeros', new Uint8Array(200_000)],
    ['random', rng.bytes(150_000)],
    ['empty', new Uint8Array(0)],
    ['one byte', new Uint8Array([42])],
    ['mixed', sample(rng, 90_000)],
  ];
  const combos: Array<[string, boolean]> = [
    ['-C', false],
    ['--no-check', true],
    ['-C', true],
    ['--no-check', false],
  ];
  let n = 0;
  let turn = 0;
  for (const [name, data] of inputs) {
    for (const level of [1, 3, 9, 19]) {
      const chosen = all ? combos : [combos[turn++ % combos.length]!];
      for (const [check, viaFile] of chosen) {
        let frame: Uint8Array;
        if (viaFile) {
          const f = join(dir, 'in.bin');
          writeFileSync(f, data);
          frame = new Uint8Array(execFileSync('zstd', [`-${level}`, check, '-q', '-c', f], { maxBuffer: 1 << 28 }));
        } else {
          frame = zstdCli([`-${level}`, check], data);
        }
        expect(same(z.decompress(frame), data), `${name} -${level} ${check} file=${viaFile}`).toBe(true);
        n++;
      }
    }
  }
  return n;
}

export function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(a, b) === 0;
}

/** Data of varied compressibility. */
export function sample(rng: Prng, n: number): Uint8Array {
  const b = new Uint8Array(n);
  const kind = rng.int(6);
  if (kind === 0) return rng.bytes(n);
  if (kind === 1) return b; // zeros
  if (kind === 5) {
    // Runs of a few byte values (RLE literals, RLE sequence tables).
    for (let i = 0; i < n; ) {
      const v = rng.int(3);
      const len = 1 + rng.int(200);
      b.fill(v, i, Math.min(n, i + len));
      i += len;
    }
    return b;
  }
  let i = 0;
  const alphabet = 2 + rng.int(kind === 2 ? 4 : 200);
  while (i < n) {
    if (i > 8 && rng.chance(0.3)) {
      const dist = 1 + rng.int(Math.min(i, rng.chance(0.5) ? 64 : 100000));
      const len = 3 + rng.int(kind === 4 ? 3000 : 30);
      for (let k = 0; k < len && i < n; k++, i++) b[i] = b[i - dist]!;
    } else {
      b[i++] = 32 + rng.int(alphabet);
    }
  }
  return b;
}

/**
 * `count` corrupted frames (bit flips in frames made by /usr/bin/zstd and by our
 * encoder, from PRNG seed `seed`): each decodes to a result or fails with EIO /
 * ENOTSUP naming the offset, never traps, and never writes past the output.
 */
export function corruptFrames(z: WasmZstd, seed: number, count: number, text: Uint8Array): void {
  const rng = new Prng(seed);
  const frames: { f: Uint8Array; n: number }[] = [];
  for (let i = 0; i < 24; i++) {
    const data = sample(rng, 1 + rng.int(40000));
    frames.push({ f: i % 2 ? zstdCli([`-${1 + rng.int(19)}`, rng.chance(0.5) ? '-C' : '--no-check'], data) : z.compressFrame(data, 1 + rng.int(19)), n: data.byteLength });
  }
  frames.push({ f: zstdCli(['-19'], text), n: text.byteLength });
  let errors = 0;
  const outBuf = new Uint8Array(200_000);
  for (let t = 0; t < count; t++) {
    const { f, n } = rng.pick(frames);
    const bad = f.slice();
    const flips = 1 + rng.int(4);
    for (let k = 0; k < flips; k++) {
      const at = rng.chance(0.3) ? rng.int(Math.min(bad.length, 40)) : rng.int(bad.length);
      bad[at] ^= 1 << rng.int(8);
    }
    const size = n + rng.int(100);
    const dst = outBuf.subarray(0, size);
    outBuf.fill(0xee, size, size + 64);
    try {
      z.decompressInto(bad, dst, rng.chance(0.5));
    } catch (e) {
      expect(e).toBeInstanceOf(BlockError);
      expect(['EIO', 'ENOTSUP']).toContain((e as BlockError).code);
      expect((e as BlockError).message).not.toMatch(/WASM module failed/);
      expect((e as BlockError).message).toMatch(/at offset \d+/);
      errors++;
    }
    expect(outBuf.subarray(size, size + 64).every((b) => b === 0xee)).toBe(true);
  }
  expect(errors).toBeGreaterThan(count / 4);
}

/** `count` encoder round trips over every level, from PRNG seed `seed`; frames read by fzstd and /usr/bin/zstd -d. */
export function encoderRoundTrips(z: WasmZstd, seed: number, count: number): void {
  const rng = new Prng(seed);
  const frames: Uint8Array[] = [];
  const datas: Uint8Array[] = [];
  for (let t = 0; t < count; t++) {
    const n = rng.chance(0.05) ? rng.int(40) : rng.chance(0.05) ? 131072 + rng.int(300_000) : rng.int(70000);
    const data = sample(rng, n);
    const level = 1 + (t % 19);
    const f = z.compressFrame(data, level);
    expect(same(z.decompress(f, n), data)).toBe(true);
    if (t % 4 === 0) expect(same(fzstd(f), data)).toBe(true);
    frames.push(f);
    datas.push(data);
  }
  // One zstd -d run over all frames concatenated.
  const out = execFileSync('zstd', ['-d', '-c'], { input: Buffer.concat(frames), maxBuffer: 1 << 30 });
  expect(same(out, Buffer.concat(datas))).toBe(true);
}

/**
 * zstd long runs (`npm run fuzz -- zstd --seed N --count N`): corrupted frames and
 * encoder round trips from PRNG seed `seed` (zstd.test.ts runs fixed-seed samples).
 */
import { describe, it, beforeAll, afterAll, expect } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WasmZstd, loadZstd } from '../../src/wasm/zstd.js';
import { corruptFrames, decodeCliFrames, encoderRoundTrips } from './zstd-cases.js';
import { fuzzParams } from '../fuzz/params.js';

const { seed, count } = fuzzParams(20000);
let z: WasmZstd;
let dir: string;
beforeAll(async () => {
  z = await loadZstd();
  dir = mkdtempSync(join(tmpdir(), 'zstd-fuzz-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const text = new TextEncoder().encode(Array.from({ length: 3000 }, (_, i) => `line ${i}: the quick brown fox ${i % 3} the lazy dog #${(i * 7919) % 1000}\n`).join(''));

describe('zstd (fuzz)', () => {
  it('decodes frames of /usr/bin/zstd levels 1, 3, 9, 19 with and without checksum and content size', () => {
    expect(decodeCliFrames(z, dir, text, readFileSync('/usr/bin/qemu-img'), true)).toBe(7 * 4 * 4);
  });
  it(`${count} corrupted frames from seed ${seed}: a result or EIO naming the offset, never a trap`, () => {
    corruptFrames(z, seed, count, text);
  });
  it(`${Math.ceil(count / 10)} encoder round trips from seed ${seed}`, () => {
    encoderRoundTrips(z, seed, Math.ceil(count / 10));
  });
});

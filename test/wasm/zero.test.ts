import { describe, it, expect, beforeAll } from 'vitest';
import { isZeroTs, runLengthTs, loadZero, WasmZero } from '../../src/wasm/zero.js';
import { Prng } from './prng.js';

let wasm: WasmZero;
beforeAll(async () => {
  const z = await loadZero();
  if (!z) throw new Error('this engine has no WASM SIMD');
  wasm = z;
});

describe('zero detection', () => {
  it('agrees with a byte loop at every length, alignment and position of one non-zero byte', () => {
    const inMem = wasm.buffer(4096 + 64);
    const plain = new Uint8Array(4096 + 64);
    for (const len of [0, 1, 7, 15, 16, 17, 63, 64, 65, 255, 256, 257, 511, 1000, 4096]) {
      for (let align = 0; align < 17; align++) {
        const a = inMem.subarray(align, align + len);
        const b = plain.subarray(align, align + len);
        expect(wasm.isZero(a)).toBe(true);
        expect(isZeroTs(b)).toBe(true);
        for (let pos = 0; pos < len; pos += len > 300 ? 37 : 1) {
          a[pos] = 0x80;
          b[pos] = 0x80;
          expect(wasm.isZero(a)).toBe(false);
          expect(isZeroTs(b)).toBe(false);
          a[pos] = 0;
          b[pos] = 0;
        }
      }
    }
  });

  it('uses module memory without copies and falls back for foreign buffers', () => {
    const inMem = wasm.buffer(1024);
    expect(wasm.owns(inMem)).toBe(true);
    expect(wasm.owns(new Uint8Array(8))).toBe(false);
    expect(wasm.isZero(new Uint8Array(100))).toBe(true);
  });

  it('splits buffers into zero and data runs like the TypeScript path (1000 cases)', () => {
    const rng = new Prng(7);
    const buf = wasm.buffer(65536);
    for (let t = 0; t < 1000; t++) {
      const len = rng.int(65536);
      const block = 2 ** (9 + rng.int(4));
      const b = buf.subarray(0, len);
      b.fill(0);
      for (let k = rng.int(6); k > 0; k--) b[rng.int(len)] = 1 + rng.int(255);
      const copy = b.slice();
      const zero = rng.chance(0.5);
      expect(wasm.runLength(b, block, zero)).toBe(runLengthTs(copy, block, zero));
    }
  });
});

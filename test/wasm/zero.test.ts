import { describe, it, expect, beforeAll } from 'vitest';
import { isZeroTs, runLengthTs, loadZero, WasmZero, ZeroBufferPool } from '../../src/wasm/zero.js';
import { isZeroBufferPlain, zeroRunLength } from '../../src/core/zero-detect.js';
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

describe('zero detection helpers used by convert and detect-zeroes', () => {
  it('zeroRunLength (plain JS) gives the same runs as the WASM module at any offset (1000 cases)', () => {
    const rng = new Prng(11);
    const inMem = wasm.buffer(65536 + 16);
    for (let t = 0; t < 1000; t++) {
      const len = rng.int(65536);
      const align = rng.int(16);
      const block = rng.chance(0.5) ? 512 : 2 ** (9 + rng.int(4));
      const a = inMem.subarray(align, align + len);
      a.fill(0);
      for (let k = rng.int(6); k > 0; k--) a[rng.int(len)] = 1 + rng.int(255);
      // Runs of data blocks: fill whole blocks now and then.
      if (rng.chance(0.3)) for (let o = 0; o < len; o += block) if (rng.chance(0.5)) a[o + rng.int(Math.min(block, len - o))] = 9;
      const plain = new Uint8Array(len + 7).subarray(align & 7, (align & 7) + len);
      plain.set(a);
      const zero = rng.chance(0.5);
      expect(zeroRunLength(plain, block, zero)).toBe(wasm.runLength(a, block, zero));
      expect(zeroRunLength(plain, block, zero)).toBe(runLengthTs(plain, block, zero));
    }
  });

  it('the copying detector agrees with the plain check for foreign and in-memory buffers', () => {
    const detect = wasm.detector(4096);
    const rng = new Prng(3);
    for (let t = 0; t < 500; t++) {
      const len = rng.int(20000);
      const b = new Uint8Array(len + 8).subarray(rng.int(8), undefined).subarray(0, len);
      if (len > 0 && rng.chance(0.7)) b[rng.int(len)] = 1;
      expect(detect(b)).toBe(isZeroBufferPlain(b));
      expect(detect(b)).toBe(isZeroTs(b));
    }
    const inMem = wasm.buffer(8192);
    expect(detect(inMem)).toBe(true);
    inMem[8191] = 1;
    expect(detect(inMem)).toBe(false);
    // Detect past a memory growth: the scratch view is re-made from its pointer.
    wasm.buffer(4 << 20);
    const big = new Uint8Array(3 * 4096 + 5);
    expect(detect(big)).toBe(true);
    big[2 * 4096 + 3] = 2;
    expect(detect(big)).toBe(false);
  });

  it('the buffer pool lends buffers in module memory, refuses too big ones and survives growth', () => {
    const pool = new ZeroBufferPool(wasm, 2, 4096);
    const a = pool.take(4096)!;
    const b = pool.take(100)!;
    expect(wasm.owns(a) && wasm.owns(b)).toBe(true);
    expect(b.byteLength).toBe(100);
    expect(pool.take()).toBeUndefined();
    expect(pool.take(8192)).toBeUndefined();
    pool.give(a);
    expect(() => pool.give(a)).toThrow(/returned twice/);
    pool.give(new Uint8Array(16));
    expect(pool.available()).toBe(1);
    wasm.buffer(4 << 20);
    const c = pool.take()!;
    expect(c.byteLength).toBe(4096);
    expect(wasm.owns(c)).toBe(true);
    c.fill(0);
    expect(wasm.isZero(c)).toBe(true);
    c[4095] = 1;
    expect(wasm.isZero(c)).toBe(false);
    expect(() => new ZeroBufferPool(wasm, 1, 100)).toThrow(/multiple of 16/);
  });
});

/**
 * isZeroBuffer (detect-zeroes, sparse copies): the Node entry installs the WASM detector, which
 * copies foreign buffers into module memory; its answers must equal the plain-JS loop's for
 * every length, alignment and position of a non-zero byte, across the 16 KiB copy pieces.
 */
import { describe, it, expect, vi } from 'vitest';
import '../../src/node.js';
import { WasmZero } from '../../src/wasm/zero.js';
import { isZeroBuffer, isZeroBufferPlain, setZeroDetector, zeroDetectorKind } from '../../src/core/zero-detect.js';
import { prng } from '../prng.js';

describe('isZeroBuffer', () => {
  it('uses the WASM detector once the Node entry is loaded (measured faster, bench/wasm/zero.ts)', () => {
    expect(zeroDetectorKind()).toBe('wasm');
    expect(isZeroBuffer(new Uint8Array(64))).toBe(true);
  });

  it('agrees with the plain loop on buffers outside module memory', () => {
    const rnd = prng(5);
    const backing = new Uint8Array(70000);
    for (const len of [0, 1, 15, 16, 17, 511, 512, 4096, 16383, 16384, 16385, 32768 + 7, 65536]) {
      for (let t = 0; t < 12; t++) {
        const at = Math.floor(rnd() * 9);
        const b = backing.subarray(at, at + len);
        b.fill(0);
        expect(isZeroBuffer(b)).toBe(true);
        if (len === 0) continue;
        const pos = t === 0 ? len - 1 : t === 1 ? 0 : Math.floor(rnd() * len);
        b[pos] = 1 + Math.floor(rnd() * 255);
        expect(isZeroBuffer(b), `len ${len} at ${at}, byte ${pos}`).toBe(false);
        expect(isZeroBufferPlain(b)).toBe(false);
        b[pos] = 0;
      }
    }
  });

  it('goes back to the plain loop with setZeroDetector(undefined)', () => {
    const spy = vi.fn(() => true);
    setZeroDetector(spy);
    expect(isZeroBuffer(new Uint8Array([1]))).toBe(true);
    setZeroDetector(undefined);
    expect(isZeroBuffer(new Uint8Array([1]))).toBe(false);
    expect(spy).toHaveBeenCalledTimes(1);
  });
});

/**
 * The one place that picks WASM or TypeScript for the hot paths
 * (src/wasm/hot-paths.ts): start-up loads the modules, the state says what
 * serves each path, and forcing TypeScript switches every path and back
 * without changing answers.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { forceTypeScript, hotPathState, startHotPaths } from '../../src/wasm/hot-paths.js';
import { isZeroBuffer } from '../../src/core/zero-detect.js';

describe('hot paths', () => {
  afterAll(() => forceTypeScript(false));

  it('start-up loads the WASM modules in Node', async () => {
    await startHotPaths();
    const s = await hotPathState();
    expect(s.l2).toBe('wasm');
    expect(s.refcount).toBe('wasm');
    expect(s.zstd).toBe('wasm');
    expect(s.detectZeroes).toBe('wasm');
    expect(s.copyZeroCheck).toBe('wasm');
    expect(s.aes).toBe('wasm');
    expect(s.serpent).toBe('wasm');
    expect(s.twofish).toBe('wasm');
    expect(s.cast5).toBe('wasm');
  });

  it('forcing TypeScript switches the L2 walk, refcount scans and zero checks, with the same answers', async () => {
    const bufs = [new Uint8Array(65536), new Uint8Array(65536), new Uint8Array(100)];
    bufs[1]![65535] = 1;
    const wasmAnswers = bufs.map(isZeroBuffer);
    await forceTypeScript(true);
    const s = await hotPathState();
    expect([s.l2, s.refcount, s.detectZeroes, s.copyZeroCheck, s.aes, s.serpent, s.twofish, s.cast5]).toEqual(['typescript', 'typescript', 'plain JS', 'plain JS', 'typescript', 'typescript', 'typescript', 'typescript']);
    expect(bufs.map(isZeroBuffer)).toEqual(wasmAnswers);
    expect(wasmAnswers).toEqual([true, false, true]);
    await forceTypeScript(false);
    const back = await hotPathState();
    expect([back.l2, back.refcount, back.detectZeroes, back.aes, back.serpent, back.twofish, back.cast5]).toEqual(['wasm', 'wasm', 'wasm', 'wasm', 'wasm', 'wasm', 'wasm']);
  });
});

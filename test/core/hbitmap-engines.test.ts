/**
 * The TypeScript bitmap engine (core/hbitmap.ts) against the WASM one
 * (src/wasm/bitmap.ts): the same seeded operations through both, every
 * answer compared (fixed seeds; hbitmap-engines.fuzz.ts sweeps more), and the
 * switch in src/wasm/hot-paths.ts: forcing TypeScript makes node bitmaps use
 * the TypeScript engine, with the same dirty extents for the same writes.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { compareEngines } from './hbitmap-engines.js';
import { loadBitmapEngine } from '../../src/wasm/bitmap.js';
import { DirtyBitmap, typescriptHBitmapEngine } from '../../src/core/hbitmap.js';
import { forceTypeScript, hotPathState, startHotPaths } from '../../src/wasm/hot-paths.js';
import { addDirtyBitmap, bitmapEngineState, lookupDirtyBitmap } from '../../src/core/dirty-bitmap.js';
import { BlockBackend } from '../../src/node.js';
import { memoryGraph, prng } from './helpers.js';
import { BlockError } from '../../src/core/errors.js';

describe('bitmap engines: TypeScript vs WASM', () => {
  afterAll(() => forceTypeScript(false));

  it('give the same answers to the same seeded operations (60 seeds x 400 operations)', async () => {
    const wasm = await loadBitmapEngine();
    let compared = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const r = compareEngines(wasm, typescriptHBitmapEngine, seed, 400);
      expect(typeof r === 'number' ? null : r).toBeNull();
      compared += r as number;
    }
    expect(compared).toBeGreaterThan(60 * 800);
  });

  it('refuse the same sizes with the same errors, and work at 16 Mi bits', async () => {
    const wasm = await loadBitmapEngine();
    for (const n of [0, -1, 1.5, Number.NaN, 2 ** 34 + 1]) {
      const msgs = [wasm, typescriptHBitmapEngine].map((e) => {
        try {
          e.create(n);
          return 'created';
        } catch (err) {
          return err instanceof BlockError ? `${err.code}: ${err.message}` : 'other';
        }
      });
      expect(msgs[0]).toMatch(/^EINVAL: bitmap of .* bits is not supported/);
      expect(msgs[1]).toBe(msgs[0]);
    }
    const [a, b] = [wasm, typescriptHBitmapEngine].map((e) => new DirtyBitmap(e, 2 ** 40, 65536));
    for (const bm of [a!, b!]) {
      bm.setDirty(2 ** 39 + 100, 1);
      bm.setDirty(2 ** 40 - 1, 1);
    }
    expect([...b!.dirtyExtents()]).toEqual([...a!.dirtyExtents()]);
    expect([...b!.dirtyExtents()]).toEqual([[2 ** 39, 65536], [2 ** 40 - 65536, 65536]]);
    expect(b!.nextDirty(2 ** 39 + 65536)).toBe(2 ** 40 - 65536);
    a!.destroy();
    b!.destroy();
    expect(() => b!.bits.count()).toThrow(/used after destroy/);
  });

  it('hot-paths.ts picks the engine of node bitmaps; a seeded write workload dirties the same extents with either', async () => {
    await startHotPaths();
    const extents: [number, number][][] = [];
    for (const ts of [false, true]) {
      await forceTypeScript(ts);
      expect(bitmapEngineState()).toBe(ts ? 'typescript' : 'wasm');
      expect((await hotPathState()).bitmap).toBe(ts ? 'typescript' : 'wasm');
      const { graph, storage } = memoryGraph();
      storage.create('d', 8 << 20);
      const bb = await BlockBackend.open(graph, { driver: 'raw', file: { driver: 'memory', filename: 'd' } });
      addDirtyBitmap(bb.node, 'b', { granularity: 4096 });
      const r = prng(7);
      for (let i = 0; i < 200; i++) {
        const off = Math.floor(r() * (8 << 20));
        const len = Math.min((8 << 20) - off, 1 + Math.floor(r() * 100000));
        if (r() < 0.7) await bb.write(off, new Uint8Array(len).fill(1));
        else await bb.writeZeroes(off, len);
      }
      extents.push([...lookupDirtyBitmap(bb.node, 'b').dirtyExtents()]);
      await bb.close();
    }
    expect(extents[0]!.length).toBeGreaterThan(10);
    expect(extents[1]).toEqual(extents[0]);
  });
});

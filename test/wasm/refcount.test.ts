import { describe, it, expect, beforeAll } from 'vitest';
import { BlockError } from '../../src/core/errors.js';
import { RefcountTs, WasmRefcount, loadRefcount, entriesPerBlock } from '../../src/wasm/refcount.js';
import { Prng } from './prng.js';

let wasm: WasmRefcount;
beforeAll(async () => {
  wasm = await loadRefcount();
});

function randomBlock(rng: Prng, bytes: number, order: number): Uint8Array {
  const b = new Uint8Array(bytes);
  const n = entriesPerBlock(bytes, order);
  const fill = rng.pick([0.05, 0.5, 0.95, 1]);
  if (order <= 3 && rng.chance(0.5)) {
    // Fast path: random bytes with a given density of non-zero entries.
    const w = 2 ** order;
    for (let i = 0; i < bytes; i++) {
      let v = 0;
      for (let s = 0; s < 8; s += w) if (rng.chance(fill)) v |= (1 + (rng.u32() % (2 ** w - 1))) << s;
      b[i] = v;
    }
    return b;
  }
  const max = order === 6 ? 2 ** 53 - 1 : 2 ** 2 ** order - 1;
  for (let i = 0; i < n; i++) {
    if (rng.chance(fill)) RefcountTs.set(b, order, i, rng.chance(0.9) ? 1 + rng.int(Math.min(3, max)) : rng.int(max + 1));
  }
  return b;
}

function outcome(f: () => unknown): unknown {
  try {
    return f();
  } catch (e) {
    return { error: (e as BlockError).code, message: (e as BlockError).message };
  }
}

describe('refcount: known layouts', () => {
  it('packs sub-byte entries from the low bits and wider ones big-endian', () => {
    const b = new Uint8Array(8);
    wasm.set(b, 0, 1, 1);
    expect(b[0]).toBe(0b10);
    b.fill(0);
    wasm.set(b, 1, 1, 3);
    expect(b[0]).toBe(0b1100);
    b.fill(0);
    wasm.set(b, 4, 1, 0x1234);
    expect(Array.from(b.subarray(0, 4))).toEqual([0, 0, 0x12, 0x34]);
    b.fill(0);
    wasm.set(b, 6, 0, 2 ** 40 + 5);
    expect(wasm.get(b, 6, 0)).toBe(2 ** 40 + 5);
    expect(wasm.getU64(b, 6, 0)).toBe(2n ** 40n + 5n);
  });

  it('rejects values that do not fit', () => {
    const b = new Uint8Array(8);
    expect(() => wasm.set(b, 4, 0, 65536)).toThrowError(BlockError);
    expect(() => wasm.set(b, 0, 0, 2)).toThrowError(BlockError);
    expect(() => wasm.set(b, 4, 0, -1)).toThrowError(BlockError);
    expect(() => wasm.addRange(b, 4, 0, 4, -1)).toThrowError(/underflow at entry 0/);
  });

  it('finds free runs across word boundaries and at the end of the block', () => {
    const b = new Uint8Array(64).fill(0xff);
    b[40] = 0;
    b[41] = 0; // entries 320..335 free (order 0)
    expect(wasm.findFree(b, 0, 0, 10)).toEqual({ index: 320, length: 10 });
    expect(wasm.findFree(b, 0, 0, 20)).toEqual({ index: 512, length: 0 });
    b[63] = 0x0f; // entries 508..511 free, at the end
    expect(wasm.findFree(b, 0, 0, 20)).toEqual({ index: 508, length: 4 });
  });
});

describe('refcount: WASM vs TypeScript reference (randomized)', () => {
  it('agrees on get / set / findFree / addRange / countUsed in 6000 cases', { timeout: 60_000 }, () => {
    const rng = new Prng(0x5eed);
    for (let t = 0; t < 6000; t++) {
      const order = rng.int(7);
      const bytes = rng.pick([8, 16, 64, 512, 520, 4096]);
      const a = randomBlock(rng, bytes, order);
      const b = a.slice();
      const n = entriesPerBlock(bytes, order);
      const op = rng.int(5);
      if (op === 0) {
        for (let k = 0; k < 20; k++) {
          const i = rng.int(n);
          expect(wasm.get(b, order, i)).toBe(RefcountTs.get(a, order, i));
        }
      } else if (op === 1) {
        const i = rng.int(n);
        const v = rng.chance(0.8) ? rng.int(Math.min(2 ** 2 ** order, 2 ** 40)) : rng.int(2 ** 20);
        expect(outcome(() => wasm.set(b, order, i, v))).toEqual(outcome(() => RefcountTs.set(a, order, i, v)));
      } else if (op === 2) {
        const start = rng.int(n);
        const cnt = 1 + rng.int(rng.chance(0.5) ? 4 : 200);
        expect(wasm.findFree(b, order, start, cnt)).toEqual(RefcountTs.findFree(a, order, start, cnt));
      } else if (op === 3) {
        const start = rng.int(n);
        const cnt = rng.int(n - start + 2);
        const delta = rng.pick([1, -1, 2, -3, 1000]);
        expect(outcome(() => wasm.addRange(b, order, start, cnt, delta))).toEqual(outcome(() => RefcountTs.addRange(a, order, start, cnt, delta)));
      } else {
        const start = rng.int(n);
        const cnt = rng.int(n - start + 1);
        expect(wasm.countUsed(b, order, start, cnt)).toBe(RefcountTs.countUsed(a, order, start, cnt));
      }
      if (Buffer.compare(a, b) !== 0) expect(b).toEqual(a);
    }
  });
});

describe('refcount: compareCounts and tryAddRange, WASM vs TypeScript reference', () => {
  it('reports the same mismatches, stop points and last used entries in 3000 cases', { timeout: 60_000 }, () => {
    const rng = new Prng(0xc0de);
    for (let t = 0; t < 3000; t++) {
      const order = rng.int(7);
      const bytes = rng.pick([8, 64, 520, 4096]);
      const block = randomBlock(rng, bytes, order);
      const n = entriesPerBlock(bytes, order);
      const start = rng.int(n + 1);
      const end = start + rng.int(n - start + 1);
      // Counts equal to the stored entries, with a few changed (more, fewer, zeroed).
      const counts = new Float64Array(end - start);
      for (let i = start; i < end; i++) {
        let v = RefcountTs.get(block, order, i);
        if (rng.chance(rng.pick([0, 0.01, 0.3]))) v = rng.pick([0, v + 1, Math.max(0, v - 1), 7]);
        counts[i - start] = v;
      }
      const cap = rng.pick([1, 3, 4096]);
      const outW = new Uint32Array(cap);
      const outT = new Uint32Array(cap);
      const w = wasm.compareCounts(block, order, start, end, counts, outW);
      const r = RefcountTs.compareCounts(block, order, start, end, counts, outT);
      expect(w).toEqual(r);
      expect(Array.from(outW.subarray(0, w.mismatches))).toEqual(Array.from(outT.subarray(0, r.mismatches)));
    }
  });

  it('finds a planted mismatch wherever it is, and none in an equal range', () => {
    const b = new Uint8Array(4096);
    for (let i = 0; i < 2048; i++) RefcountTs.set(b, 4, i, 1);
    const counts = new Float64Array(2048).fill(1);
    const out = new Uint32Array(16);
    expect(wasm.compareCounts(b, 4, 0, 2048, counts, out)).toEqual({ mismatches: 0, end: 2048, lastUsed: 2047 });
    counts[1500] = 2;
    expect(wasm.compareCounts(b, 4, 0, 2048, counts, out)).toEqual({ mismatches: 1, end: 2048, lastUsed: 2047 });
    expect(out[0]).toBe(1500);
    expect(() => wasm.compareCounts(b, 4, 10, 5, counts, out)).toThrowError(/bad range 10..5/);
  });

  it('tryAddRange names the first entry out of range and writes nothing then', () => {
    const rng = new Prng(0xadd);
    for (let t = 0; t < 500; t++) {
      const order = rng.int(6);
      const a = randomBlock(rng, 520, order);
      const before = a.slice();
      const n = entriesPerBlock(520, order);
      const start = rng.int(n);
      const count = rng.int(n - start + 1);
      const delta = rng.pick([1, -1, 3]);
      const ref = a.slice();
      const expected = outcome(() => RefcountTs.addRange(ref, order, start, count, delta));
      const at = wasm.tryAddRange(a, order, start, count, delta);
      if (expected === undefined) {
        expect(at).toBe(-1);
        expect(a).toEqual(ref);
      } else {
        expect((expected as { message: string }).message).toContain(`at entry ${at}`);
        expect(a).toEqual(before);
      }
    }
  });
});

describe('refcount: findFree with an end (the driver searches a block in windows)', () => {
  it('answers as the TypeScript reference does on the block cut at that end', { timeout: 60_000 }, () => {
    const rng = new Prng(0xe4d);
    for (let t = 0; t < 2000; t++) {
      const order = rng.int(7);
      const block = randomBlock(rng, 4096, order);
      const n = entriesPerBlock(4096, order);
      const end = 64 * rng.int(n / 64 + 1);
      const start = rng.int(end + 1);
      const count = 1 + rng.int(rng.chance(0.5) ? 4 : 300);
      const cut = block.subarray(0, (end * 2 ** order) / 8);
      const expected = start >= end ? { index: end, length: 0 } : RefcountTs.findFree(cut, order, start, count);
      expect(wasm.findFree(block, order, start, count, end)).toEqual(expected);
    }
    expect(() => wasm.findFree(new Uint8Array(64), 4, 0, 1, 30)).toThrowError(/bad end 30/);
  });
});

describe('refcount: the 16-bit snapshot walk (walkL2w16) against the generic one (walkL2)', () => {
  const COPIED = 0x80000000;
  const COMPRESSED = 0x40000000;
  it('leaves the same slice, blocks, slot marks and stop in 1500 random cases', { timeout: 60_000 }, () => {
    const rng = new Prng(0x16a1);
    for (let t = 0; t < 1500; t++) {
      const clusterBits = rng.pick([9, 12, 16]);
      const cs = 2 ** clusterBits;
      // 16-bit refcounts: cs / 2 entries per block.
      const blockBits = clusterBits - 1;
      const per = cs / 2;
      const entries = rng.pick([8, 64, 512]);
      const nSlots = 3;
      const area = wasm.walkArea(entries * 8, cs, nSlots);
      // Blocks 0..4 exist in the image; the slots hold three of them (or are empty).
      const held = [0, 1, 2, 3, 4].filter(() => rng.chance(0.6)).slice(0, nSlots);
      const blocks = held.map(() => {
        const b = new Uint8Array(cs);
        const dv = new DataView(b.buffer);
        for (let i = 0; i < per; i++) dv.setUint16(i * 2, rng.pick([0, 1, 1, 2, 3, 0xfffe, 0xffff]));
        return b;
      });
      const slice = new Uint8Array(entries * 8);
      const sdv = new DataView(slice.buffer);
      for (let j = 0; j < entries; j++) {
        const kind = rng.int(10);
        const flags = rng.chance(0.5) ? COPIED : 0;
        let hi = 0;
        let lo = 0;
        if (kind === 0) {
          // Unallocated (maybe with the zero flag).
          lo = rng.chance(0.5) ? 1 : 0;
        } else if (kind === 1) {
          hi = (COMPRESSED | flags | rng.int(0x10000)) >>> 0;
          lo = rng.u32();
        } else {
          // A cluster in one of the five blocks (sometimes unaligned, sometimes zero-flagged).
          const ci = rng.int(5 * per);
          const host = ci * cs + (kind === 2 && rng.chance(0.3) ? 512 : 0);
          hi = (flags | Math.floor(host / 2 ** 32)) >>> 0;
          lo = (host >>> 0) | (rng.chance(0.1) ? 1 : 0);
        }
        sdv.setUint32(j * 8, hi);
        sdv.setUint32(j * 8 + 4, lo >>> 0);
      }
      const from = rng.int(entries);
      const addend = rng.pick([-1, 0, 1] as const);
      const run = (w16: boolean) => {
        const u8 = wasm.module.u8;
        u8.set(slice, area.l2);
        for (let s = 0; s < nSlots; s++) wasm.setSlot(area, s, s < held.length ? held[s]! : -1);
        blocks.forEach((b, s) => wasm.module.u8.set(b, area.blocks + s * area.blockBytes));
        const e = wasm.module.exports;
        const r = w16
          ? e.walkL2w16(area.l2, from, entries, addend, clusterBits, blockBits, area.records, nSlots)
          : e.walkL2(area.l2, from, entries, addend, 4, clusterBits, blockBits, area.records, nSlots);
        const mem = wasm.module.u8;
        return {
          r,
          need: e.walkNeededBlock(),
          changed: e.walkChangedFlags(),
          slice: Buffer.from(mem.slice(area.l2, area.l2 + entries * 8)).toString('hex'),
          blocks: blocks.map((_, s) => Buffer.from(mem.slice(area.blocks + s * area.blockBytes, area.blocks + s * area.blockBytes + cs)).toString('base64')),
          written: [0, 1, 2].map((s) => wasm.slotWritten(area, s)),
        };
      };
      const generic = run(false);
      const w16 = run(true);
      expect({ t, ...w16 }).toEqual({ t, ...generic });
    }
  });
});

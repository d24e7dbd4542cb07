import { describe, it, expect, beforeAll } from 'vitest';
import { BlockError } from '../../src/core/errors.js';
import {
  L2Kind, RUN_FIELDS, WasmL2, loadL2, mapL2Ts, mapL2RunsTs, countContiguousTs, countNeedingAllocTs, lookupRunTs, type L2Geometry,
} from '../../src/wasm/l2.js';
import { Prng } from './prng.js';

let wasm: WasmL2;
beforeAll(async () => {
  wasm = await loadL2(1024);
});

const TWO32 = 2 ** 32;

/** Writes a 64-bit big-endian value given as hi / lo halves. */
function put(dv: DataView, off: number, hi: number, lo: number): void {
  dv.setUint32(off, hi >>> 0);
  dv.setUint32(off + 4, lo >>> 0);
}

/** A random but mostly valid L2 slice; `bad` is the probability of an invalid entry. */
function randomSlice(rng: Prng, n: number, g: L2Geometry, bad: number): Uint8Array {
  const esize = g.extended ? 16 : 8;
  const buf = new Uint8Array(n * esize);
  const dv = new DataView(buf.buffer);
  const cs = 2 ** g.clusterBits;
  let nextHost = (1 + rng.int(1000)) * cs;
  for (let i = 0; i < n; i++) {
    const off = i * esize;
    const r = rng.int(10);
    let hi = 0;
    let lo = 0;
    if (r < 5) {
      // Allocated, usually contiguous with the previous one.
      if (!rng.chance(0.8)) nextHost = (1 + rng.int(2 ** 20)) * cs;
      const host = nextHost;
      nextHost += cs;
      hi = Math.floor(host / TWO32) | (rng.chance(0.8) ? 0x80000000 : 0);
      lo = host % TWO32;
      if (!g.extended && rng.chance(0.15)) lo |= 1;
    } else if (r < 7) {
      // Compressed: random offset and sector count.
      const x = 70 - g.clusterBits;
      const coff = rng.int(2 ** Math.min(x, 46));
      const sectors = rng.int(2 ** (g.clusterBits - 8));
      const v = BigInt(coff) | (BigInt(sectors) << BigInt(x)) | (1n << 62n) | (rng.chance(0.5) ? 1n << 63n : 0n);
      hi = Number(v >> 32n);
      lo = Number(v & 0xffffffffn);
    } else if (r < 9) {
      if (!g.extended && rng.chance(0.5)) lo = 1;
    } else {
      // Repeat the previous entry (long runs).
      if (i > 0) {
        hi = dv.getUint32(off - esize);
        lo = dv.getUint32(off - esize + 4);
      }
    }
    if (rng.chance(bad)) {
      const k = rng.int(3);
      if (k === 0) lo |= 1 << (1 + rng.int(8));
      else if (k === 1) hi |= 1 << (24 + rng.int(6));
      else lo |= 512;
      hi &= ~0x40000000;
    }
    put(dv, off, hi, lo);
    if (g.extended) {
      const allocated = (hi & 0x40000000) === 0 && ((hi & 0xffffff) !== 0 || (lo & 0xfffffe00) !== 0);
      let allocBits = 0;
      let zeroBits = 0;
      if ((hi & 0x40000000) === 0) {
        const pattern = rng.int(4);
        const bits = pattern === 0 ? 0 : pattern === 1 ? 0xffffffff : rng.u32();
        if (allocated) {
          allocBits = bits;
          zeroBits = rng.chance(0.5) ? ~bits & rng.u32() : 0;
        } else {
          zeroBits = bits;
        }
        if (rng.chance(bad)) allocBits |= zeroBits | 1;
      }
      put(dv, off + 8, zeroBits, allocBits);
    }
  }
  return buf;
}

function mapBoth(slice: Uint8Array, g: L2Geometry, base: number, offset: number, length: number, maxRuns: number) {
  const out = new Float64Array(maxRuns * RUN_FIELDS);
  let ts: unknown;
  let tsErr: BlockError | undefined;
  try {
    const [n, reached] = mapL2Ts(slice, g, base, offset, length, out, maxRuns);
    ts = { runs: Array.from(out.subarray(0, n * RUN_FIELDS)), reached };
  } catch (e) {
    tsErr = e as BlockError;
  }
  let ws: unknown;
  let wsErr: BlockError | undefined;
  const small = new WasmL2(wasm.module, maxRuns);
  try {
    const [n, runs, reached] = small.mapRaw(slice, g, base, offset, length);
    ws = { runs: Array.from(runs.subarray(0, n * RUN_FIELDS)), reached };
  } catch (e) {
    wsErr = e as BlockError;
  }
  return { ts, tsErr, ws, wsErr };
}

describe('l2 mapping: known entries', () => {
  const g: L2Geometry = { clusterBits: 16, extended: false };
  it('decodes each kind', () => {
    const buf = new Uint8Array(6 * 8);
    const dv = new DataView(buf.buffer);
    put(dv, 0, 0x80000000, 0x50000); // normal, copied
    put(dv, 8, 0x80000000, 0x60000); // contiguous normal
    put(dv, 16, 0, 1); // zero plain
    put(dv, 24, 0, 0x70001); // zero alloc
    put(dv, 32, 0, 0); // unallocated
    // compressed at 0x12345 with 3 additional sectors: x = 54
    const v = (1n << 62n) | (3n << 54n) | 0x12345n;
    put(dv, 40, Number(v >> 32n), Number(v & 0xffffffffn));
    const runs = wasm.map(buf, g, 0, 0x1000, 6 * 65536 - 0x2000);
    expect(runs).toEqual([
      { kind: L2Kind.NORMAL, guestOffset: 0x1000, hostOffset: 0x51000, length: 0x20000 - 0x1000, compressedSize: 0, l2Index: 0 },
      { kind: L2Kind.ZERO_PLAIN, guestOffset: 0x20000, hostOffset: 0, length: 0x10000, compressedSize: 0, l2Index: 2 },
      { kind: L2Kind.ZERO_ALLOC, guestOffset: 0x30000, hostOffset: 0x70000, length: 0x10000, compressedSize: 0, l2Index: 3 },
      { kind: L2Kind.UNALLOCATED_PLAIN, guestOffset: 0x40000, hostOffset: 0, length: 0x10000, compressedSize: 0, l2Index: 4 },
      { kind: L2Kind.COMPRESSED, guestOffset: 0x50000, hostOffset: 0x12345, length: 0x10000 - 0x1000, compressedSize: 4 * 512 - 0x145, l2Index: 5 },
    ]);
    expect(mapL2RunsTs(buf, g, 0, 0x1000, 6 * 65536 - 0x2000)).toEqual(runs);
  });

  it('decodes extended subclusters', () => {
    const ge: L2Geometry = { clusterBits: 16, extended: true };
    const buf = new Uint8Array(16);
    const dv = new DataView(buf.buffer);
    put(dv, 0, 0x80000000, 0x100000);
    put(dv, 8, 0x00000002, 0x00000001); // sc0 allocated, sc1 zero, rest unallocated
    const runs = wasm.map(buf, ge, 0x10000, 0x10000, 0x10000);
    expect(runs.map((r) => [r.kind, r.guestOffset, r.hostOffset, r.length])).toEqual([
      [L2Kind.NORMAL, 0x10000, 0x100000, 2048],
      [L2Kind.ZERO_ALLOC, 0x10800, 0x100800, 2048],
      [L2Kind.UNALLOCATED_ALLOC, 0x11000, 0x101000, 0x10000 - 4096],
    ]);
  });

  it('reports an invalid entry as EIO naming it', () => {
    const buf = new Uint8Array(16);
    new DataView(buf.buffer).setUint32(12, 0x50200); // unaligned host offset in entry 1
    expect(() => wasm.map(buf, g, 0, 0, 0x20000)).toThrowError(/invalid L2 entry 1/);
    try {
      wasm.map(buf, g, 0, 0, 0x20000);
    } catch (e) {
      expect((e as BlockError).code).toBe('EIO');
    }
  });

  it('rejects ranges outside the slice with EINVAL', () => {
    const buf = new Uint8Array(16);
    expect(() => wasm.map(buf, g, 0, 0, 0x20001)).toThrowError(BlockError);
    expect(() => mapL2Ts(buf, g, 0, 0, 0x20001, new Float64Array(60))).toThrowError(BlockError);
  });

  it('reads slices kept in module memory without copying', () => {
    const s = wasm.allocSlice(8 * 4);
    const dv = new DataView(s.bytes.buffer, s.bytes.byteOffset, 32);
    for (let i = 0; i < 4; i++) put(dv, i * 8, 0x80000000, 0x100000 + i * 0x10000);
    expect(wasm.map(s, g, 0, 0, 4 * 0x10000)).toHaveLength(1);
    expect(wasm.countContiguous(s, g, 0, 100)).toBe(4);
    expect(wasm.countNeedingAlloc(s, g, 0, 100)).toBe(0);
  });
});

describe('l2 mapping: WASM vs TypeScript reference (randomized)', () => {
  const geoms: L2Geometry[] = [
    { clusterBits: 9, extended: false },
    { clusterBits: 12, extended: false },
    { clusterBits: 16, extended: false },
    { clusterBits: 21, extended: false },
    { clusterBits: 14, extended: true },
    { clusterBits: 16, extended: true },
    { clusterBits: 21, extended: true },
  ];
  it('maps 4000 random slices and ranges identically', () => {
    const rng = new Prng(0x12c2);
    let errors = 0;
    for (let t = 0; t < 4000; t++) {
      const g = rng.pick(geoms);
      const n = 1 + rng.int(64);
      const slice = randomSlice(rng, n, g, rng.chance(0.2) ? 0.05 : 0);
      const cs = 2 ** g.clusterBits;
      const base = rng.int(1000) * n * cs;
      const a = rng.int(n * cs);
      const b = a + rng.int(n * cs - a + 1);
      const maxRuns = rng.chance(0.3) ? 1 + rng.int(4) : 1024;
      const r = mapBoth(slice, g, base, base + a, b - a, maxRuns);
      if (r.tsErr || r.wsErr) {
        errors++;
        expect(r.wsErr?.code).toBe(r.tsErr?.code);
        expect(r.wsErr?.message).toBe(r.tsErr?.message);
      } else {
        expect(r.ws).toEqual(r.ts);
      }
    }
    expect(errors).toBeGreaterThan(50);
  });

  it('counts contiguous and to-allocate clusters identically (4000 cases)', () => {
    const rng = new Prng(0xc0de);
    for (let t = 0; t < 4000; t++) {
      const g = rng.pick(geoms);
      const n = 1 + rng.int(64);
      const slice = randomSlice(rng, n, g, 0.02);
      const first = rng.int(n);
      const max = rng.int(n + 2);
      let a: number | string;
      let b: number | string;
      try {
        a = countContiguousTs(slice, g, first, max);
      } catch (e) {
        a = (e as BlockError).code;
      }
      try {
        b = wasm.countContiguous(slice, g, first, max);
      } catch (e) {
        b = (e as BlockError).code;
      }
      expect(b).toBe(a);
      expect(wasm.countNeedingAlloc(slice, g, first, max)).toBe(countNeedingAllocTs(slice, g, first, max));
    }
  });

  it('counts lookup runs of standard entries identically (4000 cases)', () => {
    const rng = new Prng(0x100c);
    let long = 0;
    for (let t = 0; t < 4000; t++) {
      const g = rng.pick(geoms.filter((x) => !x.extended));
      const n = 1 + rng.int(64);
      const slice = randomSlice(rng, n, g, rng.chance(0.3) ? 0.05 : 0);
      const first = rng.int(n);
      const max = rng.int(n + 2);
      const want = lookupRunTs(slice, g.clusterBits, first, max);
      expect(wasm.lookupRun(slice, g.clusterBits, first, max)).toBe(want);
      if (want >= 4) long++;
    }
    expect(long).toBeGreaterThan(30);
    expect(() => wasm.lookupRun(new Uint8Array(64), 16, 8, 1)).toThrow(BlockError);
    expect(() => wasm.lookupRun(new Uint8Array(64), 30, 0, 1)).toThrow(BlockError);
  });
});

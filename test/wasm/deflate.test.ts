import { describe, it, expect, beforeAll } from 'vitest';
import zlib from 'node:zlib';
import { BlockError } from '../../src/core/errors.js';
import { WasmDeflate, loadDeflate } from '../../src/wasm/deflate.js';
import { Prng } from './prng.js';
import { realClusters } from './realdata.js';

let codec: WasmDeflate;
beforeAll(async () => {
  codec = await loadDeflate();
});

/** Data of varied compressibility. */
function sample(rng: Prng, n: number): Uint8Array {
  const b = new Uint8Array(n);
  const kind = rng.int(5);
  if (kind === 0) return rng.bytes(n);
  if (kind === 1) return b; // zeros
  let i = 0;
  const alphabet = 2 + rng.int(kind === 2 ? 4 : 60);
  while (i < n) {
    if (i > 8 && rng.chance(0.3)) {
      const dist = 1 + rng.int(Math.min(i, rng.chance(0.5) ? 64 : 8000));
      const len = 3 + rng.int(kind === 4 ? 300 : 30);
      for (let k = 0; k < len && i < n; k++, i++) b[i] = b[i - dist]!;
    } else {
      b[i++] = 97 + rng.int(alphabet);
    }
  }
  return b;
}

function inflateWasm(src: Uint8Array, size: number, partial = false): Uint8Array {
  const out = new Uint8Array(size);
  const n = codec.inflate(src, out, partial);
  return out.subarray(0, n);
}

describe('inflate vs node:zlib', () => {
  it('decodes zlib streams of every level, strategy and window (600 cases)', () => {
    const rng = new Prng(1);
    const strategies = [zlib.constants.Z_DEFAULT_STRATEGY, zlib.constants.Z_FILTERED, zlib.constants.Z_HUFFMAN_ONLY, zlib.constants.Z_RLE, zlib.constants.Z_FIXED];
    for (let t = 0; t < 600; t++) {
      const n = rng.chance(0.1) ? rng.int(10) : rng.int(70000);
      const data = sample(rng, n);
      const level = rng.int(10);
      const z = zlib.deflateRawSync(data, { level, strategy: rng.pick(strategies), windowBits: rng.pick([9, 12, 15]), memLevel: 1 + rng.int(9) });
      expect(Buffer.compare(inflateWasm(z, n), data)).toBe(0);
    }
  });

  it('decodes real binary clusters compressed by zlib at window bits 12 (QEMU)', () => {
    for (const c of realClusters(24)) {
      const z = zlib.deflateRawSync(c, { level: 6, windowBits: 12 });
      expect(Buffer.compare(inflateWasm(z, c.byteLength), c)).toBe(0);
    }
  });

  it('stops at the declared size: EIO without partial, success with it', () => {
    const data = sample(new Prng(3), 5000);
    const z = zlib.deflateRawSync(data);
    expect(() => inflateWasm(z, 4999)).toThrowError(/larger than the declared size/);
    const part = inflateWasm(z, 4000, true);
    expect(part.byteLength).toBe(4000);
    expect(Buffer.compare(part, data.subarray(0, 4000))).toBe(0);
    // Sector padding after the stream (qcow2 compressed clusters) is ignored.
    const padded = new Uint8Array(z.byteLength + 511);
    padded.set(z);
    expect(Buffer.compare(inflateWasm(padded, 5000), data)).toBe(0);
  });

  it('fails truncated streams with EIO and never writes beyond the output', () => {
    const rng = new Prng(4);
    for (let t = 0; t < 300; t++) {
      const data = sample(rng, 1 + rng.int(20000));
      const z = zlib.deflateRawSync(data, { level: rng.int(10) });
      const cut = rng.int(z.byteLength);
      const out = new Uint8Array(data.byteLength + 64).fill(0xee);
      let err: unknown;
      let n = -1;
      try {
        n = codec.inflate(z.subarray(0, cut), out.subarray(0, data.byteLength));
      } catch (e) {
        err = e;
      }
      if (err === undefined) {
        // A cut inside the last byte's padding bits can still decode completely.
        expect(n).toBe(data.byteLength);
      } else {
        expect(err).toBeInstanceOf(BlockError);
        expect((err as BlockError).code).toBe('EIO');
      }
      expect(out.subarray(data.byteLength).every((b) => b === 0xee)).toBe(true);
    }
  });

  it('survives corrupted streams: EIO or a result, never a trap or a hang (3000 cases)', () => {
    const rng = new Prng(5);
    let errors = 0;
    for (let t = 0; t < 3000; t++) {
      const data = sample(rng, 1 + rng.int(5000));
      const z = new Uint8Array(zlib.deflateRawSync(data, { level: rng.int(10) }));
      const flips = 1 + rng.int(4);
      for (let k = 0; k < flips; k++) z[rng.int(z.byteLength)] ^= 1 << rng.int(8);
      const size = data.byteLength + rng.int(100);
      let ref: Buffer | undefined;
      try {
        ref = zlib.inflateRawSync(z, { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: size });
      } catch {
        ref = undefined;
      }
      try {
        const out = inflateWasm(z, size);
        // When zlib decodes it without error, so must we, identically.
        if (ref && ref.byteLength <= size) expect(Buffer.compare(out, ref.subarray(0, out.byteLength))).toBe(0);
      } catch (e) {
        expect(e).toBeInstanceOf(BlockError);
        expect((e as BlockError).code).toBe('EIO');
        expect((e as BlockError).message).toMatch(/at offset \d+/);
        errors++;
      }
    }
    expect(errors).toBeGreaterThan(100);
  });

  it('decodes random garbage without traps', () => {
    const rng = new Prng(6);
    for (let t = 0; t < 2000; t++) {
      try {
        inflateWasm(rng.bytes(rng.int(300)), 65536);
      } catch (e) {
        expect(e).toBeInstanceOf(BlockError);
      }
    }
  });
});

describe('deflate read by node:zlib (window bits 12)', () => {
  it('round-trips every level through zlib.inflateRawSync({ windowBits: 12 }) (900 cases)', () => {
    const rng = new Prng(7);
    for (let t = 0; t < 900; t++) {
      const n = rng.chance(0.05) ? rng.int(8) : rng.int(70000);
      const data = sample(rng, n);
      const level = 1 + (t % 9);
      const out = new Uint8Array(n + 1024);
      const len = codec.deflateInto(data, out, level);
      expect(len).toBeGreaterThan(0);
      const back = zlib.inflateRawSync(out.subarray(0, len), { windowBits: 12 });
      expect(Buffer.compare(back, data)).toBe(0);
      // And by our own inflate.
      expect(Buffer.compare(inflateWasm(out.subarray(0, len), n), data)).toBe(0);
    }
  });

  it('compresses real clusters at least as well as zlib with the same window at level 6', () => {
    let ours = 0;
    let theirs = 0;
    let raw = 0;
    for (const c of realClusters(16)) {
      const z = codec.deflate(c, 6);
      const back = zlib.inflateRawSync(z ?? new Uint8Array(), { windowBits: 12 });
      if (z) expect(Buffer.compare(back, c)).toBe(0);
      ours += z ? z.byteLength : c.byteLength;
      theirs += zlib.deflateRawSync(c, { level: 6, windowBits: 12 }).byteLength;
      raw += c.byteLength;
    }
    console.log(`deflate level 6, real 64 KiB clusters: ours ${(raw / ours).toFixed(3)}x, zlib(wbits 12) ${(raw / theirs).toFixed(3)}x`);
    expect(ours).toBeLessThan(theirs * 1.05);
  });

  it('returns null when the data does not shrink', () => {
    expect(codec.deflate(new Prng(8).bytes(65536), 6)).toBeNull();
    expect(codec.deflate(new Uint8Array(65536), 1)!.byteLength).toBeLessThan(400);
  });
});

describe('cluster codec selection', () => {
  it('picks WASM inflate and node:zlib deflate in Node, with QEMU semantics', async () => {
    const { getClusterCodec, getClusterCodecSync } = await import('../../src/wasm/codec.js');
    const c = await getClusterCodec();
    expect(c.inflateImpl).toBe('wasm');
    expect(c.deflateImpl).toBe('node:zlib');
    expect(getClusterCodecSync().inflateImpl).toBe('wasm');
    for (const cluster of realClusters(4)) {
      const z = c.deflateCluster(cluster, 6)!;
      // Sector padding, as qcow2 stores it.
      const padded = new Uint8Array(Math.ceil((z.byteLength + 1) / 512) * 512);
      padded.set(z);
      const out = new Uint8Array(cluster.byteLength);
      expect(await c.inflateCluster(padded, out)).toBe(cluster.byteLength);
      expect(Buffer.compare(out, cluster)).toBe(0);
      // Also readable by our WASM inflate and by zlib with a 4 KiB window.
      expect(Buffer.compare(zlib.inflateRawSync(z, { windowBits: 12 }), cluster)).toBe(0);
    }
    const short = zlib.deflateRawSync(new Uint8Array(1000));
    await expect(c.inflateCluster(short, new Uint8Array(65536), { offset: 0x50000 })).rejects.toThrowError(/inflates to 1000 bytes, expected 65536/);
    expect(c.deflateCluster(new Prng(9).bytes(4096))).toBeNull();
  });
});

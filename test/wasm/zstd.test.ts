import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { decompress as fzstd } from 'fzstd';
import { BlockError } from '../../src/core/errors.js';
import { WasmZstd, loadZstd } from '../../src/wasm/zstd.js';
import { zstdCompressCluster, zstdDecompressCluster, initZstd } from '../../src/wasm/codec.js';
import { zstdFrameLength } from './zstd-frame.js';
import { Prng } from './prng.js';
import { corruptFrames, decodeCliFrames, encoderRoundTrips, same, sample } from './zstd-cases.js';
import { realClusters } from './realdata.js';

let z: WasmZstd;
let dir: string;
beforeAll(async () => {
  z = await loadZstd();
  dir = mkdtempSync(path.join(tmpdir(), 'zstd-test-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** /usr/bin/zstd on stdin (no content size in the header) or on a file (with it). */
function cli(args: string[], input: Uint8Array, viaFile = false): Uint8Array {
  if (viaFile) {
    const f = path.join(dir, 'in.bin');
    writeFileSync(f, input);
    return new Uint8Array(execFileSync('zstd', [...args, '-q', '-c', f], { maxBuffer: 1 << 28 }));
  }
  return new Uint8Array(execFileSync('zstd', [...args, '-q', '-c'], { input, maxBuffer: 1 << 28 }));
}

const text = new TextEncoder().encode(
  Array.from({ length: 3000 }, (_, i) => `line ${i}: the quick brown fox ${i % 7 === 0 ? 'jumps over' : 'sleeps near'} the lazy dog #${(i * 7919) % 1000}\n`).join(''),
);
const binary = readFileSync('/usr/bin/qemu-img');

describe('decode frames made by /usr/bin/zstd', () => {
  it('levels 1, 3, 9, 19 on real and synthetic data, each with one of the checksum / content size combinations (zstd.fuzz.ts runs all)', () => {
    const n = decodeCliFrames(z, dir, text, binary, false);
    expect(n).toBe(7 * 4);
  });

  it('long inputs: multiple blocks, large windows, --ultra -22 and --long', () => {
    const big = new Uint8Array(binary.byteLength * 2);
    big.set(binary);
    big.set(binary, binary.byteLength); // a repeat far back (long offsets)
    for (const args of [['-3'], ['-19'], ['--ultra', '-22'], ['-5', '--long=27']]) {
      const frame = cli(args, big, true);
      expect(same(z.decompress(frame, big.byteLength), big), args.join(' ')).toBe(true);
    }
  });

  it('every /usr/bin file of 20 KiB..2 MiB among the first 40 (level 3, from stdin)', () => {
    const files = execFileSync('sh', ['-c', 'find /usr/bin -maxdepth 1 -type f -size +20k -size -2M | sort | head -40']).toString().trim().split('\n');
    const all = files.map((f) => new Uint8Array(readFileSync(f)));
    // One zstd process: it writes one frame per file; split them by decoding in sequence.
    for (const [i, data] of all.entries()) {
      const frame = cli([i % 2 ? '-1' : '-7'], data);
      expect(same(z.decompress(frame, data.byteLength), data), files[i]).toBe(true);
    }
  });

  it('matches of every short period and length (the decoder\'s copy paths)', () => {
    // Runs of period 1..20 and length 3..200 between random bytes: matches with offsets
    // below 8 (byte-wise and pattern copies), 8..15 and beyond, short and long.
    const rng = new Prng(5);
    const parts: number[] = [];
    for (let period = 1; period <= 20; period++) {
      for (const len of [3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 64, 200]) {
        for (let i = 0; i < 1 + rng.int(20); i++) parts.push(rng.int(256));
        const seed = Array.from({ length: period }, () => rng.int(256));
        for (let i = 0; i < period + len; i++) parts.push(seed[i % period]!);
      }
    }
    const data = new Uint8Array(parts);
    for (const level of [1, 3, 19]) {
      const frame = cli([`-${level}`], data);
      expect(same(z.decompress(frame, data.byteLength), data), `-${level}`).toBe(true);
    }
  });

  it('multiple frames and skippable frames', () => {
    const a = cli(['-3'], text.subarray(0, 5000));
    const b = cli(['-1', '--no-check'], binary.subarray(0, 70000));
    const skip = new Uint8Array(8 + 13);
    new DataView(skip.buffer).setUint32(0, 0x184d2a53, true);
    new DataView(skip.buffer).setUint32(4, 13, true);
    const all = Buffer.concat([skip, a, skip, b, a, skip]);
    const out = z.decompress(all);
    expect(same(out, Buffer.concat([text.subarray(0, 5000), binary.subarray(0, 70000), text.subarray(0, 5000)]))).toBe(true);
    // As the CLI sees it.
    expect(same(new Uint8Array(execFileSync('zstd', ['-d', '-c'], { input: all })), out)).toBe(true);
  });

  it('checks the content checksum, refuses dictionaries, trailing garbage and short data', () => {
    const frame = cli(['-3', '-C'], text.subarray(0, 4000));
    const bad = frame.slice();
    bad[bad.length - 2] ^= 0x10;
    expect(() => z.decompress(bad)).toThrowError(/checksum mismatch at offset/);
    // A frame header naming dictionary 7 (dictionary ID flag 1).
    const dict = new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x21, 7, 10, 1, 0, 0]);
    try {
      z.decompress(dict);
      expect.unreachable();
    } catch (e) {
      expect((e as BlockError).code).toBe('ENOTSUP');
    }
    expect(() => z.decompress(Buffer.concat([frame, new Uint8Array(4)]))).toThrowError(/corrupt data at offset/);
    expect(() => z.decompressInto(frame, new Uint8Array(3999))).toThrowError(/output larger than the declared size/);
    expect(() => z.decompress(new Uint8Array(0))).toThrowError(BlockError);
  });
});

describe('qcow2 images made by qemu-img (compression_type=zstd)', () => {
  interface Compressed {
    guest: number;
    l2Pos: number;
    entry: bigint;
    offset: number;
    size: number;
  }

  /** Walks L1/L2 of a qcow2 image and lists its compressed clusters. */
  function compressedClusters(img: Uint8Array): { clusterBits: number; list: Compressed[] } {
    const dv = new DataView(img.buffer, img.byteOffset, img.byteLength);
    expect(dv.getUint32(0)).toBe(0x514649fb);
    const clusterBits = dv.getUint32(20);
    const headerLength = dv.getUint32(4) >= 3 ? dv.getUint32(100) : 72;
    expect(headerLength > 104 && img[104]).toBe(1); // compression type zstd
    const l1Size = dv.getUint32(36);
    const l1Off = Number(dv.getBigUint64(40));
    const cs = 2 ** clusterBits;
    const x = 62n - BigInt(clusterBits - 8);
    const list: Compressed[] = [];
    for (let i = 0; i < l1Size; i++) {
      const l2Off = Number(dv.getBigUint64(l1Off + i * 8) & 0x00fffffffffffe00n);
      if (!l2Off) continue;
      for (let j = 0; j < cs / 8; j++) {
        const e = dv.getBigUint64(l2Off + j * 8);
        if (!(e & (1n << 62n))) continue;
        const offset = Number(e & ((1n << x) - 1n));
        const sectors = Number((e >> x) & ((1n << BigInt(clusterBits - 8)) - 1n)) + 1;
        list.push({ guest: (i * (cs / 8) + j) * cs, l2Pos: l2Off + j * 8, entry: e, offset, size: sectors * 512 - (offset & 511) });
      }
    }
    return { clusterBits, list };
  }

  function makeImage(clusterSize: number): { raw: Uint8Array; img: string; rawPath: string } {
    const rng = new Prng(clusterSize);
    const parts = [binary.subarray(0, 3 << 20), text, new Uint8Array(300_000), sample(rng, 400_000), rng.bytes(100_000)];
    const total = Math.ceil(parts.reduce((a, p) => a + p.byteLength, 0) / 65536) * 65536;
    const raw = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      raw.set(p, o);
      o += p.byteLength;
    }
    const rawPath = path.join(dir, `src-${clusterSize}.raw`);
    const img = path.join(dir, `zstd-${clusterSize}.qcow2`);
    writeFileSync(rawPath, raw);
    execFileSync('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', `compression_type=zstd,cluster_size=${clusterSize}`, rawPath, img]);
    return { raw, img, rawPath };
  }

  for (const clusterSize of [65536, 4096]) {
    it(`decodes every compressed cluster (cluster_size=${clusterSize}) like qemu-img convert -O raw`, () => {
      const { img } = makeImage(clusterSize);
      const back = path.join(dir, `back-${clusterSize}.raw`);
      execFileSync('qemu-img', ['convert', '-O', 'raw', img, back]);
      const expected = new Uint8Array(readFileSync(back));
      const image = new Uint8Array(readFileSync(img));
      const { list } = compressedClusters(image);
      expect(list.length).toBeGreaterThan(20);
      const out = new Uint8Array(clusterSize);
      for (const c of list) {
        // As QEMU reads it: the frame plus the padding up to the sector.
        const src = image.subarray(c.offset, Math.min(image.byteLength, c.offset + c.size));
        expect(zstdDecompressCluster(src, out, { offset: c.offset })).toBe(clusterSize);
        expect(same(out, expected.subarray(c.guest, c.guest + clusterSize)), `cluster at guest 0x${c.guest.toString(16)}`).toBe(true);
      }
    });
  }

  it('QEMU reads clusters compressed by our encoder (qemu-img compare, qemu-io)', () => {
    const { img, rawPath } = makeImage(65536);
    const image = new Uint8Array(readFileSync(img));
    const { clusterBits, list } = compressedClusters(image);
    const x = BigInt(62 - (clusterBits - 8));
    const fd = openSync(img, 'r+');
    let replaced = 0;
    let ours = 0;
    let theirs = 0;
    try {
      for (const c of list) {
        const cluster = new Uint8Array(65536);
        zstdDecompressCluster(image.subarray(c.offset, c.offset + c.size), cluster);
        const frame = zstdCompressCluster(cluster, 3);
        expect(frame).not.toBeNull();
        ours += frame!.byteLength;
        theirs += c.size;
        // Compressed clusters share sectors: only the old frame's own bytes may be reused.
        if (frame!.byteLength > zstdFrameLength(image.subarray(c.offset, c.offset + c.size))) continue;
        const sectors = Math.ceil(((c.offset & 511) + frame!.byteLength) / 512);
        writeSync(fd, frame!, 0, frame!.byteLength, c.offset);
        const entry = (1n << 62n) | (BigInt(sectors - 1) << x) | BigInt(c.offset);
        const b = Buffer.alloc(8);
        b.writeBigUInt64BE(entry);
        writeSync(fd, b, 0, 8, c.l2Pos);
        replaced++;
      }
    } finally {
      closeSync(fd);
    }
    console.log(`qcow2 zstd clusters: ${replaced}/${list.length} rewritten by our encoder; ours ${ours} bytes vs qemu-img(+padding) ${theirs}`);
    expect(replaced).toBeGreaterThan(list.length * 0.5);
    execFileSync('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', rawPath, img]);
    execFileSync('qemu-img', ['check', img]);
    const io = execFileSync('qemu-io', ['-c', 'read -v 0 512', img]).toString();
    expect(io).toContain('read 512/512 bytes');
  });
});

describe('robustness', () => {
  it('corrupted frames (1000 of seed 21; zstd.fuzz.ts runs more): a result or EIO naming the offset, never a trap or hang', () => {
    corruptFrames(z, 21, 1000, text);
  });

  it('truncated frames (every cut of several frames) are EIO', () => {
    const rng = new Prng(22);
    for (let i = 0; i < 6; i++) {
      const data = sample(rng, 3000 + rng.int(3000));
      const f = i % 2 ? cli(['-3', '-C'], data) : z.compressFrame(data, 3);
      for (let cut = 0; cut < f.byteLength; cut++) {
        expect(() => z.decompressInto(f.subarray(0, cut), new Uint8Array(data.byteLength))).toThrowError(BlockError);
      }
    }
  });

  it('random garbage behind a valid frame header: no traps', () => {
    const rng = new Prng(23);
    for (let t = 0; t < 3000; t++) {
      const g = rng.bytes(6 + rng.int(400));
      g.set([0x28, 0xb5, 0x2f, 0xfd]);
      g[4] = rng.pick([0x00, 0x20, 0x60, 0xa0, 0x04, 0x24]);
      try {
        z.decompressInto(g, new Uint8Array(65536), rng.chance(0.5));
      } catch (e) {
        expect(e).toBeInstanceOf(BlockError);
        expect((e as BlockError).message).not.toMatch(/WASM module failed/);
      }
    }
  });
});

describe('encoder', () => {
  it('round trips every level; frames read by fzstd and /usr/bin/zstd -d (300 cases of seed 31; zstd.fuzz.ts runs more)', () => {
    encoderRoundTrips(z, 31, 300);
  });

  it('compresses real clusters better than zlib level 6 window bits 12 (QEMU deflate)', () => {
    const clusters = realClusters(16);
    const raw = clusters.length * 65536;
    const zl = clusters.reduce((a, c) => a + zlib.deflateRawSync(c, { level: 6, windowBits: 12 }).byteLength, 0);
    const line: string[] = [];
    for (const level of [1, 3, 9, 19]) {
      let bytes = 0;
      for (const c of clusters) {
        const f = zstdCompressCluster(c, level);
        bytes += f ? f.byteLength : 65536;
        if (f) expect(same(fzstd(f), c)).toBe(true);
      }
      line.push(`level ${level} ${(raw / bytes).toFixed(3)}x`);
      if (level === 3) expect(bytes).toBeLessThan(zl);
    }
    const cliBytes = clusters.reduce((a, c) => a + cli(['-3', '--no-check'], c, true).byteLength, 0);
    console.log(`zstd real 64 KiB clusters: ours ${line.join(', ')}; zstd CLI -3 ${(raw / cliBytes).toFixed(3)}x; zlib 6 wbits 12 ${(raw / zl).toFixed(3)}x`);
  });

  it('returns null when a cluster does not shrink; RLE for uniform clusters', () => {
    expect(zstdCompressCluster(new Prng(32).bytes(65536))).toBeNull();
    const zero = zstdCompressCluster(new Uint8Array(65536))!;
    expect(zero.byteLength).toBeLessThan(20);
    expect(() => zstdCompressCluster(new Uint8Array(10), 20)).toThrowError(/bad level/);
  });
});

describe('cluster semantics (qcow2_zstd_decompress)', () => {
  it('ignores sector padding, accepts several frames, refuses short and long data', async () => {
    await initZstd();
    const c = realClusters(1)[0]!;
    const f = zstdCompressCluster(c)!;
    const padded = new Uint8Array(Math.ceil((f.byteLength + 1) / 512) * 512).fill(0xa5);
    padded.set(f);
    const out = new Uint8Array(65536);
    expect(zstdDecompressCluster(padded, out)).toBe(65536);
    expect(same(out, c)).toBe(true);
    // Two frames of 32 KiB each, then garbage.
    const two = Buffer.concat([z.compressFrame(c.subarray(0, 32768)), cli(['-3'], c.subarray(32768)), new Uint8Array(300)]);
    out.fill(0);
    expect(zstdDecompressCluster(two, out)).toBe(65536);
    expect(same(out, c)).toBe(true);
    // A frame holding less than the cluster, then zeros.
    const half = Buffer.concat([z.compressFrame(c.subarray(0, 30000)), new Uint8Array(512)]);
    expect(() => zstdDecompressCluster(half, out, { offset: 0x50000 })).toThrowError(/corrupt data at offset \d+ .*data at 0x50000/);
    expect(() => zstdDecompressCluster(z.compressFrame(c.subarray(0, 30000)), out)).toThrowError(/decodes to 30000 bytes, expected 65536/);
    // A frame holding more than the cluster.
    expect(() => zstdDecompressCluster(f, new Uint8Array(65535))).toThrowError(/output larger than the declared size/);
  });
});

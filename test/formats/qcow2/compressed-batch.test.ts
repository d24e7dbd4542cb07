/**
 * Compressed clusters next to each other in the file are read in one batch
 * and decoded straight into the caller's buffer. The batch must end at
 * anything else: a data or zero cluster, an unallocated one, a compressed
 * cluster stored elsewhere in the file (written later), and a read that ends
 * mid-cluster. Every way of reading the image through us must give the bytes
 * qemu-img convert gives.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileGraph, openQcow2, qemuImg, qemuIo, tempDir } from './helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());

const CS = 65536;
const SIZE = 48 * CS;

/** Data that compresses, different in every 512-byte sector. */
function source(): Uint8Array {
  const b = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i++) b[i] = i % 512 < 8 ? (i >> 9) & 0xff : 65 + ((i * 7) % 23);
  return b;
}

/** A compressed image with holes, data, zero and late-written compressed clusters among the packed ones. */
function makeImage(ctype: string): string {
  const raw = t.path(`src-${ctype}.raw`);
  writeFileSync(raw, source());
  const img = t.path(`c-${ctype}.qcow2`);
  qemuImg('convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', '-o', `compression_type=${ctype}`, raw, img);
  qemuIo(img, [
    `write -P 0x11 ${5 * CS} ${CS}`,
    `write -z ${9 * CS} ${2 * CS}`,
    `discard ${14 * CS} ${CS}`,
    // Compressed again into a cluster freed above: its data lies past the packed run.
    `write -c -P 0x22 ${14 * CS} ${CS}`,
    `discard ${20 * CS} ${3 * CS}`,
    `write -P 0x33 ${30 * CS + 4096} 4096`,
  ]);
  return img;
}

describe('qcow2 compressed clusters read in batches', () => {
  for (const ctype of ['zlib', 'zstd']) {
    it(`${ctype}: whole, 2 MiB, odd-sized and single-cluster reads match qemu-img convert`, async () => {
      const img = makeImage(ctype);
      const ref = t.path(`ref-${ctype}.raw`);
      qemuImg('convert', '-q', '-O', 'raw', img, ref);
      const want = new Uint8Array(readFileSync(ref));
      expect(want.length).toBe(SIZE);
      const graph = fileGraph();
      const blk = await openQcow2(graph, img, true);
      try {
        const whole = new Uint8Array(SIZE);
        await blk.pread(0, whole);
        expect(Buffer.compare(whole, want)).toBe(0);
        for (const step of [2 << 20, 3 * CS + 512, 100_000, CS]) {
          const got = new Uint8Array(SIZE);
          // Starting off the cluster grid too: the batch begins only at a cluster boundary.
          for (const start of [0, 1536]) {
            got.set(want.subarray(0, start));
            for (let off = start; off < SIZE; off += step) {
              const n = Math.min(step, SIZE - off);
              await blk.pread(off, got.subarray(off, off + n));
            }
            expect(Buffer.compare(got, want), `step ${step} from ${start}`).toBe(0);
          }
        }
      } finally {
        await blk.close();
        await graph.closeAll();
      }
    });
  }
});

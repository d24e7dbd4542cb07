/**
 * The blob back end's sequential read-ahead (src/protocols/blob.ts): reads
 * that run on are answered from 16 MiB pieces fetched at once, others read
 * just what they ask for; every read returns the Blob's bytes (reads in flight
 * together, across pieces, at the end, past the end), the number of Blob
 * reads shows which way each went, and a Blob that fails to read gives EIO
 * naming the offset.
 */
import { describe, expect, it } from 'vitest';
import { createNodeGraph } from '../../src/node.js';
import { BlockBackend } from '../../src/core/backend.js';
import { blobDriver, registerBlob, unregisterBlob } from '../../src/protocols/blob.js';

const MiB = 1 << 20;

function bytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + (i >>> 11) * 7) & 0xff;
  return b;
}

/** A Blob that counts the reads made of it (slices read through `arrayBuffer`). */
function countingBlob(data: Uint8Array, fail = false): { blob: Blob; reads: () => number } {
  const base = new Blob([data as Uint8Array<ArrayBuffer>]);
  let reads = 0;
  const wrap = (b: Blob): Blob =>
    new Proxy(b, {
      get(target, prop) {
        if (prop === 'slice') return (...a: Parameters<Blob['slice']>) => wrap(target.slice(...a));
        if (prop === 'arrayBuffer') {
          return () => {
            reads++;
            return fail ? Promise.reject(Object.assign(new Error('the file changed'), { name: 'NotReadableError' })) : target.arrayBuffer();
          };
        }
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target) : v;
      },
    });
  return { blob: wrap(base), reads: () => reads };
}

async function open(blob: Blob): Promise<{ bb: BlockBackend; name: string }> {
  const g = createNodeGraph();
  g.registerDriver(blobDriver);
  const name = registerBlob(blob);
  const bb = await BlockBackend.open(g, { driver: 'raw', file: { driver: 'blob', filename: name } }, { readOnly: true });
  return { bb, name };
}

describe('blob read-ahead', () => {
  it('sequential reads come from 16 MiB pieces; the bytes are the Blob', async () => {
    const data = bytes(40 * MiB + 12345);
    const { blob, reads } = countingBlob(data);
    const { bb, name } = await open(blob);
    try {
      // 1 MiB reads two at a time, as a copy reads: 41 of them, in 3 pieces of 16 MiB.
      for (let off = 0; off < data.length; off += 2 * MiB) {
        const a = new Uint8Array(Math.min(MiB, data.length - off));
        const b = new Uint8Array(Math.max(0, Math.min(MiB, data.length - off - MiB)));
        await Promise.all([bb.pread(off, a), b.length ? bb.pread(off + MiB, b) : undefined]);
        expect(Buffer.compare(Buffer.from(a), Buffer.from(data.subarray(off, off + a.length))), `at ${off}`).toBe(0);
        expect(Buffer.compare(Buffer.from(b), Buffer.from(data.subarray(off + MiB, off + MiB + b.length))), `at ${off + MiB}`).toBe(0);
      }
      expect(reads()).toBe(3);
    } finally {
      await bb.close();
      unregisterBlob(name);
    }
  });

  it('reads that jump read only what they ask for, and still return the bytes', async () => {
    const data = bytes(20 * MiB);
    const { blob, reads } = countingBlob(data);
    const { bb, name } = await open(blob);
    try {
      const offsets = [5 * MiB + 3, 65536, 19 * MiB, 7 * MiB + 100, 12345];
      for (const off of offsets) {
        const got = new Uint8Array(4096);
        await bb.pread(off, got);
        expect(Buffer.compare(Buffer.from(got), Buffer.from(data.subarray(off, off + 4096))), `at ${off}`).toBe(0);
      }
      // None starts where the one before ended: one Blob read each, no piece read ahead.
      expect(reads()).toBe(offsets.length);
    } finally {
      await bb.close();
      unregisterBlob(name);
    }
  });

  it('a Blob that cannot be read gives EIO naming the offset, also for a piece read ahead', async () => {
    const { blob } = countingBlob(bytes(4 * MiB), true);
    const { bb, name } = await open(blob);
    try {
      await expect(bb.pread(0, new Uint8Array(MiB))).rejects.toMatchObject({ code: 'EIO', message: expect.stringContaining('at offset 0') });
      await expect(bb.pread(2 * MiB, new Uint8Array(4096))).rejects.toMatchObject({ code: 'EIO', message: expect.stringContaining(`at offset ${2 * MiB}`) });
    } finally {
      await bb.close();
      unregisterBlob(name);
    }
  });
});

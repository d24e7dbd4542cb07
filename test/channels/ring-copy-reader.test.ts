/**
 * Disk.readInto's ring path in an isolated page (src/channels/ring-copy-reader.ts)
 * with its RingServer in one Node thread over a memory image: many callers
 * with reads in flight (more than the ring's slots, reads longer than a slot,
 * unaligned, empty), each copied into the caller's own buffer; a failed read
 * fails alone; reads queued before the ring arrives; close.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { BlockError } from '../../src/node.js';
import { patternedDisk, pretendCrossOriginIsolated } from './memory-disk.js';
import { RingCopyReader } from '../../src/channels/ring-copy-reader.js';
import { RingServer } from '../../src/channels/ring-server.js';
import { prng } from '../prng.js';

const MiB = 1 << 20;
const SLOT = 64 * 1024;

beforeAll(pretendCrossOriginIsolated);

const setup = (size: number) => patternedDisk(size, (i) => (i * 7 + (i >> 12)));

describe('readInto through a private ring, copied out', () => {
  it('serves concurrent callers, every byte in the right buffer', async () => {
    const { bb, expected } = await setup(2 * MiB + 777);
    const server = new RingServer(bb, 4, SLOT);
    server.start();
    const reader = new RingCopyReader(Promise.resolve(server.buffer), SLOT);
    const rnd = prng(17);
    // Eight callers at once, each looping: 2.5 slots, 1 byte, 0 bytes, unaligned ranges.
    const lengths = [SLOT * 2 + SLOT / 2, 1, 0, 4096, SLOT, 100_000, 512, 3 * SLOT - 1];
    await Promise.all(
      lengths.map(async (len, k) => {
        let buf = new Uint8Array(len);
        for (let i = 0; i < 12; i++) {
          const off = Math.floor(rnd() * (bb.length - len));
          buf.fill(0xee);
          const got = await reader.read(off, buf);
          expect(got).toBe(buf);
          expect(Buffer.from(got).equals(Buffer.from(expected.subarray(off, off + len))), `caller ${k} read ${i} at ${off}`).toBe(true);
          buf = got;
        }
      }),
    );
    server.stop();
    await bb.close();
  });

  it('fails only the read that fails, queues reads until the ring arrives, and ends reads at close', async () => {
    const { bb, expected } = await setup(MiB);
    const server = new RingServer(bb, 2, SLOT);
    let give!: (b: SharedArrayBuffer) => void;
    const reader = new RingCopyReader(new Promise((r) => (give = r)), SLOT);
    // Past the end (EIO from the raw driver's checks) between two good reads, all queued early.
    const a = reader.read(1000, new Uint8Array(SLOT + 5));
    const bad = reader.read(MiB - 10, new Uint8Array(100)).catch((e: unknown) => e);
    const c = reader.read(5, new Uint8Array(10));
    server.start();
    give(server.buffer);
    expect(Buffer.from(await a).equals(Buffer.from(expected.subarray(1000, 1000 + SLOT + 5)))).toBe(true);
    const err = await bad;
    expect(err).toBeInstanceOf(BlockError);
    expect((err as BlockError).code).toBe('EIO');
    expect(Buffer.from(await c).equals(Buffer.from(expected.subarray(5, 15)))).toBe(true);
    reader.close(new BlockError('ENOMEDIUM', "Disk 'd' was closed"));
    await expect(reader.read(0, new Uint8Array(8))).rejects.toMatchObject({ code: 'ENOMEDIUM', message: "Disk 'd' was closed" });
    server.stop();
    await bb.close();
  });

  it('ends reads in flight when the worker closes the ring', async () => {
    const { bb } = await setup(MiB);
    const server = new RingServer(bb, 1, SLOT);
    const reader = new RingCopyReader(Promise.resolve(server.buffer), SLOT);
    // Never started: the reads wait; stopping the server closes the ring.
    const pending = reader.read(0, new Uint8Array(SLOT * 3)).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 10));
    server.stop();
    expect(await pending).toMatchObject({ code: 'ENOMEDIUM' });
    await bb.close();
  });

  it('only carries offsets the ring can hold', () => {
    expect(RingCopyReader.carries(0, 10)).toBe(true);
    expect(RingCopyReader.carries(-1, 10)).toBe(false);
    expect(RingCopyReader.carries(1.5, 10)).toBe(false);
    expect(RingCopyReader.carries(Number.MAX_SAFE_INTEGER, 10)).toBe(false);
  });
});

/**
 * The bulk-read ring (src/channels/ring-layout.ts, ring-server.ts, ring-client.ts) with its server and reader in one
 * Node thread over a memory image: data, order, errors, reuse after an early
 * break, and close. (In the browser they run in the worker and the page; the
 * protocol is the same SharedArrayBuffer + Atomics either way.)
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { BlockError } from '../../src/node.js';
import { patternedDisk, pretendCrossOriginIsolated } from './memory-disk.js';
import { BulkReader } from '../../src/channels/ring-client.js';
import { RingServer } from '../../src/channels/ring-server.js';

const MiB = 1 << 20;

beforeAll(pretendCrossOriginIsolated);

const setup = (size: number) => patternedDisk(size, (i) => (i * 7 + (i >> 12)));

describe('bulk read ring', () => {
  it('streams a disk in order, every byte right, with every slot count', async () => {
    const { bb, expected } = await setup(6 * MiB + 12345);
    for (const slots of [1, 2, 4]) {
      const server = new RingServer(bb, slots, MiB);
      server.start();
      const reader = new BulkReader(server.buffer);
      let pos = 0;
      for await (const piece of reader.stream(0, bb.length, MiB)) {
        expect(Buffer.from(piece).equals(Buffer.from(expected.subarray(pos, pos + piece.length)))).toBe(true);
        pos += piece.length;
      }
      expect(pos).toBe(bb.length);
      // Single reads, unaligned.
      const one = await reader.read(1_000_001, 70_000);
      expect(Buffer.from(one).equals(Buffer.from(expected.subarray(1_000_001, 1_070_001)))).toBe(true);
      server.stop();
    }
    await bb.close();
  });

  it('reports errors as BlockErrors, survives an early break, and refuses after close', async () => {
    const { bb, expected } = await setup(4 * MiB);
    const server = new RingServer(bb, 4, MiB);
    server.start();
    const reader = new BulkReader(server.buffer);
    const err = await reader.read(4 * MiB - 10, 100).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlockError);
    expect((err as BlockError).code).toBe('EIO');
    await expect(reader.read(0, 2 * MiB)).rejects.toMatchObject({ code: 'EINVAL' });
    // Break out of a stream after one piece, then use the ring again.
    for await (const piece of reader.stream(0, 4 * MiB, MiB)) {
      expect(piece[5]).toBe(expected[5]);
      break;
    }
    const again = await reader.read(3 * MiB, 4096);
    expect(Buffer.from(again).equals(Buffer.from(expected.subarray(3 * MiB, 3 * MiB + 4096)))).toBe(true);
    server.stop();
    await expect(reader.read(0, 4096)).rejects.toMatchObject({ code: 'ENOMEDIUM' });
    await bb.close();
    expect(() => new RingServer(bb, 3, MiB)).toThrow(/power of two/);
  });
});

/**
 * The read port behind Disk.readInto (src/channels/read-port-server.ts and
 * read-port-client.ts) over a memory image, both ends in one Node thread on a
 * MessageChannel: reads submitted in one tick travel as one message and come
 * back filled in transferred buffers, shared buffers are filled in place,
 * errors stay per read, and buffers that cannot travel fail their reads
 * instead of leaving them waiting.
 */
import { describe, it, expect } from 'vitest';
import { BlockError } from '../../src/node.js';
import { patternedDisk } from './memory-disk.js';
import { PortReader } from '../../src/channels/read-port-client.js';
import { serveReadPort } from '../../src/channels/read-port-server.js';

const KiB = 1024;

async function setup(size: number) {
  const { bb, expected } = await patternedDisk(size, (i) => i * 13 + (i >> 10));
  const served = serveReadPort(bb);
  // Count the messages the page sends.
  const sent: number[] = [];
  const post = served.port.postMessage.bind(served.port) as (m: unknown, t?: Transferable[]) => void;
  served.port.postMessage = ((m: unknown, t?: Transferable[]) => {
    sent.push((m as unknown[]).length);
    post(m, t);
  }) as typeof served.port.postMessage;
  const reader = new PortReader(Promise.resolve(served.port));
  const done = async () => {
    reader.close(new BlockError('ENOMEDIUM', 'closed'));
    served.close();
    await bb.close();
  };
  return { bb, expected, reader, sent, done };
}

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

describe('read port', () => {
  it('sends the reads of one tick together and gives every buffer back filled', async () => {
    const { expected, reader, sent, done } = await setup(64 * KiB);
    // A first read alone (the port is not there yet), then four lanes reading on in order.
    const first = await reader.read(100, new Uint8Array(1000), false);
    expect(same(first, expected.subarray(100, 1100))).toBe(true);
    let next = 0;
    const seen: number[] = [];
    const lane = async () => {
      let buf: Uint8Array = new Uint8Array(4 * KiB);
      while (next < expected.length) {
        const pos = next;
        next += buf.length;
        const sentBuf = buf;
        buf = await reader.read(pos, buf, false);
        expect(sentBuf.byteLength).toBe(0); // transferred away
        expect(buf.length).toBe(4 * KiB);
        expect(same(buf, expected.subarray(pos, pos + buf.length))).toBe(true);
        seen.push(pos);
      }
    };
    await Promise.all([lane(), lane(), lane(), lane()]);
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 16 }, (_, i) => i * 4 * KiB));
    // 1 + 16 reads in 1 + 4 messages: the lanes answered together resubmit together.
    expect(sent).toEqual([1, 4, 4, 4, 4]);
    await done();
  });

  it('fills shared buffers in place and keeps errors to their own reads', async () => {
    const { bb, expected, reader, done } = await setup(64 * KiB);
    const shared = new Uint8Array(new SharedArrayBuffer(8 * KiB));
    const outside = new Uint8Array(4 * KiB);
    const [a, b, c] = await Promise.allSettled([
      reader.read(KiB, shared, true),
      reader.read(bb.length - 100, outside, false),
      reader.read(0, new Uint8Array(512), false),
    ]);
    expect(a.status === 'fulfilled' && a.value).toBe(shared);
    expect(same(shared, expected.subarray(KiB, 9 * KiB))).toBe(true);
    const direct = await bb.pread(bb.length - 100, new Uint8Array(4 * KiB)).catch((e: unknown) => e);
    expect(b.status).toBe('rejected');
    const err = (b as PromiseRejectedResult).reason;
    expect(err).toBeInstanceOf(BlockError);
    expect((err as BlockError).code).toBe((direct as BlockError).code);
    expect(c.status === 'fulfilled' && same(c.value, expected.subarray(0, 512))).toBe(true);
    await done();
  });

  it('fails reads whose buffer cannot travel, and reads still waiting at close', async () => {
    const { reader, done } = await setup(64 * KiB);
    await reader.read(0, new Uint8Array(16), false);
    const buf = new Uint8Array(KiB);
    const one = reader.read(0, buf, false);
    await expect(reader.read(KiB, buf, false)).rejects.toMatchObject({ code: 'EINVAL' });
    await one;
    // buf was transferred by the first read: it is detached now.
    await expect(reader.read(0, buf, false)).rejects.toMatchObject({ code: 'EINVAL' });
    // An empty buffer needs no message.
    const empty = new Uint8Array(0);
    expect(await reader.read(0, empty, false)).toBe(empty);
    const pending = reader.read(0, new Uint8Array(KiB), false);
    reader.close(new BlockError('ENOMEDIUM', 'closed'));
    await expect(pending).rejects.toMatchObject({ code: 'ENOMEDIUM' });
    // Reads after the close fail at once rather than wait for a port that is gone.
    await expect(reader.read(0, new Uint8Array(KiB), false)).rejects.toMatchObject({ code: 'ENOMEDIUM' });
    await done();
  });
});

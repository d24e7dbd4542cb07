/**
 * The write-zeroes fallback and flush generations.
 */
import { describe, it, expect } from 'vitest';
import {
  BlockBackend,
  ReqFlag,
} from '../../src/node.js';
import { expectBlockError, memoryGraph } from './helpers.js';

describe('write zeroes fallback and flush generations', () => {
  it('writes zero buffers when the driver cannot, unless NO_FALLBACK', async () => {
    const writes: number[] = [];
    let flushes = 0;
    const data = new Uint8Array(1 << 16).fill(9);
    const { graph } = memoryGraph([
      {
        name: 'plain',
        kind: 'protocol',
        async open() {
          return {
            getLength: () => data.length,
            preadv: (o, b, buf) => void buf.set(data.subarray(o, o + b)),
            pwritev: (o, b, buf) => {
              writes.push(b);
              data.set(buf.subarray(0, b), o);
            },
            flushToDisk: async () => void flushes++,
          };
        },
      },
    ]);
    const bb = await BlockBackend.open(graph, { driver: 'raw', file: { driver: 'plain' } });
    await bb.writeZeroes(100, 30000);
    expect(data[99]).toBe(9);
    expect(data.subarray(100, 30100).every((b) => b === 0)).toBe(true);
    expect(data[30100]).toBe(9);
    await expectBlockError(bb.writeZeroes(0, 10, ReqFlag.NO_FALLBACK), 'ENOTSUP', /without a buffer/);
    await bb.flush();
    await bb.flush();
    expect(flushes).toBe(1);
    await bb.write(0, new Uint8Array(1), ReqFlag.FUA);
    expect(flushes).toBe(2);
    await bb.close();
  });
});

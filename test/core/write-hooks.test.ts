/**
 * The write threshold event and before-write hooks.
 */
import { describe, it, expect } from 'vitest';
import {
  BlockBackend,
} from '../../src/node.js';
import { memoryGraph } from './helpers.js';

describe('write threshold and before-write hooks', () => {
  it('fires the threshold once and runs hooks before the write lands', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('d', 1 << 20);
    const bb = await BlockBackend.open(graph, 'memory:d', { format: 'raw' });
    const proto = bb.node.file!.node;
    const fired: number[] = [];
    proto.writeThreshold = 100_000;
    proto.onWriteThreshold = (_n, threshold, offset) => fired.push(threshold, offset);
    const seen: string[] = [];
    bb.node.beforeWriteHooks.push(async (_n, kind, offset, bytes) => {
      // The old data is still there when the hook runs (what backup needs).
      const old = await bb.node.file!.node.instance.preadv!(offset, 1, new Uint8Array(1), 0);
      void old;
      seen.push(`${kind} ${offset} ${bytes}`);
    });
    await bb.write(0, new Uint8Array(10).fill(1));
    expect(fired).toEqual([]);
    await bb.write(99_999, new Uint8Array(10).fill(1));
    expect(fired).toEqual([100_000, 99_999]);
    await bb.write(200_000, new Uint8Array(10).fill(1));
    expect(fired.length).toBe(2);
    await bb.writeZeroes(0, 5);
    expect(seen).toEqual(['write 0 10', 'write 99999 10', 'write 200000 10', 'zero 0 5']);
    await bb.close();
  });
});

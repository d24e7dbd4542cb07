import { describe, it, expect } from 'vitest';
import { BlockBackend, BlockGraph, MemoryStorage, createMemoryDriver, rawDriver, nullDriver } from '../../src/node.js';

describe('smoke', () => {
  it('writes and reads a raw image in memory', async () => {
    const storage = new MemoryStorage();
    const graph = new BlockGraph([createMemoryDriver(storage), rawDriver, nullDriver], 'memory');
    storage.create('a', 1 << 20);
    const bb = await BlockBackend.open(graph, 'memory:a', { format: 'raw' });
    await bb.write(100, new Uint8Array([1, 2, 3]));
    expect(Array.from(await bb.read(99, 5))).toEqual([0, 1, 2, 3, 0]);
    await bb.close();
    expect(graph.listNodes()).toEqual([]);
  });
});

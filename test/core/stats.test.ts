/**
 * I/O statistics of a BlockBackend.
 */
import { describe, it, expect } from 'vitest';
import {
  BlockBackend,
  Perm,
} from '../../src/node.js';
import { memoryGraph } from './helpers.js';

describe('statistics', () => {
  it('counts operations, bytes and failures per type', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('d', 65536);
    const bb = await BlockBackend.open(graph, 'memory:d', { format: 'raw' }, { perm: Perm.CONSISTENT_READ | Perm.WRITE });
    for (let i = 0; i < 16; i++) await bb.read(i * 512, 512);
    await bb.write(0, new Uint8Array(1000));
    await bb.flush();
    expect(bb.stats.read.ops).toBe(16);
    expect(bb.stats.read.bytes).toBe(16 * 512);
    expect(bb.stats.read.timeMs).toBeGreaterThanOrEqual(0);
    expect(bb.stats.write.bytes).toBe(1000);
    expect(bb.stats.flush.ops).toBe(1);
    expect(bb.node.stats.read.ops).toBe(16);
    await bb.close();
  });
});

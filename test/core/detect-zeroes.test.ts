/**
 * detect-zeroes on the request path.
 */
import { describe, it, expect } from 'vitest';
import {
  BlockBackend,
  Status,
} from '../../src/node.js';
import { memoryGraph } from './helpers.js';

describe('detect-zeroes', () => {
  it('turns zero buffers into zero writes, and unmaps with detect-zeroes=unmap', async () => {
    const { graph, storage } = memoryGraph();
    const f = storage.create('d', 1 << 20);
    f.writeRaw(0, new Uint8Array(1 << 20).fill(0xaa));
    const bb = await BlockBackend.open(graph, { driver: 'raw', 'detect-zeroes': 'unmap', discard: 'unmap', file: { driver: 'memory', filename: 'd' } });
    await bb.write(65536, new Uint8Array(65536));
    expect(bb.node.stats.zeroWrite.ops).toBe(1);
    expect(bb.node.stats.write.ops).toBe(0);
    const st = await bb.blockStatus(65536, 65536);
    expect(st.status & Status.ZERO).toBeTruthy();
    expect(f.allocatedBytes).toBe((1 << 20) - 65536);
    await bb.close();
  });
});

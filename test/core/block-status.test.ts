/**
 * Block status over a backing chain.
 */
import { describe, it, expect } from 'vitest';
import {
  Status,
  blockStatusAbove,
  isAllocatedAbove,
} from '../../src/node.js';
import { memoryGraph } from './helpers.js';

describe('block status over a chain', () => {
  /*
   *   top(stubfmt, allocated everywhere) ──backing──> base(raw over sparse memory)
   */
  it('answers depth and allocation through the chain', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('base', 1 << 20).writeRaw(65536, new Uint8Array(10).fill(1));
    const base = await graph.open({ driver: 'raw', 'node-name': 'base', file: { driver: 'memory', filename: 'base' } }, { readOnly: true });
    const st = await blockStatusAbove(base, undefined, true, 0, 1 << 20);
    expect(st.status & Status.ZERO).toBeTruthy();
    expect(st.pnum).toBe(65536);
    const st2 = await blockStatusAbove(base, undefined, true, 65536, 1 << 20);
    expect(st2.status & Status.DATA).toBeTruthy();
    expect(st2.map).toBe(65536);
    const alloc = await isAllocatedAbove(base, undefined, false, 0, 4096);
    expect(alloc.allocated).toBe(true);
    await base.unref();
  });
});

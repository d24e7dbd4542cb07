/**
 * copy-on-read on the request path.
 */
import { describe, it, expect } from 'vitest';
import {
  BlockBackend,
  isAllocatedAbove,
} from '../../src/node.js';
import { memoryGraph } from './helpers.js';

describe('copy-on-read', () => {
  /*
   *   bb ── top(stubfmt over memory:top; holes = unallocated) ──backing──> base(raw, memory:base)
   *   Reads with copy-on-read copy base data into top, once.
   */
  it('copies unallocated data from the backing file into the top layer', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('top', 1 << 20);
    storage.create('base', 1 << 20).writeRaw(0, new Uint8Array(1 << 20).fill(4));
    const base = await graph.open({ driver: 'raw', 'node-name': 'base', file: { driver: 'memory', filename: 'base' } }, { readOnly: true });
    const top = await graph.open({ driver: 'stubfmt', file: { driver: 'memory', filename: 'top' }, backing: 'base' });
    await base.unref();
    const bb = await BlockBackend.attach(graph, top);
    await bb.write(0, new Uint8Array(65536).fill(8));
    expect((await isAllocatedAbove(top, base, false, 65536, 65536)).allocated).toBe(false);
    top.copyOnRead++;
    const got = await bb.read(60000, 10000);
    expect(got[0]).toBe(8);
    expect(got[9999]).toBe(4);
    // The range from base is now stored in top; the top's own data was not rewritten.
    expect((await isAllocatedAbove(top, base, false, 65536, 3000)).allocated).toBe(true);
    expect(storage.get('top')!.toBytes()[65536]).toBe(4);
    const writes = storage.get('top')!.writeCount;
    await bb.read(60000, 10000);
    expect(storage.get('top')!.writeCount).toBe(writes);
    top.copyOnRead--;
    await bb.close();
    await top.unref();
    expect(graph.listNodes()).toEqual([]);
  });
});

/**
 * The raw format driver: windows (offset / size) over the file.
 */
import { describe, it, expect } from 'vitest';
import {
  BlockBackend,
  ReqFlag,
} from '../../../src/node.js';
import { expectBlockError, memoryGraph } from '../../core/helpers.js';

describe('raw', () => {
  it('serves a window of its file with offset and size', async () => {
    const { graph, storage } = memoryGraph();
    const f = storage.create('d', 8192);
    for (let i = 0; i < 8192; i++) f.writeRaw(i, new Uint8Array([i & 0xff]));
    const bb = await BlockBackend.open(graph, { driver: 'raw', offset: 1000, size: 2000, file: { driver: 'memory', filename: 'd' } });
    expect(bb.length).toBe(2000);
    expect((await bb.read(0, 1))[0]).toBe(1000 & 0xff);
    await expectBlockError(bb.read(1999, 2), 'EIO', /beyond the end/);
    await bb.write(1999, new Uint8Array([0xee]));
    expect(f.toBytes()[2999]).toBe(0xee);
    await expectBlockError(bb.truncate(4000), 'ENOTSUP', /fixed size/);
    await bb.close();
  });

  it('truncates and zero-writes through to the file', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('d', 4096);
    const bb = await BlockBackend.open(graph, 'memory:d', { format: 'raw' });
    await bb.truncate(1 << 20);
    expect(bb.length).toBe(1 << 20);
    expect(storage.get('d')!.length).toBe(1 << 20);
    await bb.write(500_000, new Uint8Array(100).fill(3));
    await bb.writeZeroes(500_010, 10, ReqFlag.MAY_UNMAP);
    const got = await bb.read(500_000, 100);
    expect(got[9]).toBe(3);
    expect(got[10]).toBe(0);
    expect(got[20]).toBe(3);
    await bb.close();
  });
});

/**
 * copyRange (src/core/copy-range.ts, QEMU's bdrv_co_copy_range) on a memory
 * graph: raw over memory to raw over memory (offsets of raw windows
 * applied), the destination's write generation and dirty bitmaps updated as
 * by a write, ENOTSUP across back ends and for drivers without the hooks,
 * a zero-write request, and range checks.
 */
import { describe, it, expect } from 'vitest';
import { BlockBackend } from '../../src/node.js';
import { blkCopyRange, copyRange } from '../../src/core/copy-range.js';
import { ReqFlag } from '../../src/core/driver.js';
import { expectBlockError, memoryGraph } from './helpers.js';

describe('copyRange', () => {
  it('copies between raw windows over memory files and counts as a write on the destination', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('a', 1 << 20);
    storage.create('b', 1 << 20);
    const src = await BlockBackend.open(graph, { driver: 'raw', offset: 4096, file: { driver: 'memory', filename: 'a' } });
    const dst = await BlockBackend.open(graph, { driver: 'raw', offset: 512, file: { driver: 'memory', filename: 'b' } });
    const data = new Uint8Array(70000).map((_, i) => (i * 7) & 0xff);
    await src.write(1000, data);
    const gen = dst.node.writeGeneration;
    await copyRange(src.root, 1000, dst.root, 3000, data.length);
    expect(await dst.read(3000, data.length)).toEqual(data);
    const raw = new Uint8Array(data.length);
    storage.get('b')!.read(512 + 3000, raw);
    expect(raw).toEqual(data);
    expect(dst.node.writeGeneration).toBeGreaterThan(gen);
    expect(dst.node.highestWriteEnd).toBe(3000 + data.length);
    // A zero write needs no source.
    await copyRange(src.root, 0, dst.root, 3000, 4096, 0, ReqFlag.ZERO_WRITE);
    expect(await dst.read(3000, 4096)).toEqual(new Uint8Array(4096));
    await expectBlockError(blkCopyRange(src, (1 << 20) - 4096, dst, 0, 8192), 'EIO', /beyond the 1044480-byte device/);
    await blkCopyRange(src, 1000, dst, 0, 512);
    expect(await dst.read(0, 512)).toEqual(data.subarray(0, 512));
    await src.close();
    await dst.close();
  });

  it('is ENOTSUP across back ends and through drivers without the hooks', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('a', 1 << 20);
    storage.create('c', 1 << 20);
    const src = await BlockBackend.open(graph, { driver: 'raw', file: { driver: 'memory', filename: 'a' } });
    const nul = await BlockBackend.open(graph, { driver: 'null-co', size: 1 << 20 });
    const stub = await BlockBackend.open(graph, { driver: 'stubfilter', file: { driver: 'memory', filename: 'c' } });
    await expectBlockError(copyRange(src.root, 0, nul.root, 0, 4096), 'ENOTSUP');
    await expectBlockError(copyRange(nul.root, 0, src.root, 0, 4096), 'ENOTSUP');
    await expectBlockError(copyRange(stub.root, 0, src.root, 0, 4096), 'ENOTSUP');
    for (const b of [src, nul, stub]) await b.close();
  });
});

/**
 * BlockBackend error policies (werror / rerror): report, stop, enospc.
 */
import { describe, it, expect } from 'vitest';
import {
  BlockBackend,
  BlockError,
  type StopEvent,
} from '../../src/node.js';
import { expectBlockError, memoryGraph } from './helpers.js';

describe('error policy', () => {
  it('reports by default, and stops then retries on ENOSPC with werror=enospc', async () => {
    const { graph, storage } = memoryGraph();
    const f = storage.create('d', 65536);
    const bb = await BlockBackend.open(graph, 'memory:d', { format: 'raw' }, { name: 'disk0' });
    f.faults = { failAfterWrites: 1, failCode: 'EIO' };
    await bb.write(0, new Uint8Array([1]));
    await expectBlockError(bb.write(1, new Uint8Array([2])), 'EIO', /Injected EIO/);
    expect(bb.stats.write.failed).toBe(1);

    // QEMU's BlockBackend default: ENOSPC is reported like any other error.
    f.faults = { failAfterWrites: f.writeCount, failCode: 'ENOSPC' };
    await expectBlockError(bb.write(2, new Uint8Array([3])), 'ENOSPC', /Injected ENOSPC/);
    expect(bb.isStopped).toBe(false);
    await bb.close();

    const bb2 = await BlockBackend.open(graph, 'memory:d', { format: 'raw' }, { name: 'disk0', werror: 'enospc' });
    const stops: StopEvent[] = [];
    bb2.onStop.push((e) => stops.push(e));
    const pending = bb2.write(2, new Uint8Array([3]));
    await new Promise((r) => setTimeout(r, 5));
    expect(bb2.isStopped).toBe(true);
    expect(stops[0]!.error.code).toBe('ENOSPC');
    // Space freed: resume retries the request, which now succeeds.
    f.faults = {};
    bb2.resume();
    await pending;
    expect(Array.from(await bb2.read(0, 3))).toEqual([1, 0, 3]);
    await bb2.close();
  });

  it('ignores errors with rerror=ignore and werror=ignore', async () => {
    const { graph, storage } = memoryGraph();
    const f = storage.create('d', 4096);
    const bb = await BlockBackend.open(graph, 'memory:d', { format: 'raw' }, { werror: 'ignore', rerror: 'ignore' });
    f.faults = { failAfterWrites: 0 };
    await bb.write(0, new Uint8Array([1]));
    expect(bb.stats.write.failed).toBe(1);
    await bb.close();
    await expect(BlockBackend.attach(graph, null as never, { rerror: 'enospc' })).rejects.toThrow(BlockError);
  });
});

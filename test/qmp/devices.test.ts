/**
 * The BlockBackend ("device") forms of the QMP commands in-process, as the
 * worker runs them with its open disks (qemu-storage-daemon has no devices,
 * so the differential tests cannot show them): query-blockstats without
 * query-nodes lists each device with its backend's counters and the node
 * chain below; x-debug-query-block-graph names its BlockBackend.
 */
import { describe, expect, it } from 'vitest';
import { BlockBackend } from '../../src/core/backend.js';
import { createNodeGraph } from '../../src/node.js';
import { BlockQmp } from '../../src/qmp/block-qmp.js';

const VERSION = { major: 0, minor: 1, micro: 0, package: 'test' };

describe('QMP device forms (the worker)', () => {
  it('query-blockstats and the graph show a device with its counters', async () => {
    const graph = createNodeGraph();
    const node = await graph.open({ driver: 'null-co', 'node-name': 'n', size: 1048576 });
    const bb = await BlockBackend.attach(graph, node, { name: 'disk0' });
    await node.unref();
    const q = new BlockQmp(graph, VERSION, undefined, () => [{ name: 'disk0', backend: bb }]);
    await bb.write(4096, new Uint8Array(8192));
    await bb.read(0, 512);
    await bb.flush();
    await bb.discard(0, 4096);
    const r = (await q.dispatcher.execute('query-blockstats', {})) as { return: Array<Record<string, any>> };
    expect(r.return).toHaveLength(1);
    const s = r.return[0]!;
    expect(s.device).toBe('disk0');
    expect(s['node-name']).toBe('n');
    expect(s.stats).toMatchObject({
      rd_bytes: 512, rd_operations: 1, wr_bytes: 8192, wr_operations: 1, flush_operations: 1,
      failed_wr_operations: 0, wr_highest_offset: 12288, account_failed: true, timed_stats: [],
    });
    const nodes = (await q.dispatcher.execute('query-blockstats', { 'query-nodes': true })) as { return: Array<Record<string, any>> };
    // At node level the counters belong to no backend: zero but the highest offset.
    expect(nodes.return[0]!.stats).toMatchObject({ wr_bytes: 0, wr_operations: 0, wr_highest_offset: 12288 });
    const g = (await q.dispatcher.execute('x-debug-query-block-graph', {})) as { return: { nodes: unknown[]; edges: unknown[] } };
    expect(g.return.nodes).toEqual([
      { id: 2, type: 'block-driver', name: 'n' },
      { id: 1, type: 'block-backend', name: 'disk0' },
    ]);
    expect(g.return.edges).toEqual([
      { parent: 1, child: 2, name: 'root', perm: ['write', 'consistent-read'], 'shared-perm': ['write-unchanged', 'consistent-read'] },
    ]);
    await bb.close();
    await q.close();
  });

  it('block_set_io_throttle: QEMU\'s errors, limits that hold requests back, all zero lifts them', async () => {
    const graph = createNodeGraph();
    const node = await graph.open({ driver: 'null-co', 'node-name': 'n', size: 1048576 });
    const bb = await BlockBackend.attach(graph, node, { name: 'disk0' });
    await node.unref();
    const q = new BlockQmp(graph, VERSION, undefined, () => [{ name: 'disk0', backend: bb }]);
    const zero = { bps: 0, bps_rd: 0, bps_wr: 0, iops: 0, iops_rd: 0, iops_wr: 0 };
    const x = (args: Record<string, unknown>) => q.dispatcher.execute('block_set_io_throttle', args);
    const err = (cls: string, desc: string) => ({ error: { class: cls, desc } });
    expect(await x({ bps: 0 })).toEqual(err('GenericError', "Parameter 'bps_rd' is missing"));
    expect(await x(zero)).toEqual(err('GenericError', "Need exactly one of 'device' and 'id'"));
    expect(await x({ ...zero, device: 'disk0', id: 'x' })).toEqual(err('GenericError', "Need exactly one of 'device' and 'id'"));
    expect(await x({ ...zero, id: 'x' })).toEqual(err('GenericError', "Device 'x' not found"));
    expect(await x({ ...zero, device: 'zz' })).toEqual(err('DeviceNotFound', "Device 'zz' not found"));
    expect(await x({ ...zero, device: 'disk0', bps: 1, bps_rd: 1 })).toEqual(
      err('GenericError', 'bps/iops/max total values and read/write values cannot be used at the same time'),
    );
    expect(await x({ ...zero, device: 'disk0', iops_size: 512 })).toEqual(err('GenericError', 'iops size requires an iops value to be set'));
    expect(await x({ ...zero, device: 'disk0', bps_wr: 10, bps_wr_max: 5 })).toEqual(err('GenericError', 'bps_max/iops_max cannot be lower than bps/iops'));
    expect(bb.ioLimits).toBeNull();
    // 512 B/s: the first write goes, the second waits for seconds.
    expect(await x({ ...zero, device: 'disk0', bps_wr: 512 })).toEqual({ return: {} });
    await bb.write(0, new Uint8Array(4096));
    let done = false;
    const second = bb.write(4096, new Uint8Array(4096)).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(done).toBe(false);
    // Reads are not limited by a write limit.
    await bb.read(0, 4096);
    // All zero: the limits go, the waiting write runs.
    expect(await x({ ...zero, device: 'disk0' })).toEqual({ return: {} });
    await second;
    expect(bb.ioLimits).toBeNull();
    await bb.close();
    await q.close();
  });

  it('the daemon (no devices) has no block_set_io_throttle, as qemu-storage-daemon', async () => {
    const q = new BlockQmp(createNodeGraph(), VERSION);
    expect(await q.dispatcher.execute('block_set_io_throttle', { device: 'd', bps: 0, bps_rd: 0, bps_wr: 0, iops: 0, iops_rd: 0, iops_wr: 0 })).toEqual({
      error: { class: 'CommandNotFound', desc: 'The command block_set_io_throttle has not been found' },
    });
    await q.close();
  });

  it('BLOCK_IO_ERROR from a device\'s backend, with the action of its error policy; none from other backends', async () => {
    const graph = createNodeGraph();
    const spec = (event: string) => ({ driver: 'raw', file: { driver: 'blkdebug', 'inject-error': [{ event, errno: 28 }], image: { driver: 'null-co', size: 1048576 } } });
    const rd = await BlockBackend.open(graph, { ...spec('read_aio'), 'node-name': 'r' }, {}, { name: 'rdisk', ioErrorEvents: true });
    const wr = await BlockBackend.open(graph, { ...spec('write_aio'), 'node-name': 'w' }, {}, { name: 'wdisk', werror: 'enospc', ioErrorEvents: true });
    const quiet = await BlockBackend.open(graph, { ...spec('read_aio'), 'node-name': 'x' }, {}, { name: 'export' });
    const q = new BlockQmp(graph, VERSION, undefined, () => [{ name: 'rdisk', backend: rd }, { name: 'wdisk', backend: wr }]);
    await expect(rd.read(0, 512)).rejects.toThrow();
    await expect(quiet.read(0, 512)).rejects.toThrow();
    const held = wr.write(0, new Uint8Array(512)).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 20));
    expect(wr.isStopped).toBe(true);
    const events = q.events.drain().map((e) => ({ event: e.event, data: e.data }));
    expect(events).toEqual([
      { event: 'BLOCK_IO_ERROR', data: { device: 'rdisk', 'node-name': 'r', operation: 'read', action: 'report', nospace: true, reason: 'No space left on device' } },
      { event: 'BLOCK_IO_ERROR', data: { device: 'wdisk', 'node-name': 'w', operation: 'write', action: 'stop', nospace: true, reason: 'No space left on device' } },
    ]);
    // The stopped write's data never reached storage: close says so, and the write fails.
    await expect(wr.close()).rejects.toThrow(/stopped by the error policy/);
    await held;
    await Promise.all([rd.close(), quiet.close()]);
    await q.close();
  });
});

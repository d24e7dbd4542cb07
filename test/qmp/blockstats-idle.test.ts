/**
 * idle_time_ns of query-blockstats for a device (a worker's disk; the
 * daemon, like qemu-storage-daemon, has none, and its node entries never
 * carry the field, as blockstats-graph-diff.test.ts checks against qsd):
 * absent until the backend's first request, then the nanoseconds since the
 * last one ended, in QEMU's member order; node entries stay without it.
 */
import { describe, expect, it } from 'vitest';
import { BlockBackend } from '../../src/core/backend.js';
import { createNodeGraph } from '../../src/node.js';
import { BlockQmp } from '../../src/qmp/block-qmp.js';

const VERSION = { major: 0, minor: 1, micro: 0, package: 'test' };

describe('query-blockstats idle_time_ns (the worker)', () => {
  it('absent before any request, then a non-negative integer; never on node entries', async () => {
    const graph = createNodeGraph();
    const node = await graph.open({ driver: 'null-co', 'node-name': 'n', size: 1048576 });
    const bb = await BlockBackend.attach(graph, node, { name: 'disk0' });
    await node.unref();
    const q = new BlockQmp(graph, VERSION, undefined, () => [{ name: 'disk0', backend: bb }]);
    const stats = async (args: Record<string, unknown> = {}) =>
      ((await q.dispatcher.execute('query-blockstats', args)) as { return: Array<{ stats: Record<string, unknown> }> }).return[0]!.stats;
    expect(await stats()).not.toHaveProperty('idle_time_ns');
    await bb.write(0, new Uint8Array(4096));
    const s = await stats();
    expect(Number.isInteger(s.idle_time_ns)).toBe(true);
    expect(s.idle_time_ns as number).toBeGreaterThanOrEqual(0);
    // QEMU's BlockDeviceStats order: after the merged counters, before the failed ones.
    const keys = Object.keys(s);
    expect(keys.indexOf('idle_time_ns')).toBe(keys.indexOf('unmap_merged') + 1);
    expect(keys[keys.indexOf('idle_time_ns') + 1]).toBe('failed_rd_operations');
    expect(await stats({ 'query-nodes': true })).not.toHaveProperty('idle_time_ns');
    await bb.close();
    await q.close();
  });
});

/**
 * query-blockstats and x-debug-query-block-graph against
 * qemu-storage-daemon 7.2: both forms of query-blockstats (no devices in a
 * storage daemon: the BlockBackend form is empty), the per-node counters
 * after guest writes and discards through an NBD export, and the graph with
 * its links' permissions, with and without the export's BlockBackend.
 * Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { both, canonical, hasQsd, run, sortNodes, stopAll, type Json, type Step } from './harness.js';

afterAll(stopAll);

const cap: Step = { execute: 'qmp_capabilities' };
const stats: Step = { execute: 'query-blockstats', arguments: { 'query-nodes': true } };
const graph: Step = { execute: 'x-debug-query-block-graph' };
const nbdIo = (cmds: string[]): Step => ({
  call: (dir) => run('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), `nbd+unix:///q?socket=${dir}/nbd.sock`], dir),
});

/** The graph with ids replaced by the names of their nodes (ids follow QEMU's internal node order), sorted. */
function byName(reply: Json): Json {
  const g = (reply as { return?: { nodes: Array<{ id: number; type: string; name: string }>; edges: Array<Record<string, Json>> } }).return;
  if (!g || !Array.isArray(g.nodes)) return reply;
  const name = new Map(g.nodes.map((n) => [n.id, `${n.type}:${n.name}`]));
  const nodes = g.nodes.map((n) => `${n.type}:${n.name}`).sort();
  const edges = g.edges.map((e) => canonical({ ...e, parent: name.get(e.parent as number)!, child: name.get(e.child as number)! })).sort();
  // The ids are 1..n, each node's once.
  expect(g.nodes.map((n) => n.id).sort((a, b) => a - b)).toEqual(g.nodes.map((_, i) => i + 1));
  return { nodes, edges } as Json;
}

describe.skipIf(!hasQsd())('query-blockstats and x-debug-query-block-graph against qemu-storage-daemon 7.2', () => {
  it('counters and graph of a qcow2 chain, before, during and after an NBD export', async () => {
    const r = await both(
      'blockstats-graph',
      (dir) => {
        run('qemu-img', ['create', '-f', 'qcow2', 'b.qcow2', '4M'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'a.qcow2', '4M'], dir);
      },
      [
        '--blockdev', JSON.stringify({ driver: 'qcow2', 'node-name': 'q', discard: 'unmap', file: { driver: 'file', 'node-name': 'f', discard: 'unmap', filename: '$DIR/a.qcow2' } }),
        '--blockdev', JSON.stringify({ driver: 'null-co', 'node-name': 'n', size: 1048576 }),
      ],
      [
        cap,
        { execute: 'query-blockstats' },
        { execute: 'query-blockstats', arguments: { 'query-nodes': false } },
        stats,
        { execute: 'query-blockstats', arguments: { 'query-nodes': 1 } },
        { execute: 'query-blockstats', arguments: { bogus: true } },
        graph,
        { execute: 'x-debug-query-block-graph', arguments: { x: 1 } },
        // No devices in a storage daemon: no block_set_io_throttle either.
        { execute: 'block_set_io_throttle', arguments: { device: 'q', bps: 1, bps_rd: 0, bps_wr: 0, iops: 0, iops_rd: 0, iops_wr: 0 } },
        { execute: 'nbd-server-start', arguments: { addr: { type: 'unix', data: { path: '$DIR/nbd.sock' } } } },
        { execute: 'block-export-add', arguments: { type: 'nbd', id: 'e', 'node-name': 'q', writable: true } },
        graph,
        nbdIo(['write -P 1 0 64k', 'write -P 2 1M 4k', 'write -z 2M 64k', 'discard 0 64k', 'write -P 3 3M 512']),
        stats,
        { execute: 'query-blockstats' },
        { execute: 'block-export-del', arguments: { id: 'e' } },
        graph,
        stats,
      ],
    );
    const norm = (x: typeof r.qemu) => x.replies.map(sortNodes).map(byName);
    expect(norm(r.ours)).toEqual(norm(r.qemu));
    // The graphs as they are: QEMU's order of backends, nodes and links, and so its ids.
    const graphs = (x: typeof r.qemu) => x.replies.filter((reply) => Array.isArray((reply as { return?: { nodes?: Json } }).return?.nodes));
    expect(graphs(r.ours)).toEqual(graphs(r.qemu));
    expect(r.ours.events).toEqual(r.qemu.events);
  }, 60_000);
});

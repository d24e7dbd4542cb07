/**
 * query-blockstats (QEMU 7.2's block/qapi.c): with query-nodes, one entry per
 * node, whose counters are zero (they belong to BlockBackends) except the
 * highest written offset, with the file driver's discard counts and the
 * stats of the node's data child under `parent`; without it, one entry per
 * named BlockBackend (the worker's disks; the daemon has none, as
 * qemu-storage-daemon has no devices) with the backend's counters and the
 * time since its last request (idle_time_ns, once it has had one), and its
 * node's data and backing children below. timed_stats stays empty: QEMU
 * fills it only for a device given stats-intervals, which no disk has.
 */
import type { BlockBackend } from '../core/backend.js';
import type { BlockNode, IoStats } from '../core/node.js';
import { ChildRole } from '../core/permissions.js';
import { now } from '../core/request-accounting.js';
import type { BlockQmp } from './block-qmp.js';
import type { QmpCommand } from './dispatcher.js';
import { m, struct } from './schema.js';

type Json = Record<string, unknown>;

/** A BlockBackend the host names (QEMU's BlockBackend with a name or a device). */
export interface QmpDevice {
  name: string;
  backend: BlockBackend;
}

const ms2ns = (ms: number) => Math.round(ms * 1e6);

/** BlockDeviceStats; `io` fills the counters (a BlockBackend's), else they are zero. */
function deviceStats(node: BlockNode, io?: IoStats): Json {
  const z = io ?? { read: zero(), write: zero(), zeroWrite: zero(), discard: zero(), flush: zero() };
  return {
    rd_bytes: z.read.bytes,
    wr_bytes: z.write.bytes + z.zeroWrite.bytes,
    unmap_bytes: z.discard.bytes,
    rd_operations: z.read.ops,
    wr_operations: z.write.ops + z.zeroWrite.ops,
    flush_operations: z.flush.ops,
    unmap_operations: z.discard.ops,
    rd_total_time_ns: ms2ns(z.read.timeMs),
    wr_total_time_ns: ms2ns(z.write.timeMs + z.zeroWrite.timeMs),
    flush_total_time_ns: ms2ns(z.flush.timeMs),
    unmap_total_time_ns: ms2ns(z.discard.timeMs),
    wr_highest_offset: node.highestWriteEnd,
    rd_merged: 0,
    wr_merged: 0,
    unmap_merged: 0,
    // Only once the backend has seen a request (QEMU's has_idle_time_ns).
    ...(io?.lastAccessMs !== undefined ? { idle_time_ns: ms2ns(Math.max(0, now() - io.lastAccessMs)) } : {}),
    failed_rd_operations: z.read.failed,
    failed_wr_operations: z.write.failed + z.zeroWrite.failed,
    failed_flush_operations: z.flush.failed,
    failed_unmap_operations: z.discard.failed,
    invalid_rd_operations: 0,
    invalid_wr_operations: 0,
    invalid_flush_operations: 0,
    invalid_unmap_operations: 0,
    // A backend counts its failed requests; it does not tell invalid ones apart.
    account_invalid: false,
    account_failed: io !== undefined,
    timed_stats: [],
  };
}

function zero() {
  return { ops: 0, bytes: 0, failed: 0, timeMs: 0 };
}

/** QEMU's bdrv_get_specific_stats: only the file driver has some (its discards). */
function specificStats(node: BlockNode): Json | undefined {
  if (node.driver.name !== 'file') return undefined;
  const d = node.stats.discard;
  return { driver: 'file', 'discard-nb-ok': d.ops, 'discard-nb-failed': d.failed, 'discard-bytes-ok': d.bytes };
}

/** The child whose stats go under `parent`: the primary one if it holds data, else the only data child. */
function dataChild(node: BlockNode): BlockNode | undefined {
  const primary = node.children.find((c) => c.role & ChildRole.PRIMARY);
  if (primary && primary.role & (ChildRole.DATA | ChildRole.FILTERED)) return primary.node;
  const data = node.children.filter((c) => c.role & ChildRole.DATA);
  return data.length === 1 ? data[0]!.node : undefined;
}

/** QEMU's bdrv_query_bds_stats; `blkLevel` adds the filtered or backing child under `backing`. */
function nodeStats(node: BlockNode, blkLevel: boolean, io?: IoStats): Json {
  const s: Json = {};
  if (node.nodeName !== '') s['node-name'] = node.nodeName;
  s.stats = deviceStats(node, io);
  const specific = specificStats(node);
  if (specific) s['driver-specific'] = specific;
  const parent = dataChild(node);
  if (parent) s.parent = nodeStats(parent, blkLevel);
  if (blkLevel) {
    const below = node.driver.kind === 'filter' ? node.filtered?.node : node.backing?.node;
    if (below) s.backing = nodeStats(below, blkLevel);
  }
  return s;
}

/** query-blockstats of `q`; `devices` lists the host's named BlockBackends. */
export function blockstatsCommands(q: BlockQmp, devices: () => QmpDevice[]): QmpCommand[] {
  return [
    {
      name: 'query-blockstats',
      args: struct('query-blockstats', [m('*query-nodes', 'bool')]),
      run: (args) => {
        if (args['query-nodes'] === true) return q.graph.listNodes().filter((n) => n.isOpen).map((n) => nodeStats(n, false));
        return devices().map((d) => ({ device: d.name, ...nodeStats(d.backend.node, true, d.backend.stats) }));
      },
    },
  ];
}

/**
 * The filter node a mirror, commit, backup or stream job puts above its
 * source (QEMU's mirror_top / commit_top / copy-before-write / copy-on-read): the guest's requests
 * pass through it (a backup hooks its writes to save the old data first),
 * but it shares every permission on the source, so the job may write into
 * the chain below (the base of a commit) while the guest writes the top.
 * Removed again when the job ends, pivoting the guest onto the filter's
 * replacement.
 */
import type { BlockGraph } from '../core/graph.js';
import type { BlockNode } from '../core/node.js';
import type { BlockDriver, DriverInstance } from '../core/driver.js';
import type { OptionReader } from '../core/options.js';
import { BlockError } from '../core/errors.js';
import { drainBegin, drainEnd } from '../core/drain.js';
import { PERM_ALL, Perm, ROLE_FILTERED_PRIMARY } from '../core/permissions.js';
import { copyOnReadDriver } from '../filters/copy-on-read.js';

/** The filters jobs insert, named as QEMU names them. */
export type JobFilterKind = 'mirror_top' | 'commit_top' | 'copy-before-write' | 'copy-on-read';

function filterDriver(name: JobFilterKind): BlockDriver {
  return {
    name,
    kind: 'filter',
    // The filter stands for its source: it shows the source's name (QEMU's mirror_top and siblings).
    refreshFilename: (node) => node.file?.node.filename ?? '',
    async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
      const file = await node.openChild(options, 'file', ROLE_FILTERED_PRIMARY);
      if (!file) throw new BlockError('EINVAL', `${name}: no source node given`);
      return {
        getLength: () => file.length,
        // The guest's needs pass down; everything is shared so the job can work below, but
        // a backup (as QEMU's copy-before-write) lets nobody else write or resize its source:
        // such writes would bypass the filter, and the backup took the size at its start.
        childPerm: (_child, _role, perm) => ({
          perm: perm & (Perm.CONSISTENT_READ | Perm.WRITE | Perm.WRITE_UNCHANGED | Perm.RESIZE),
          shared: name === 'copy-before-write' && node.parents.length > 0 ? PERM_ALL & ~(Perm.WRITE | Perm.RESIZE) : PERM_ALL,
        }),
      };
    },
  };
}

const DRIVERS: Record<JobFilterKind, BlockDriver> = {
  mirror_top: filterDriver('mirror_top'),
  commit_top: filterDriver('commit_top'),
  'copy-before-write': filterDriver('copy-before-write'),
  // A stream's filter is the ordinary copy-on-read filter (QEMU's stream_start inserts one).
  'copy-on-read': copyOnReadDriver,
};

/**
 * Puts a filter above `source`: every parent of `source` (the guest's
 * backend, overlays) moves onto it. Returns the filter node, with one
 * reference the caller holds until {@link removeJobFilter}.
 */
export async function insertJobFilter(graph: BlockGraph, source: BlockNode, kind: JobFilterKind, nodeName?: string): Promise<BlockNode> {
  if (!graph.listDrivers().some((d) => d.name === kind)) graph.registerDriver(DRIVERS[kind]);
  // QEMU opens commit_top without its read-write flag (the overlay above only reads through it).
  const readOnly = kind === 'commit_top' ? { 'read-only': true } : {};
  const filter = await graph.openNode({ driver: kind, file: source.nodeName, ...readOnly, ...(nodeName ? { 'node-name': nodeName } : {}) });
  // Without a name of the user's the filter is implicit: queries show its source's names.
  filter.implicit = nodeName === undefined;
  // The guest's discards keep reaching the image while the job runs.
  filter.discardUnmap = source.discardUnmap;
  try {
    await graph.replaceNode(source, filter);
  } catch (e) {
    await filter.unref();
    throw e;
  }
  // The opener's reference stays with the job until removeJobFilter: a source no node or
  // backend uses (a node added by blockdev-add, held by the monitor alone) gives the filter
  // no parent, and the filter must live while the job runs (QEMU's job holds its filter too).
  return filter;
}

/**
 * Takes the filter out: its parents move to `replacement` (the source
 * itself, or the target the job pivots to) and the filter closes.
 */
export async function removeJobFilter(graph: BlockGraph, filter: BlockNode, replacement: BlockNode): Promise<void> {
  const link = filter.filtered;
  if (link) link.frozen = false;
  // The guest stays quiesced until the filter has closed: closing drains the nodes below it,
  // which the guest (moved off the filter) would otherwise keep busy for ever.
  const token = await drainBegin(filter);
  // The unref below drops the reference insertJobFilter kept for the job.
  try {
    await graph.replaceNode(filter, replacement);
  } finally {
    try {
      await filter.unref();
    } finally {
      drainEnd(token);
    }
  }
}

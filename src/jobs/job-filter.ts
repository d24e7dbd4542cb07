/**
 * The filter node a mirror, commit, backup or stream job puts above its
 * source (QEMU's mirror_top / commit_top / copy-before-write / copy-on-read): the guest's requests
 * pass through it (a backup hooks its writes to save the old data first),
 * and it takes and shares on the source what QEMU's filter does (see
 * childPerm), so the job may write into the chain below (the base of a
 * commit) while the guest writes the top.
 * Removed again when the job ends, pivoting the guest onto the filter's
 * replacement.
 */
import type { BlockGraph } from '../core/graph.js';
import type { BlockNode } from '../core/node.js';
import { ReqFlag, type BlockDriver, type DriverInstance } from '../core/driver.js';
import type { OptionReader } from '../core/options.js';
import { BlockError } from '../core/errors.js';
import { drainBegin, drainEnd } from '../core/drain.js';
import { ChildRole, PERM_ALL, Perm, ROLE_DATA_FILE, ROLE_FILTERED_PRIMARY, defaultChildPerms, type PermMask } from '../core/permissions.js';
import { copyOnReadDriver } from '../filters/copy-on-read.js';

/** The filters jobs insert, named as QEMU names them. */
export type JobFilterKind = 'mirror_top' | 'commit_top' | 'copy-before-write' | 'copy-on-read';

/** QEMU's mirror_top and commit_top take their source as `backing` (filtered_child_is_backing); copy-before-write as `file`. */
function sourceKey(kind: JobFilterKind): 'backing' | 'file' {
  return kind === 'mirror_top' || kind === 'commit_top' ? 'backing' : 'file';
}

/** The mirror_top nodes of active commits (QEMU's is_commit in the node's state): their source is above the job's target in one chain. */
const commitFilters = new WeakSet<BlockNode>();

function filterDriver(name: JobFilterKind): BlockDriver {
  return {
    name,
    kind: 'filter',
    // The filter stands for its source: it shows the source's name (QEMU's mirror_top and siblings).
    refreshFilename: (node) => node.filtered?.node.filename ?? '',
    async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
      const file = await node.openChild(options, sourceKey(name), ROLE_FILTERED_PRIMARY);
      if (!file) throw new BlockError('EINVAL', `${name}: no source node given`);
      // QEMU's copy-before-write writes what the guest overwrites into its `target` child.
      if (name === 'copy-before-write') await node.openChild(options, 'target', ROLE_DATA_FILE);
      const instance: DriverInstance = {
        getLength: () => file.length,
        childPerm: (_child, role, perm, shared) => childPerm(name, node, role, perm, shared),
      };
      if (name !== 'mirror_top') return instance;
      // QEMU's mirror_top takes no FUA and no MAY_UNMAP (supported_*_flags): FUA becomes a flush
      // after the write, and the guest's zero writes keep their clusters while the job runs.
      return {
        ...instance,
        supportedWriteFlags: ReqFlag.WRITE_UNCHANGED,
        supportedZeroFlags: ReqFlag.WRITE_UNCHANGED | ReqFlag.NO_FALLBACK,
        pwriteZeroes: (offset, bytes, flags) => file.pwriteZeroes(offset, bytes, flags),
      };
    },
  };
}

/**
 * What each filter takes and shares on its source, as QEMU's: mirror_top
 * passes its users' needs down (for an active commit without consistent
 * read, which the chain above the base does not share, and sharing writes,
 * which the job does below); commit_top takes nothing and shares everything,
 * so the job may write the base under the overlay; copy-before-write lets
 * nobody else write or resize its source while it has users (such writes
 * would bypass it, and the backup took the size at its start), and reads
 * what its users overwrite.
 */
function childPerm(name: JobFilterKind, node: BlockNode, role: number, perm: PermMask, shared: PermMask): { perm: PermMask; shared: PermMask } {
  if (name === 'commit_top') return { perm: 0, shared: PERM_ALL };
  // copy-before-write's target: it writes there, and the backup took the target's size at its start.
  if (name === 'copy-before-write' && !(role & ChildRole.FILTERED)) return { perm: Perm.WRITE, shared: PERM_ALL & ~Perm.RESIZE };
  const p = defaultChildPerms(role, perm, shared, !node.readOnly);
  if (name === 'mirror_top' && commitFilters.has(node)) return { perm: p.perm & ~Perm.CONSISTENT_READ, shared: p.shared | Perm.WRITE };
  if (name === 'copy-before-write' && node.parents.length > 0) {
    return { perm: p.perm | (perm & Perm.WRITE ? Perm.CONSISTENT_READ : 0), shared: p.shared & ~(Perm.WRITE | Perm.RESIZE) };
  }
  return p;
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
export async function insertJobFilter(
  graph: BlockGraph,
  source: BlockNode,
  kind: JobFilterKind,
  nodeName?: string,
  opts: { commit?: boolean; target?: BlockNode } = {},
): Promise<BlockNode> {
  if (!graph.listDrivers().some((d) => d.name === kind)) graph.registerDriver(DRIVERS[kind]);
  // QEMU opens commit_top without its read-write flag (the overlay above only reads through it).
  const readOnly = kind === 'commit_top' ? { 'read-only': true } : {};
  const filter = await graph.openNode({ driver: kind, [sourceKey(kind)]: source.nodeName, ...(opts.target ? { target: opts.target.nodeName } : {}), ...readOnly, ...(nodeName ? { 'node-name': nodeName } : {}) });
  if (opts.commit) commitFilters.add(filter);
  // Without a name of the user's the filter is implicit: queries show its source's names.
  filter.implicit = nodeName === undefined;
  // As QEMU's, the filter is opened without discard=unmap: the guest's discards stop at it
  // while the job runs (zero writes keep MAY_UNMAP where the source allows it).
  filter.discardUnmap = false;
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
    // A filter the job's links still hold (a stream's, until the job is dismissed) stays
    // without its child, as QEMU's bdrv_drop_filter leaves it.
    if (filter.refcnt > 1 && filter.filtered) await graph.detachChild(filter.filtered);
  } finally {
    try {
      await filter.unref();
    } finally {
      drainEnd(token);
    }
  }
}

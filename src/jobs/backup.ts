/**
 * The backup job (QEMU's blockdev-backup): the target ends up holding the
 * source as it was when the job started, while the guest keeps writing.
 *
 * A copy-before-write filter goes above the source: before a guest write,
 * zero write or discard reaches a cluster the backup still needs, the old
 * data of that cluster is copied to the target. The job copies the remaining
 * clusters in order; a cluster is copied once, by whichever comes first.
 *
 * sync full copies everything, top only what the source itself holds, none
 * nothing but the clusters the guest overwrites (the job then runs until
 * cancelled), bitmap the clusters dirty in a named bitmap (incremental
 * backup); bitmap-mode says what becomes of that bitmap afterwards.
 */
import { checkOp } from '../core/op-blockers.js';
import type { BlockGraph } from '../core/graph.js';
import type { BlockNode } from '../core/node.js';
import type { BdrvChild } from '../core/child.js';
import { JobLinks } from './job-links.js';
import { cowChild, isAllocatedAbove, blockStatusAbove } from '../core/block-status.js';
import { BdrvDirtyBitmap, BitmapCheck, lookupDirtyBitmap } from '../core/dirty-bitmap.js';
import { ReqFlag, Status } from '../core/driver.js';
import { BlockError, toBlockError } from '../core/errors.js';
import { PERM_ALL } from '../core/permissions.js';
import { CopyError } from './copy-error.js';
import { insertJobFilter, removeJobFilter } from './job-filter.js';
import { CopyBuffers } from './buffers.js';
import type { JobControl, JobDriver, OnErrorPolicy } from './job-types.js';

/** What the backup copies (QAPI MirrorSyncMode as backup takes it). */
export type BackupSync = 'full' | 'top' | 'none' | 'bitmap';
/** What becomes of the sync bitmap (QAPI BitmapSyncMode). */
export type BitmapMode = 'on-success' | 'never' | 'always';

/** QEMU's default backup cluster size. */
export const BACKUP_CLUSTER_SIZE_DEFAULT = 65536;
/** Largest copy the job issues at once. */
const MAX_CHUNK = 1 << 20;

/** How to back up. */
export interface BackupOptions {
  graph: BlockGraph;
  /** The node the guest uses. */
  source: BlockNode;
  /** The backup image, open read-write, the source's size. */
  target: BlockNode;
  sync: BackupSync;
  /** For sync bitmap (and optional for full / top): the source's bitmap to take the clusters from, by name. */
  bitmap?: string;
  bitmapMode?: BitmapMode;
  /** Write compressed clusters (the target must support them, e.g. qcow2). */
  compress?: boolean;
  onSourceError?: OnErrorPolicy;
  onTargetError?: OnErrorPolicy;
  /** node-name of the copy-before-write filter. */
  filterNodeName?: string;
  /** The job's id, for permission conflicts with its links ("backup job 'id'"). */
  jobId?: string;
}

/**
 * Makes the driver of a backup job; hand it to {@link JobRegistry.create}.
 * The point in time the target will show is when this resolves: the
 * copy-before-write filter is in place from then on, started or not.
 */
export async function backupJob(options: BackupOptions): Promise<JobDriver> {
  const { graph, source, target, sync } = options;
  const compress = options.compress ?? false;
  const mode = options.bitmapMode ?? (sync === 'bitmap' ? 'on-success' : undefined);
  if (source === target) throw new BlockError('EINVAL', 'Source and target cannot be the same');
  checkOp(source, 'backup-source');
  checkOp(target, 'backup-target');
  if (target.readOnly) throw new BlockError('EPERM', `Target node '${target.nodeName}' is read-only`);
  if (sync === 'bitmap' && options.bitmap === undefined) throw new BlockError('EINVAL', 'must provide a valid bitmap name for \'bitmap\' sync mode');
  if (options.bitmap !== undefined && sync !== 'bitmap' && sync !== 'full' && sync !== 'top') {
    throw new BlockError('EINVAL', `a bitmap cannot be given with sync mode '${sync}'`);
  }
  if (options.bitmap === undefined && options.bitmapMode !== undefined) {
    throw new BlockError('EINVAL', 'Cannot specify bitmap sync mode without a bitmap');
  }
  if (compress && !((target.instance.supportedWriteFlags ?? 0) & ReqFlag.COMPRESSED)) {
    throw new BlockError('ENOTSUP', `Compression is not supported for this drive ${target.nodeName}`);
  }
  const userBitmap = options.bitmap !== undefined ? lookupDirtyBitmap(source, options.bitmap) : undefined;
  if (userBitmap) {
    userBitmap.check(BitmapCheck.ALLOW_RO | BitmapCheck.BUSY);
    if (!(mode === 'on-success' || mode === 'never' || mode === 'always')) throw new BlockError('EINVAL', `Bitmap sync mode must be given with a bitmap`);
  }
  const targetCluster = target.instance.getInfo?.()?.clusterSize ?? 0;
  const cluster = compress && targetCluster > 0 ? targetCluster : Math.max(BACKUP_CLUSTER_SIZE_DEFAULT, targetCluster);
  const len = source.length;
  if (target.length < len) {
    throw new BlockError('EINVAL', 'Source and target image have different sizes', {}, { detail: `${len} and ${target.length}` });
  }
  source.ref();
  target.ref();

  // Clusters still to copy; and the clusters being copied right now, by first cluster index.
  const toCopy = new BdrvDirtyBitmap(source, '', cluster, len);
  const busy = new Map<number, Promise<void>>();
  let successor: BdrvDirtyBitmap | undefined;
  let userWasEnabled = false;
  let filter: BlockNode | undefined;
  // As QEMU's block-copy, the job reads and writes through its filter's links to the source and the target.
  let sourceLink: BdrvChild | undefined;
  let targetLink: BdrvChild | undefined;
  const links = new JobLinks(graph, 'backup', options.jobId);
  let hook: ((node: BlockNode, kind: string, offset: number, bytes: number) => Promise<void>) | undefined;
  let released = false;

  // Reused between copies: a fresh zero-filled buffer per copy cost more than the copy itself.
  const buffers = new CopyBuffers({ size: MAX_CHUNK });

  /** Copies the clusters of [offset, offset + bytes) that still need it (the job's and the guest's path). */
  async function copyBefore(offset: number, bytes: number, ctl?: JobControl): Promise<void> {
    const first = Math.floor(offset / cluster);
    const end = Math.min(Math.ceil((offset + bytes) / cluster), Math.ceil(len / cluster));
    for (let c = first; c < end; ) {
      const pending = busy.get(c);
      if (pending) {
        await pending;
        continue;
      }
      if (!toCopy.isDirty(c * cluster)) {
        c++;
        continue;
      }
      // A run of clusters that need copying and nobody is copying.
      let n = 1;
      while (c + n < end && n * cluster < MAX_CHUNK && !busy.has(c + n) && toCopy.isDirty((c + n) * cluster)) n++;
      const start = c * cluster;
      const size = Math.min(n * cluster, len - start);
      toCopy.resetDirty(start, size);
      let release!: () => void;
      const done = new Promise<void>((resolve) => (release = resolve));
      for (let i = 0; i < n; i++) busy.set(c + i, done);
      try {
        await copyRun(start, size);
        ctl?.progressUpdate(size);
      } catch (e) {
        toCopy.setDirty(start, size);
        throw e;
      } finally {
        for (let i = 0; i < n; i++) busy.delete(c + i);
        release();
      }
      c += n;
    }
  }

  /**
   * Reads a run from the source and writes it to the target: zeros as zeros
   * (each part of the run by its own block status, as QEMU's block-copy
   * does), compressed if asked.
   */
  async function copyRun(runStart: number, runSize: number): Promise<void> {
    // Compressed pieces must stay whole target clusters: the run is read as one.
    if (compress) return copyExtent(runStart, runSize, false);
    for (let start = runStart, end = runStart + runSize; start < end; ) {
      const st = await blockStatusAbove(source, undefined, true, start, end - start).catch((e: unknown) => {
        throw new CopyError('read', start, e);
      });
      const size = st.pnum > 0 ? Math.min(st.pnum, end - start) : end - start;
      await copyExtent(start, size, (st.status & Status.ZERO) !== 0);
      start += size;
    }
  }

  /** Copies one extent of one block status. */
  async function copyExtent(start: number, size: number, zero: boolean): Promise<void> {
    if (zero && !compress) {
      await targetLink!.pwriteZeroes(start, size).catch((e: unknown) => {
        throw new CopyError('write', start, e);
      });
      return;
    }
    const data = buffers.take(size);
    try {
      await sourceLink!.read(start, data);
    } catch (e) {
      buffers.give(data);
      throw new CopyError('read', start, e);
    }
    try {
      if (compress) {
        for (let p = 0; p < size; p += cluster) {
          const piece = data.subarray(p, Math.min(size, p + cluster));
          await targetLink!.write(start + p, piece, piece.length === cluster ? ReqFlag.COMPRESSED : 0);
        }
      } else {
        await targetLink!.write(start, data);
      }
    } catch (e) {
      throw new CopyError('write', start, e);
    } finally {
      buffers.give(data);
    }
  }

  async function initialBits(): Promise<void> {
    // sync none: every cluster may need saving, but only a guest write triggers it.
    if (userBitmap && sync === 'bitmap') {
      for (const [o, n] of userBitmap.dirtyExtents()) toCopy.setDirty(o, n);
    } else {
      toCopy.setDirty(0, len);
    }
    if (sync !== 'top') return;
    // top: only what the source itself holds.
    const backing = cowChild(source);
    for (let offset = 0; offset < len; ) {
      const r = await isAllocatedAbove(source, backing, false, offset, len - offset);
      const n = r.pnum || len - offset;
      if (!r.allocated) {
        // Only whole clusters: a cluster partly allocated is still copied.
        const a = Math.ceil(offset / cluster) * cluster;
        const b = Math.floor((offset + n) / cluster) * cluster;
        if (b > a) toCopy.resetDirty(a, b - a);
      }
      offset += n;
    }
  }

  /** What becomes of the user's bitmap, QEMU's rules per bitmap-mode. */
  function settleUserBitmap(success: boolean): void {
    if (!userBitmap || !successor) return;
    userBitmap.busy = false;
    const since = successor;
    successor = undefined;
    const list = source.dirtyBitmaps;
    if (list.includes(since)) list.splice(list.indexOf(since), 1);
    if (success && mode !== 'never') {
      // The bitmap now holds only what changed since the backup started.
      userBitmap.clear();
      userBitmap.merge([since]);
    } else if (!success && mode === 'always') {
      // Failed: drop what was copied, keep what was not, plus what changed meanwhile.
      userBitmap.clear();
      userBitmap.merge([since, toCopy]);
    } else {
      userBitmap.merge([since]);
    }
    userBitmap.disabled = !userWasEnabled;
    since.release();
  }

  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    // The job's links go first: the filter closes as it is taken out (they hold it too).
    await links.removeAll();
    if (filter && hook) {
      const i = filter.beforeWriteHooks.indexOf(hook);
      if (i >= 0) filter.beforeWriteHooks.splice(i, 1);
    }
    // What the filter stands on now: the source, or the filter of a later backup of it.
    if (filter) await removeJobFilter(graph, filter, filter.filtered?.node ?? source);
    filter = undefined;
    const i = source.dirtyBitmaps.indexOf(toCopy);
    if (i >= 0) source.dirtyBitmaps.splice(i, 1);
    toCopy.release();
    await source.unref();
    await target.unref();
  };

  // The point in time: from here on, every guest write first saves what it overwrites.
  let control: JobControl | undefined;
  try {
    await initialBits();
    // Shown on the source as QEMU's block-copy bitmap: anonymous, disabled (only the job sets and clears it).
    toCopy.disabled = true;
    source.dirtyBitmaps.push(toCopy);
    if (userBitmap) {
      // Writes from now on go to a successor; the bitmap itself is frozen until the end.
      userWasEnabled = userBitmap.enabled;
      successor = new BdrvDirtyBitmap(source, '', userBitmap.granularity, userBitmap.size);
      source.dirtyBitmaps.push(successor);
      userBitmap.disabled = true;
      userBitmap.busy = true;
    }
    // Not frozen (as QEMU's copy-before-write): a second backup of the source puts its filter below this one.
    filter = await insertJobFilter(graph, source, 'copy-before-write', options.filterNodeName, { target });
    sourceLink = filter.filtered;
    targetLink = filter.children.find((c) => c.name === 'target');
    // QEMU's backup job holds its filter ("main node") and the target.
    links.add('main node', filter, 0, PERM_ALL);
    links.add('target', target, 0, PERM_ALL);
    // QEMU's copy-before-write keeps two disabled bitmaps of its own: what it saved for guest
    // writes (done) and what a fleecing reader may read (access: all, as nothing is discarded here).
    const done = new BdrvDirtyBitmap(filter, '', cluster, len);
    const access = new BdrvDirtyBitmap(filter, '', cluster, len);
    done.disabled = true;
    access.disabled = true;
    access.setDirty(0, len);
    filter.dirtyBitmaps.push(done, access);
    hook = async (_node, kind, offset, bytes) => {
      if (kind === 'truncate') throw new BlockError('EPERM', `Cannot resize node '${source.nodeName}' while a backup runs`);
      // QEMU's default on-cbw-error (break-guest-write): the guest write fails if the old data cannot be saved.
      await copyBefore(offset, bytes, control).catch((e: unknown) => {
        throw e instanceof CopyError ? toBlockError(e.original) : e;
      });
      const start = Math.floor(offset / cluster) * cluster;
      const end = Math.min(len, Math.ceil((offset + bytes) / cluster) * cluster);
      if (end > start) done.setDirty(start, end - start);
    };
    filter.beforeWriteHooks.push(hook);
  } catch (e) {
    settleUserBitmap(false);
    await release();
    throw e;
  }

  return {
    type: 'backup',
    // As QEMU's backup: the job's own node (its filter) and the target; the source stays free for another backup.
    blockedNodes: [filter, target],
    links,

    async run(ctl: JobControl): Promise<void> {
      control = ctl;
      ctl.progressSetRemaining(toCopy.count);

      if (sync === 'none') {
        // Only the guest's writes are copied: the backup lasts until it is cancelled.
        while (!ctl.isCancelled()) await ctl.yield();
        return;
      }
      for (let offset = 0; offset < len; ) {
        await ctl.pausePoint();
        if (ctl.isCancelled()) return;
        const area = toCopy.nextDirtyArea(offset, len, MAX_CHUNK);
        if (!area) break;
        try {
          await copyBefore(area[0], area[1], ctl);
          offset = area[0] + area[1];
          await ctl.ratelimit(area[1]);
        } catch (e) {
          const failure = e instanceof CopyError ? e : new CopyError('write', area[0], e);
          const error = toBlockError(failure.original);
          const policy = failure.op === 'read' ? options.onSourceError : options.onTargetError;
          const action = ctl.errorAction(policy ?? 'report', failure.op === 'write' ? 'write' : 'read', error);
          if (action === 'report') throw error;
          offset = area[0];
        }
      }
      await targetLink!.flush();
    },

    commit(): void {
      settleUserBitmap(true);
    },

    abort(): void {
      settleUserBitmap(false);
    },

    async clean(): Promise<void> {
      settleUserBitmap(false);
      await release();
    },
  };
}

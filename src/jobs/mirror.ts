/**
 * The mirror job (QEMU's blockdev-mirror) and, on the same engine, active
 * commit (block-commit of the guest's top image into a base below it).
 *
 * A filter node above the source lets guest requests through; guest writes
 * mark an anonymous dirty bitmap on the source. The job copies what the sync
 * mode asks for, then keeps copying whatever the guest dirties. When nothing
 * is dirty it flushes the target and goes `ready`; on `complete` it drains the
 * source, copies the last dirty bits, and pivots the guest onto the target
 * (for active commit: onto the base, dropping the images above it). A soft
 * cancel of a ready job leaves a consistent copy without pivoting.
 */
import type { BlockGraph } from '../core/graph.js';
import type { BlockNode } from '../core/node.js';
import type { BdrvChild } from '../core/child.js';
import { BlockBackend } from '../core/backend.js';
import { blockStatusAbove, cowChild, isAllocatedAbove } from '../core/block-status.js';
import { BdrvDirtyBitmap, checkGranularity, defaultGranularity } from '../core/dirty-bitmap.js';
import { drainBegin, drainEnd, type DrainToken } from '../core/drain.js';
import { ReqFlag, Status } from '../core/driver.js';
import { BlockError, toBlockError } from '../core/errors.js';
import { PERM_ALL, Perm, ROLE_BACKING } from '../core/permissions.js';
import { CopyError } from './copy-error.js';
import { chainNodes, checkInChain, freezeChain, unfreezeChain } from './chain.js';
import { checkOp } from '../core/op-blockers.js';
import { insertJobFilter, removeJobFilter } from './job-filter.js';
import { openBacking } from '../core/backing-open.js';
import type { JobControl, JobDriver, OnErrorPolicy } from './job-types.js';
import { JOB_SLICE_MS } from './job.js';
import { CopyBuffers } from './buffers.js';
import { JobLinks } from './job-links.js';

/** What the mirror copies before it follows guest writes (QAPI MirrorSyncMode). */
export type MirrorSync = 'full' | 'top' | 'none';

/** Largest single copy operation (QEMU: 1 MiB; 2 MiB halves the per-operation cost of a qcow2 target, as in img convert). */
const MAX_IO_BYTES = 2 << 20;
/** Most copy operations in flight (QEMU's MAX_IN_FLIGHT). */
const MAX_IN_FLIGHT = 16;
/** Default bytes in flight (QEMU's default buf-size). */
export const DEFAULT_MIRROR_BUF_SIZE = 16 << 20;

/** How to mirror. */
export interface MirrorOptions {
  graph: BlockGraph;
  /** The node the guest uses. */
  source: BlockNode;
  /** Where the copy goes, open read-write (for `commit`: the base, an image below source). */
  target: BlockNode;
  /** full: everything the guest sees; top: only what source itself holds; none: only new writes. Default full. */
  sync?: MirrorSync;
  /** Bytes per dirty bit: a power of two, 512 B..64 MiB; default the target's cluster size (4..64 KiB). */
  granularity?: number;
  /** Most bytes in flight (default 16 MiB). */
  bufSize?: number;
  onSourceError?: OnErrorPolicy;
  onTargetError?: OnErrorPolicy;
  /** Zeros may deallocate on the target (default true). */
  unmap?: boolean;
  /** Active commit: `target` is a base of source's chain; data above it is copied and completion drops the images between. */
  commit?: boolean;
  /** node-name of the filter the job inserts. */
  filterNodeName?: string;
  /**
   * QEMU's zero_target (blockdev-mirror with sync full): the target's old
   * contents count for nothing. A target that can write zeros by unmapping
   * (opened with discard=unmap) is zeroed first, then what is allocated is
   * copied; any other target gets the whole device copied. Without it
   * (default) a full sync skips ranges both sides read as zeros.
   */
  zeroTarget?: boolean;
  /**
   * The target's backing file, attached when the job ends without failing
   * (completed, or cancelled once ready), before any pivot: QEMU's
   * drive-mirror opens its target without backing and gives it one only
   * then. A node (onto a new image: the source for sync none, the source's
   * backing for sync top) is attached as is; `'open'` (mode existing) opens
   * the file the target's image names.
   */
  backingOnExit?: BlockNode | 'open';
  /** Active commit: the caller made a read-only target read-write before creating the job; reopen it read-only when the job fails. */
  restoreTargetReadOnly?: boolean;
  /** The job's id, for permission conflicts with its links ("mirror job 'id'"). */
  jobId?: string;
}

interface Op {
  offset: number;
  bytes: number;
  done: Promise<void>;
}

/** Makes the driver of a mirror (or active commit) job; hand it to {@link JobRegistry.create}. */
export function mirrorJob(options: MirrorOptions): JobDriver {
  const { graph, source, target } = options;
  const commit = options.commit ?? false;
  const sync: MirrorSync = commit ? 'full' : (options.sync ?? 'full');
  const unmap = options.unmap ?? true;
  const bufSize = options.bufSize ?? DEFAULT_MIRROR_BUF_SIZE;
  const granularity = options.granularity ?? defaultGranularity(target);
  checkGranularity(granularity);
  if (granularity > 64 << 20) throw new BlockError('EINVAL', "Parameter 'granularity' expects a value in range [512B, 64MB]");
  if (!Number.isSafeInteger(bufSize) || bufSize <= 0) throw new BlockError('EINVAL', "Parameter 'buf-size' expects a positive value", {}, { detail: `${bufSize}` });
  if (source === target) throw new BlockError('EINVAL', "Can't mirror node into itself");
  if (commit) checkInChain(source, target);
  else if (target.readOnly) {
    throw new BlockError('EPERM', `Target node '${target.nodeName}' is read-only`);
  }
  if (commit) {
    checkOp(source, 'commit-source');
    for (const n of chainNodes(source, target)) checkOp(n, 'commit-target');
  } else {
    checkOp(source, 'mirror-source');
    checkOp(target, 'mirror-target');
  }
  // The chain a commit copies out of must not change under it.
  const chain: BdrvChild[] = commit ? freezeChain(source, target) : [];
  // The job keeps both nodes open until it ends, whoever else lets go of them.
  source.ref();
  target.ref();

  let filter: BlockNode | undefined;
  // QEMU's mirror reads the source through its filter's link and holds the nodes by job links.
  const links = new JobLinks(graph, commit ? 'commit' : 'mirror', options.jobId);
  let blkTarget: BlockBackend | undefined;
  let bitmap: BdrvDirtyBitmap | undefined;
  let setupDone!: () => void;
  const graphReady = new Promise<void>((resolve) => (setupDone = resolve));
  let drainToken: DrainToken | undefined;
  let targetWasReadOnly = options.restoreTargetReadOnly ?? false;
  let ready = false;
  let completeRequested = false;
  let released = false;

  const dropBitmap = (): void => {
    if (!bitmap) return;
    const list = source.dirtyBitmaps;
    const i = list.indexOf(bitmap);
    if (i >= 0) list.splice(i, 1);
    bitmap.release();
    bitmap = undefined;
  };

  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    dropBitmap();
    if (drainToken) drainEnd(drainToken);
    drainToken = undefined;
    unfreezeChain(chain);
    await links.removeAll();
    await blkTarget?.close();
    await source.unref();
    await target.unref();
  };

  /**
   * Takes the filter out, leaving the guest on the source. The job's writer
   * on the target goes first: below the guest, the chain shares no writes.
   */
  async function unpivot(): Promise<void> {
    if (!filter) return;
    await blkTarget?.close();
    blkTarget = undefined;
    await links.removeAll();
    const f = filter;
    filter = undefined;
    await removeJobFilter(graph, f, source);
  }

  /** Marks what the sync mode copies before following the guest. */
  async function markInitial(ctl: JobControl, len: number): Promise<void> {
    if (sync === 'none') return;
    const zeroTarget = options.zeroTarget === true && sync === 'full' && !commit;
    if (zeroTarget) {
      const canUnmapZeros = target.discardUnmap && ((target.instance.supportedZeroFlags ?? 0) & ReqFlag.MAY_UNMAP) !== 0;
      if (!canUnmapZeros) {
        bitmap!.setDirty(0, len);
        return;
      }
      // Not counted as progress, as in QEMU: the copy that follows is the job's work.
      for (let offset = 0; offset < len; offset += MAX_IO_BYTES) {
        await ctl.pausePoint();
        if (ctl.isCancelled()) return;
        await blkTarget!.writeZeroes(offset, Math.min(MAX_IO_BYTES, len - offset), ReqFlag.MAY_UNMAP);
      }
    }
    const base = commit ? target : sync === 'top' ? cowChild(source) : undefined;
    for (let offset = 0; offset < len; ) {
      await ctl.pausePoint();
      if (ctl.isCancelled()) return;
      const r = await isAllocatedAbove(source, base, false, offset, len - offset);
      const n = r.pnum || len - offset;
      if (r.allocated) bitmap!.setDirty(offset, n);
      else if (sync === 'full' && !commit && !zeroTarget) {
        // Unallocated reads as zeros: copy it unless the target reads zeros there too.
        for (let p = offset; p < offset + n; ) {
          const st = await blkTarget!.blockStatus(p, offset + n - p, true);
          const m = st.pnum || offset + n - p;
          if (!(st.status & Status.ZERO)) bitmap!.setDirty(p, m);
          p += m;
        }
      }
      offset += n;
    }
  }

  // Reused between copies: a fresh zero-filled buffer per read cost more than the copy itself.
  const buffers = new CopyBuffers({ size: MAX_IO_BYTES });

  /** Copies [offset, offset + bytes) from source to target by what block status says it holds. */
  async function copyRange(ctl: JobControl, offset: number, bytes: number, statusBase: BlockNode | undefined): Promise<void> {
    for (let done = 0; done < bytes; ) {
      const pos = offset + done;
      let st;
      try {
        st = await blockStatusAbove(source, statusBase, true, pos, bytes - done);
      } catch (e) {
        throw new CopyError('read', pos, e);
      }
      const n = Math.min(st.pnum || bytes - done, bytes - done);
      try {
        if (st.status & Status.DATA) {
          const data = buffers.take(n);
          try {
            try {
              await readSource(pos, data);
            } catch (e) {
              throw new CopyError('read', pos, e);
            }
            await blkTarget!.write(pos, data);
          } finally {
            buffers.give(data);
          }
        } else if (st.status & Status.ZERO || (sync === 'full' && !commit)) {
          await blkTarget!.writeZeroes(pos, n, unmap ? ReqFlag.MAY_UNMAP : 0);
        } else if (sync === 'top' && !commit) {
          // Unallocated above the backing file: the target's own backing shows through.
          await blkTarget!.discard(pos, n);
        }
      } catch (e) {
        if (e instanceof CopyError) throw e;
        throw new CopyError('write', pos, e);
      }
      ctl.progressUpdate(n);
      done += n;
    }
  }

  /** Reads the source through the filter's link (QEMU's mirror reads mirror_top's backing child). */
  async function readSource(pos: number, data: Uint8Array): Promise<void> {
    const link = filter?.filtered;
    if (!link) throw new BlockError('EIO', `Mirror job '${options.jobId ?? ''}' has no source link to read node '${source.nodeName}' through`);
    await link.preadv(pos, data.length, data);
  }

  const driver: JobDriver = {
    type: commit ? 'commit' : 'mirror',
    links,
    graphReady,
    blockedNodes: commit ? [...chainNodes(source, target), target] : [source, target],

    async run(ctl: JobControl): Promise<void> {
      const len = source.length;
      try {
        if (commit && target.readOnly) {
          targetWasReadOnly = true;
          await graph.reopen([{ node: target, readOnly: false }]);
        }
        // QEMU's active commit is a mirror job: its filter is a mirror_top as well.
        filter = await insertJobFilter(graph, source, 'mirror_top', options.filterNodeName, { commit });
        filter.filtered!.frozen = true;
        // QEMU's job holds its filter ("main node"): it reads there, and the source keeps its size.
        links.add('main node', filter, Perm.CONSISTENT_READ, Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED | Perm.WRITE);
        blkTarget = await BlockBackend.attach(graph, target, {
          name: `${ctl.id}-target`,
          drainListener: ctl.drainListener,
          // QEMU's mirror target: it only writes, and lets nobody else read or write a copy in the making;
          // an active commit's base is in use below the guest, and is resized only when smaller.
          perm: Perm.WRITE | (commit && target.length < len ? Perm.RESIZE : 0),
          shared: Perm.WRITE_UNCHANGED | Perm.GRAPH_MOD | (commit ? Perm.CONSISTENT_READ | Perm.WRITE : 0),
        });
        // The permissions are the filter's and the target backend's; these links name the nodes the job uses.
        links.add('source', source, 0, Perm.WRITE_UNCHANGED | Perm.WRITE | Perm.CONSISTENT_READ);
        links.add('target', target, 0, PERM_ALL);
        if (commit) {
          // The images between the source and the base drop out of the chain on completion: nobody
          // else may read them consistently meanwhile (writes are shared: the base below is written).
          for (const n of chainNodes(source, target).slice(1)) links.add('intermediate node', n, 0, Perm.WRITE_UNCHANGED | Perm.WRITE);
        }
      } finally {
        setupDone();
      }
      if (commit) {
        if (target.length < len) await blkTarget.truncate(len);
      } else if (target.length !== len) {
        throw new BlockError('EINVAL', 'Source and target image have different sizes', {}, { detail: `${len} and ${target.length}` });
      }
      bitmap = new BdrvDirtyBitmap(source, '', granularity, source.totalBytes);
      bitmap.busy = true;
      source.dirtyBitmaps.push(bitmap);
      await markInitial(ctl, len);

      const statusBase = commit ? target : sync === 'top' ? cowChild(source) : undefined;
      const chunk = Math.max(granularity, Math.min(MAX_IO_BYTES, bufSize));
      const inFlight = new Set<Op>();
      let inFlightBytes = 0;
      let cursor = 0;
      let fatal: BlockError | undefined;

      const nextArea = (): [number, number] | undefined => {
        const size = bitmap!.size;
        return bitmap!.nextDirtyArea(cursor, size, chunk) ?? (cursor > 0 ? bitmap!.nextDirtyArea(0, size, chunk) : undefined);
      };
      const overlaps = (offset: number, bytes: number): Op | undefined => {
        for (const op of inFlight) if (op.offset < offset + bytes && offset < op.offset + op.bytes) return op;
        return undefined;
      };
      const issue = (offset: number, bytes: number): void => {
        bitmap!.resetDirty(offset, bytes);
        inFlightBytes += bytes;
        const op: Op = { offset, bytes, done: Promise.resolve() };
        op.done = (async () => {
          try {
            await copyRange(ctl, offset, bytes, statusBase);
          } catch (e) {
            const failure = e instanceof CopyError ? e : new CopyError('write', offset, e);
            const error = toBlockError(failure.original);
            bitmap?.setDirty(offset, bytes);
            const action = ctl.errorAction(failure.op === 'read' ? (options.onSourceError ?? 'report') : (options.onTargetError ?? 'report'), failure.op === 'write' ? 'write' : 'read', error);
            if (action === 'report') fatal ??= error;
          } finally {
            inFlightBytes -= bytes;
            inFlight.delete(op);
          }
        })();
        inFlight.add(op);
      };

      for (;;) {
        await ctl.pausePoint();
        if (fatal || ctl.isCancelled()) break;
        let area: [number, number] | undefined;
        // The total is known before the copies start (QEMU sets it at the top of each pass), not after a rate-limit sleep.
        ctl.progressSetRemaining(inFlightBytes + bitmap.count);
        while (inFlight.size < MAX_IN_FLIGHT && inFlightBytes < bufSize && (area = nextArea())) {
          const clash = overlaps(area[0], area[1]);
          if (clash) {
            await clash.done;
            continue;
          }
          cursor = area[0] + area[1];
          issue(area[0], area[1]);
          await ctl.ratelimit(area[1]);
          if (ctl.isCancelled()) break;
        }
        ctl.progressSetRemaining(inFlightBytes + bitmap.count);
        if (inFlight.size > 0) {
          await Promise.race([...inFlight].map((op) => op.done));
          continue;
        }
        if (fatal || ctl.isCancelled()) break;
        if (bitmap.count === 0) {
          if (!ready) {
            await blkTarget.flush();
            ready = true;
            ctl.transitionToReady();
          }
          if (completeRequested || ctl.cancelRequested()) {
            // Last pass with the guest held: nothing may dirty the source between this check and the pivot.
            const token = await drainBegin(source);
            if (bitmap.count === 0) {
              try {
                await blkTarget.flush();
              } catch (e) {
                drainEnd(token);
                throw e;
              }
              drainToken = token;
              break;
            }
            drainEnd(token);
            continue;
          }
          await ctl.sleep(JOB_SLICE_MS);
        }
      }
      await Promise.all([...inFlight].map((op) => op.done));
      if (fatal) throw fatal;
    },

    async prepare(): Promise<void> {
      const backing = options.backingOnExit;
      if (backing === 'open') {
        if (!cowChild(target)) await openBacking(graph, target, undefined, 0, []);
      } else if (backing && cowChild(target) !== backing) {
        backing.ref();
        try {
          await graph.attachChild(target, backing, 'backing', ROLE_BACKING);
        } catch (e) {
          await backing.unref();
          throw e;
        }
      }
      if (!completeRequested || !filter) return;
      // Pivot: the guest continues on the target (for active commit: on the base).
      // The job's own users let go of their permissions first, or the guest could not take them.
      dropBitmap();
      if (blkTarget) graph.setLinkPerms(blkTarget.root, 0, PERM_ALL);
      await links.removeAll();
      await removeJobFilter(graph, filter, target);
      filter = undefined;
      unfreezeChain(chain);
    },

    async abort(): Promise<void> {
      await unpivot();
      if (targetWasReadOnly) await graph.reopen([{ node: target, readOnly: true }]).catch(() => undefined);
    },

    async clean(): Promise<void> {
      // A soft cancel or a job that ended without complete: the guest goes back onto the source.
      await unpivot();
      await release();
    },

    complete(): void {
      if (!ready) throw new BlockError('EPERM', "The active block job cannot be completed: it is not ready");
      completeRequested = true;
    },

    cancel(force: boolean): boolean {
      return force || !ready;
    },
  };
  return driver;
}

/**
 * The commit job (QEMU's block-commit): copies the data of `top` and of the
 * images between it and `base` down into `base`, then drops them from the
 * chain: the image above `top` (its overlay) gets `base` as its backing file.
 * When `top` is the guest's active layer there is no overlay to relink;
 * that is active commit, which runs as a mirror into the base
 * ({@link mirrorJob} with `commit: true`) and pivots the guest on complete.
 */
import type { BlockGraph } from '../core/graph.js';
import type { BlockNode } from '../core/node.js';
import type { BdrvChild } from '../core/child.js';
import { BlockBackend } from '../core/backend.js';
import { cowChild, isAllocatedAbove } from '../core/block-status.js';
import { drained } from '../core/drain.js';
import { BlockError, toBlockError } from '../core/errors.js';
import { PERM_ALL, Perm } from '../core/permissions.js';
import { chainNodes, checkInChain, freezeChain, unfreezeChain } from './chain.js';
import { checkOp } from '../core/op-blockers.js';
import { insertJobFilter, removeJobFilter } from './job-filter.js';
import type { JobControl, JobDriver, OnErrorPolicy } from './job-types.js';
import { mirrorJob } from './mirror.js';
import { JobLinks } from './job-links.js';

/** QEMU's commit buffer. */
export const COMMIT_BUFFER_SIZE = 512 * 1024;

/** What to commit. */
export interface CommitOptions {
  graph: BlockGraph;
  /** The image whose data goes down (with the images below it, down to base). */
  top: BlockNode;
  /** Where the data goes; default: the bottom of the chain. */
  base?: BlockNode;
  /** The backing file name written into the overlay (QEMU's backing-file); default: base's filename. */
  backingFile?: string;
  onError?: OnErrorPolicy;
  /** node-name of the filter the job inserts. */
  filterNodeName?: string;
  /** The chain's active layer the command named (QEMU checks it as the commit source); default: top. */
  device?: BlockNode;
  /**
   * The caller made a read-only `base` read-write before creating the job
   * (QEMU's commit_start and commit_active_start): reopen it read-only when
   * the job ends.
   */
  restoreBaseReadOnly?: boolean;
  /** The job's id, for permission conflicts with its links ("commit job 'id'"). */
  jobId?: string;
}

/** The node whose backing link points at `node`, if any. */
function overlayOf(node: BlockNode): { overlay: BlockNode; link: BdrvChild } | undefined {
  for (const link of node.parents) {
    if (link.parent.kind !== 'root' && link.name === 'backing') return { overlay: link.parent as BlockNode, link };
  }
  return undefined;
}

/** The top of the chain `node` is in (the node the guest uses, QEMU's device of the commit). */
function activeLayerAbove(node: BlockNode): BlockNode {
  let n = node;
  for (let above = overlayOf(n), i = 0; above && i < 4096; above = overlayOf(n), i++) n = above.overlay;
  return n;
}

/** The bottom image of `top`'s chain. */
function bottomOf(top: BlockNode): BlockNode | undefined {
  let n = cowChild(top);
  while (n && cowChild(n)) n = cowChild(n);
  return n;
}

/**
 * Makes the driver of a commit job. If `top` has no overlay (it is the
 * active layer) the job is an active commit: it goes `ready` and needs
 * `complete` to pivot the guest onto the base.
 */
export function commitJob(options: CommitOptions): JobDriver {
  const { graph, top } = options;
  const base = options.base ?? bottomOf(top);
  if (!base) throw new BlockError('EINVAL', `Node '${top.nodeName}' has no backing file: nothing to commit`);
  // As QEMU's qmp_block_commit: the device may be a commit source, every image from top down to base a target.
  checkOp(options.device ?? activeLayerAbove(top), 'commit-source');
  for (const n of [...chainNodes(top, base), base]) checkOp(n, 'commit-target');
  if (base === top) throw new BlockError('EINVAL', 'cannot commit an image into itself');
  checkInChain(top, base);
  const above = overlayOf(top);
  if (above) checkOp(above.overlay, 'commit-target');
  if (!above) {
    return mirrorJob({
      graph,
      source: top,
      target: base,
      commit: true,
      onSourceError: options.onError,
      onTargetError: options.onError,
      filterNodeName: options.filterNodeName,
      restoreTargetReadOnly: options.restoreBaseReadOnly ?? false,
      ...(options.jobId !== undefined ? { jobId: options.jobId } : {}),
    });
  }
  const { overlay } = above;
  const onError = options.onError ?? 'report';

  const chain = freezeChain(top, base);

  let filter: BlockNode | undefined;
  // QEMU's commit holds the device, the images that drop out and the base by job links.
  const links = new JobLinks(graph, 'commit', options.jobId);
  const device = options.device ?? activeLayerAbove(top);
  let setupDone!: () => void;
  const graphReady = new Promise<void>((resolve) => (setupDone = resolve));
  let blkTop: BlockBackend | undefined;
  let blkBase: BlockBackend | undefined;
  const reopened: BlockNode[] = options.restoreBaseReadOnly ? [base] : [];
  let released = false;

  /** Takes the filter out, top staying where it was; the writer on base goes first (the chain shares no writes). */
  const unlink = async (): Promise<void> => {
    if (!filter) return;
    // Undone (QEMU's commit_abort): the links go first, the intermediate nodes' would refuse
    // the overlay's reads moving back onto them. After a commit they stay until the dismiss.
    await links.removeAll();
    await blkBase?.close();
    blkBase = undefined;
    const f = filter;
    filter = undefined;
    await removeJobFilter(graph, f, top);
  };

  const restoreReadOnly = async (): Promise<void> => {
    await blkBase?.close();
    blkBase = undefined;
    for (const node of reopened.splice(0)) await graph.reopen([{ node, readOnly: true }]).catch(() => undefined);
  };

  return {
    type: 'commit',
    blockedNodes: [overlay, ...chainNodes(top, base), base],
    links,
    graphReady,

    async run(ctl: JobControl): Promise<void> {
      try {
        for (const node of [base, overlay]) {
          if (node.readOnly) {
            await graph.reopen([{ node, readOnly: false }]);
            reopened.push(node);
          }
        }
        links.add('main node', device, 0, PERM_ALL);
        filter = await insertJobFilter(graph, top, 'commit_top', options.filterNodeName);
        filter.filtered!.frozen = true;
        // The images that drop out of the chain: nobody else may read them consistently meanwhile
        // (writes are shared: the base below them is written).
        for (const n of chainNodes(top, base)) links.add('intermediate node', n, 0, Perm.WRITE_UNCHANGED | Perm.WRITE);
        links.add('base', base, 0, PERM_ALL);
        blkBase = await BlockBackend.attach(graph, base, {
          name: `${ctl.id}-base`,
          drainListener: ctl.drainListener,
          perm: Perm.CONSISTENT_READ | Perm.WRITE | (base.length < top.length ? Perm.RESIZE : 0),
          shared: Perm.CONSISTENT_READ | Perm.WRITE_UNCHANGED | Perm.GRAPH_MOD,
        });
        // Reads top without taking anything there: the job's links and the filter hold the chain.
        blkTop = await BlockBackend.attach(graph, top, { name: `${ctl.id}-top`, perm: 0, shared: PERM_ALL, drainListener: ctl.drainListener });
      } finally {
        setupDone();
      }
      const len = top.length;
      if (base.length < len) await blkBase.truncate(len);
      ctl.progressSetRemaining(len);
      for (let offset = 0; offset < len; ) {
        await ctl.pausePoint();
        if (ctl.isCancelled()) return;
        let n = Math.min(COMMIT_BUFFER_SIZE, len - offset);
        let copy = false;
        let operation: 'read' | 'write' = 'read';
        try {
          const r = await isAllocatedAbove(top, base, false, offset, n);
          n = r.pnum || n;
          copy = r.allocated;
          if (copy) {
            const data = await blkTop.read(offset, n);
            operation = 'write';
            await blkBase.write(offset, data);
          }
        } catch (e) {
          const action = ctl.errorAction(onError, operation, toBlockError(e));
          if (action === 'report') throw e;
          // stop and ignore both retry the same range, as QEMU's commit does.
          continue;
        }
        ctl.progressUpdate(n);
        offset += n;
        if (copy) await ctl.ratelimit(n);
      }
      await blkBase.flush();
    },

    async prepare(): Promise<void> {
      if (!filter) return;
      const f = filter;
      if (!overlay.instance.changeBackingFile) {
        throw new BlockError('ENOTSUP', `Driver '${overlay.driver.name}' cannot change the backing file of '${overlay.nodeName}'`);
      }
      const change = overlay.instance.changeBackingFile.bind(overlay.instance);
      // The job's writer on base goes first: the overlay's backing link does not share writes.
      await blkBase?.close();
      blkBase = undefined;
      await drained(overlay, async () => {
        await change(options.backingFile ?? base.filename, base.driver.name);
        unfreezeChain(chain);
        // The overlay's backing link (now on the filter) moves to base; top and the images below it drop out.
        await removeJobFilter(graph, f, base);
      });
      filter = undefined;
    },

    async abort(): Promise<void> {
      await unlink();
    },

    async clean(): Promise<void> {
      if (released) return;
      released = true;
      await unlink();
      unfreezeChain(chain);
      await blkTop?.close();
      await restoreReadOnly();
    },

    // The job's links (main node, intermediate nodes, base) stay until it is dismissed, as QEMU's.
    async free(): Promise<void> {
      await links.removeAll();
    },
  };
}

/**
 * The commands that start block jobs (QEMU 7.2's blockdev.c): block-stream,
 * block-commit, blockdev-mirror and blockdev-backup. Each resolves its
 * nodes with QEMU's checks and messages, then hands the job driver of
 * src/jobs/ to the registry; the job's events reach the QMP event queue.
 */
import { joinRelative, nodeDirname } from '../core/backing-open.js';
import { cowChild } from '../core/block-status.js';
import type { BlockNode } from '../core/node.js';
import { checkOp } from '../core/op-blockers.js';
import { chainNodes } from '../jobs/chain.js';
import { isWellFormedId } from '../jobs/job-registry.js';
import { isEarlyJobFailure, type JobDriver, type OnErrorPolicy } from '../jobs/job-types.js';
import { streamJob } from '../jobs/stream.js';
import { commitJob } from '../jobs/commit.js';
import { mirrorJob } from '../jobs/mirror.js';
import { backupJob, type BackupSync, type BitmapMode } from '../jobs/backup.js';
import type { BlockQmp } from './block-qmp.js';
import type { QmpCommand } from './dispatcher.js';
import { QmpError, genericError } from './errors.js';
import { m, struct, type QapiMember } from './schema.js';
import { runTransaction, type TxnAction, type TxnContext } from './transaction.js';
import type { Job, JobTxn } from '../jobs/job.js';

export const onError = { enum: ['report', 'ignore', 'enospc', 'stop', 'auto'] } as const;
export const syncMode = { enum: ['top', 'full', 'none', 'incremental', 'bitmap'] } as const;
const jobFlags: QapiMember[] = [m('*auto-finalize', 'bool'), m('*auto-dismiss', 'bool')];

/** Does `node` stand for the file name `name` given by the user (as named in its overlay, or its path)? */
function namesImage(node: BlockNode, overlay: BlockNode, name: string): boolean {
  if (node.filename === name) return true;
  if (overlay.instance.backingFile?.()?.filename === name) return true;
  try {
    return !name.startsWith('/') && joinRelative(nodeDirname(overlay), name) === node.filename;
  } catch {
    return false;
  }
}

/** QEMU's bdrv_find_backing_image: the image below `from` named `name`. */
function findBackingImage(from: BlockNode, name: string): BlockNode | undefined {
  for (let over = from, n = cowChild(from); n; over = n, n = cowChild(n)) {
    if (namesImage(n, over, name)) return n;
  }
  return undefined;
}

/** Is `node` in the backing chain of `top` (`top` itself included)? */
function chainContains(top: BlockNode, node: BlockNode): boolean {
  for (let n: BlockNode | undefined = top; n; n = cowChild(n)) if (n === node) return true;
  return false;
}

/** The job id QEMU takes: the given one, else the device name ('' here: no named devices). */
function checkJobId(q: BlockQmp, id: string | undefined): string {
  const jobId = id ?? '';
  if (!isWellFormedId(jobId)) throw genericError(`Invalid job ID '${jobId}'`);
  if (q.jobs.get(jobId)) throw genericError(`Job ID '${jobId}' already in use`);
  return jobId;
}

/**
 * Makes the job and starts it (job-id, speed and the auto flags from `args`);
 * resolves once the job's filter and links are in the graph (or the job has ended).
 */
async function startJob(q: BlockQmp, id: string, driver: JobDriver, args: Record<string, unknown>): Promise<void> {
  const job = makeJob(q, id, driver, args);
  job.start();
  if (driver.graphReady) await Promise.race([driver.graphReady, job.waitFor((s) => s === 'concluded' || s === 'null')]);
}

/** Makes the job, not started, with job-id, speed and the auto flags from `args`. */
function makeJob(q: BlockQmp, id: string, driver: JobDriver, args: Record<string, unknown>, txn?: JobTxn): Job {
  return q.jobs.create(driver, {
    id,
    ...(txn ? { txn } : {}),
    ...(args.speed !== undefined ? { speed: args.speed as number } : {}),
    ...(args['auto-finalize'] !== undefined ? { autoFinalize: args['auto-finalize'] as boolean } : {}),
    ...(args['auto-dismiss'] !== undefined ? { autoDismiss: args['auto-dismiss'] as boolean } : {}),
  });
}

/** A negative speed, refused before any job is made (QEMU's job_create). */
function checkSpeed(args: Record<string, unknown>): void {
  if (typeof args.speed === 'number' && args.speed < 0) throw genericError("Parameter 'speed' expects a non-negative value");
}

/** BlockdevBackup (the arguments of blockdev-backup and of its transaction action). */
export const blockdevBackupType = struct('BlockdevBackup', [
  m('*job-id', 'str'), m('device', 'str'), m('sync', syncMode), m('*speed', 'int'), m('*bitmap', 'str'),
  m('*bitmap-mode', { enum: ['on-success', 'never', 'always'] }), m('*compress', 'bool'), m('*on-source-error', onError),
  m('*on-target-error', onError), ...jobFlags, m('*filter-node-name', 'str'),
  m('*x-perf', struct('BackupPerf', [m('*use-copy-range', 'bool'), m('*max-workers', 'int'), m('*max-chunk', 'int')])),
  m('target', 'str'),
]);

/**
 * The backup action (QEMU's blockdev_backup_*): prepare makes the job
 * (in the transaction's job group when grouped) with the source drained,
 * commit starts it, abort cancels it, clean ends the drain (the job's
 * events show it paused, then running).
 */
export function backupAction(q: BlockQmp, args: Record<string, unknown>, ctx: TxnContext): TxnAction {
  let job: Job | undefined;
  return {
    async prepare() {
      const source = q.lookupNode(args.device as string, args.device as string);
      const target = q.lookupNode(args.target as string, args.target as string);
      let sync = args.sync as BackupSync | 'incremental';
      let bitmapMode = args['bitmap-mode'] as BitmapMode | undefined;
      if (sync === 'incremental') {
        // QEMU's incremental is bitmap sync that keeps the bitmap only on success.
        if (bitmapMode !== undefined && bitmapMode !== 'on-success') {
          throw genericError(`Bitmap sync mode must be 'on-success' when using sync mode 'incremental'`);
        }
        sync = 'bitmap';
        bitmapMode = 'on-success';
      }
      // backup_job_create refuses this before the job (and its id) is made.
      if (source === target) throw genericError('Source and target cannot be the same');
      checkSpeed(args);
      const id = checkJobId(q, args['job-id'] as string | undefined);
      const driver = await backupJob({
        graph: q.graph,
        source,
        target,
        sync,
        jobId: id,
        ...(args.bitmap !== undefined ? { bitmap: args.bitmap as string } : {}),
        ...(bitmapMode !== undefined ? { bitmapMode } : {}),
        ...(args.compress !== undefined ? { compress: args.compress as boolean } : {}),
        ...(args['on-source-error'] !== undefined ? { onSourceError: args['on-source-error'] as OnErrorPolicy } : {}),
        ...(args['on-target-error'] !== undefined ? { onTargetError: args['on-target-error'] as OnErrorPolicy } : {}),
        ...(args['filter-node-name'] !== undefined ? { filterNodeName: args['filter-node-name'] as string } : {}),
      });
      job = makeJob(q, id, driver, args, ctx.jobTxn);
      job.pauseInternal();
    },
    commit() {
      job?.start();
    },
    async abort() {
      if (!job) return;
      job.cancel(true);
      await job.settled().catch(() => undefined);
    },
    clean() {
      if (job && job.status !== 'null' && job.status !== 'concluded') job.resumeInternal();
    },
  };
}

/**
 * Checks the mirror arguments of blockdev-mirror / drive-mirror (QEMU's
 * blockdev_mirror_common) and starts the job from `source` to `target`.
 */
export function startMirror(
  q: BlockQmp,
  args: Record<string, unknown>,
  source: BlockNode,
  target: BlockNode,
  zeroTarget: boolean,
  backingOnExit?: BlockNode | 'open',
): Promise<void> {
  const sync = args.sync as string;
  const granularity = args.granularity as number | undefined;
  if (granularity !== undefined && granularity !== 0) {
    if (granularity < 512 || granularity > 64 * 1048576) throw genericError("Parameter 'granularity' expects a value in range [512B, 64MB]");
    if (granularity & (granularity - 1)) throw genericError("Parameter 'granularity' expects a power of 2");
  }
  if (sync === 'incremental' || sync === 'bitmap') throw genericError(`Sync mode '${sync}' not supported`);
  if (args.replaces !== undefined) throw genericError("DiskWorker's blockdev-mirror does not take 'replaces'");
  if (args['copy-mode'] === 'write-blocking') throw genericError("DiskWorker's blockdev-mirror has no copy mode 'write-blocking'");
  // mirror_start_job refuses this before the job (and its id) is made.
  if (source === target) throw genericError("Can't mirror node into itself");
  checkSpeed(args);
  const id = checkJobId(q, args['job-id'] as string | undefined);
  const driver = mirrorJob({
    graph: q.graph,
    source,
    target,
    sync: sync as 'full' | 'top' | 'none',
    zeroTarget,
    jobId: id,
    ...(backingOnExit ? { backingOnExit } : {}),
    ...(granularity ? { granularity } : {}),
    ...(args['buf-size'] !== undefined ? { bufSize: args['buf-size'] as number } : {}),
    ...(args['on-source-error'] !== undefined ? { onSourceError: args['on-source-error'] as OnErrorPolicy } : {}),
    ...(args['on-target-error'] !== undefined ? { onTargetError: args['on-target-error'] as OnErrorPolicy } : {}),
    ...(args.unmap !== undefined ? { unmap: args.unmap as boolean } : {}),
    ...(args['filter-node-name'] !== undefined ? { filterNodeName: args['filter-node-name'] as string } : {}),
  });
  return startJob(q, id, driver, args);
}

/**
 * Makes a job that writes into `node` (QEMU's stream_start, commit_start):
 * a read-only node is reopened read-write first, the job's checks are made
 * on the read-write node (the op blockers come first), and a refusal reopens
 * it read-only again.
 */
async function readWriteFor(q: BlockQmp, node: BlockNode, make: () => JobDriver): Promise<JobDriver> {
  if (!node.readOnly) return make();
  await q.graph.reopen([{ node, readOnly: false }]);
  try {
    return make();
  } catch (e) {
    await q.graph.reopen([{ node, readOnly: true }]).catch(() => undefined);
    throw e;
  }
}

/** The job-starting commands of `q`. */
export function jobStartCommands(q: BlockQmp): QmpCommand[] {
  return [
    {
      name: 'block-stream',
      args: struct('block-stream', [
        m('*job-id', 'str'), m('device', 'str'), m('*base', 'str'), m('*base-node', 'str'), m('*backing-file', 'str'), m('*bottom', 'str'),
        m('*speed', 'int'), m('*on-error', onError), m('*filter-node-name', 'str'), ...jobFlags,
      ]),
      run: async (args) => {
        const device = args.device as string;
        const base = args.base as string | undefined;
        const baseNode = args['base-node'] as string | undefined;
        const bottom = args.bottom as string | undefined;
        if (base !== undefined && baseNode !== undefined) throw genericError("'base' and 'base-node' cannot be specified at the same time");
        if (base !== undefined && bottom !== undefined) throw genericError("'base' and 'bottom' cannot be specified at the same time");
        if (bottom !== undefined && baseNode !== undefined) throw genericError("'bottom' and 'base-node' cannot be specified at the same time");
        const top = q.lookupNode(device, device);
        let baseBs: BlockNode | undefined;
        if (base !== undefined) {
          baseBs = findBackingImage(top, base);
          if (!baseBs) throw genericError(`Can't find '${base}' in the backing chain`);
        }
        if (baseNode !== undefined) {
          baseBs = q.lookupNode(undefined, baseNode);
          if (baseBs === top || !chainContains(top, baseBs)) throw genericError(`Node '${baseNode}' is not a backing image of '${device}'`);
        }
        if (bottom !== undefined) {
          const bottomBs = q.lookupNode(undefined, bottom);
          if (bottomBs.driver.kind === 'filter') throw genericError(`Node '${bottom}' is a filter, use a non-filter node as 'bottom'`);
          if (!chainContains(top, bottomBs)) throw genericError(`Node '${bottom}' is not in a chain starting from '${device}'`);
          baseBs = cowChild(bottomBs);
        }
        if (!baseBs && args['backing-file'] !== undefined) throw genericError('backing file specified, but streaming the entire chain');
        checkSpeed(args);
        const id = checkJobId(q, args['job-id'] as string | undefined);
        const wasReadOnly = top.readOnly;
        const make = () =>
          streamJob({
            graph: q.graph,
            top,
            ...(baseBs ? { base: baseBs } : {}),
            ...(args['backing-file'] !== undefined ? { backingFile: args['backing-file'] as string } : {}),
            ...(args['on-error'] !== undefined ? { onError: args['on-error'] as OnErrorPolicy } : {}),
            restoreReadOnly: wasReadOnly,
            jobId: id,
            ...(args['filter-node-name'] !== undefined ? { filterNodeName: args['filter-node-name'] as string } : {}),
          });
        let driver: JobDriver;
        try {
          driver = await readWriteFor(q, top, make);
        } catch (e) {
          if (isEarlyJobFailure(e)) {
            for (const status of ['created', 'null']) q.events.emit('JOB_STATUS_CHANGE', { id, status });
          }
          throw e;
        }
        await startJob(q, id, driver, args);
      },
    },
    {
      name: 'block-commit',
      args: struct('block-commit', [
        m('*job-id', 'str'), m('device', 'str'), m('*base-node', 'str'), m('*base', 'str'), m('*top-node', 'str'), m('*top', 'str'),
        m('*backing-file', 'str'), m('*speed', 'int'), m('*on-error', onError), m('*filter-node-name', 'str'), ...jobFlags,
      ]),
      run: async (args) => {
        const device = args.device as string;
        let bs: BlockNode;
        try {
          bs = q.rootNode(device);
        } catch (e) {
          if (!q.graph.hasNode(device)) throw new QmpError('DeviceNotFound', `Device '${device}' not found`);
          throw e;
        }
        checkOp(bs, 'commit-source');
        const topNode = args['top-node'] as string | undefined;
        const top = args.top as string | undefined;
        let topBs: BlockNode | undefined = bs;
        if (topNode !== undefined && top !== undefined) throw genericError("'top-node' and 'top' are mutually exclusive");
        if (topNode !== undefined) {
          topBs = q.lookupNode(undefined, topNode);
          if (!chainContains(bs, topBs)) throw genericError(`'${topNode}' is not in this backing file chain`);
        } else if (top !== undefined && bs.filename !== top) {
          topBs = findBackingImage(bs, top);
        }
        if (!topBs) throw genericError(`Top image file ${top ?? 'NULL'} not found`);
        const baseNode = args['base-node'] as string | undefined;
        const base = args.base as string | undefined;
        let baseBs: BlockNode | undefined;
        if (baseNode !== undefined && base !== undefined) throw genericError("'base-node' and 'base' are mutually exclusive");
        if (baseNode !== undefined) {
          baseBs = q.lookupNode(undefined, baseNode);
          if (!chainContains(topBs, baseBs)) throw genericError(`'${baseNode}' is not in this backing file chain`);
        } else if (base !== undefined) {
          baseBs = findBackingImage(topBs, base);
          if (!baseBs) throw genericError(`Can't find '${base}' in the backing chain`);
        } else {
          // QEMU's bdrv_find_base: the bottom of top's chain, top itself when it has no backing file.
          baseBs = topBs;
          for (let n = cowChild(topBs); n; n = cowChild(n)) baseBs = n;
        }
        for (const n of [...chainNodes(topBs, baseBs), baseBs]) checkOp(n, 'commit-target');
        if (topBs === baseBs) throw genericError('cannot commit an image into itself');
        if (args['backing-file'] !== undefined && topBs === bs) throw genericError("'backing-file' specified, but 'top' is the active layer");
        checkSpeed(args);
        const id = checkJobId(q, args['job-id'] as string | undefined);
        const baseWasReadOnly = baseBs.readOnly;
        const make = () =>
          commitJob({
            graph: q.graph,
            top: topBs,
            base: baseBs,
            device: bs,
            jobId: id,
            ...(args['backing-file'] !== undefined ? { backingFile: args['backing-file'] as string } : {}),
            ...(args['on-error'] !== undefined ? { onError: args['on-error'] as OnErrorPolicy } : {}),
            ...(args['filter-node-name'] !== undefined ? { filterNodeName: args['filter-node-name'] as string } : {}),
            restoreBaseReadOnly: baseWasReadOnly,
          });
        // As QEMU, a read-only base is made read-write by the command, before the job exists:
        // a failing reopen is the command's error, and the node shows read-write at once.
        await startJob(q, id, await readWriteFor(q, baseBs, make), args);
      },
    },
    {
      name: 'blockdev-mirror',
      args: struct('blockdev-mirror', [
        m('*job-id', 'str'), m('device', 'str'), m('target', 'str'), m('*replaces', 'str'), m('sync', syncMode), m('*speed', 'int'),
        m('*granularity', 'uint32'), m('*buf-size', 'int'), m('*on-source-error', onError), m('*on-target-error', onError),
        m('*filter-node-name', 'str'), m('*copy-mode', { enum: ['background', 'write-blocking'] }), ...jobFlags,
      ]),
      run: async (args) => {
        const source = q.rootNode(args.device as string);
        const target = q.lookupNode(args.target as string, args.target as string);
        // blockdev-mirror's zero_target: a full sync owes nothing to the target's old contents.
        await startMirror(q, args, source, target, args.sync === 'full');
      },
    },
    {
      name: 'blockdev-backup',
      args: { ...blockdevBackupType, struct: 'blockdev-backup' },
      // QEMU runs it as a one-action transaction.
      run: (args) => runTransaction([{ kind: 'blockdev-backup', make: (ctx) => backupAction(q, args, ctx) }], 'individual', q.graph),
    },
  ];
}

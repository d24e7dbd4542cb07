/**
 * The block jobs of one worker: one {@link JobRegistry}, jobs started on the
 * disks the worker has open (stream, commit, mirror, backup from src/jobs/),
 * their verbs and queries, and their events forwarded to the page's
 * listeners (Comlink callback proxies) with a progress event at most every
 * {@link PROGRESS_MS} while the work moves.
 */
import type { BlockGraph } from '../src/core/graph.js';
import type { BlockNode } from '../src/core/node.js';
import { BlockError } from '../src/core/errors.js';
import { cowChild } from '../src/core/block-status.js';
import { JobRegistry, isWellFormedId } from '../src/jobs/job-registry.js';
import type { Job } from '../src/jobs/job.js';
import type { BlockJobInfo, JobDriver, JobEvent, JobInfo } from '../src/jobs/job-types.js';
import { streamJob } from '../src/jobs/stream.js';
import { commitJob } from '../src/jobs/commit.js';
import { mirrorJob } from '../src/jobs/mirror.js';
import { backupJob } from '../src/jobs/backup.js';
import type { CreateOptions } from '../src/client/protocol.js';
import type { JobStartRequest, JobTarget, JobVerbRequest, JobWireEvent } from '../src/client/jobs-protocol.js';
import { serializeBlockError } from '../src/client/transfer.js';
import type { DiskService } from './disk-service.js';
import { canonicalPath, imageNodeOf } from './paths.js';

/** Least time between two progress events of one job. */
export const PROGRESS_MS = 200;

/** What the job service needs from the worker's service. */
export interface JobServiceHost {
  graph: BlockGraph;
  /** The open, writable disk known by this path (the path it was opened with). */
  findDisk(device: string): DiskService | undefined;
  /** Is an image open for writing in this worker (a job target must not be)? */
  isOpen(path: string): boolean;
  create(o: CreateOptions): Promise<void>;
  /** Runs graph-changing work one at a time with the worker's other opens. */
  serial<T>(fn: () => Promise<T>): Promise<T>;
  /** The disk now runs on another image (a mirror or active commit pivoted it). */
  moved(disk: DiskService, image: string): void;
}

type Listener = (e: JobWireEvent) => void;

/** The jobs of one worker. */
export class JobService {
  readonly registry = new JobRegistry();
  private readonly listeners = new Set<Listener>();
  private readonly devices = new Map<Job, DiskService>();
  private readonly lastProgress = new Map<Job, string>();
  private ticker: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly host: JobServiceHost) {
    this.registry.on((e) => this.forward(e));
  }

  /** Adds a listener of every job's events (a Comlink proxy from the page). */
  subscribe(listener: Listener): void {
    this.listeners.add(listener);
  }

  /** Starts a job on an open disk; returns its query-jobs entry. */
  async start(req: JobStartRequest): Promise<JobInfo> {
    const id = req.options.id;
    if (!isWellFormedId(id)) throw new BlockError('EINVAL', `Invalid job ID '${id}'`);
    if (this.registry.get(id)) throw new BlockError('EEXIST', `Job ID '${id}' already in use`);
    const disk = this.host.findDisk(req.device);
    if (!disk) throw new BlockError('ENOENT', `Cannot find device='${req.device}': no disk of that path is open for writing in this worker`);
    // Under the filter of a job already running on the disk.
    const guest = imageNodeOf(disk.backend.node);
    let driver: JobDriver;
    switch (req.kind) {
      case 'stream': {
        const o = req.options;
        const base = o.base !== undefined ? findInChain(guest, o.base, false) : undefined;
        driver = streamJob({ graph: this.host.graph, top: guest, jobId: id, ...(base ? { base } : {}) });
        break;
      }
      case 'commit': {
        const o = req.options;
        const top = o.top !== undefined ? findInChain(guest, o.top, true) : guest;
        const base = o.base !== undefined ? findInChain(top, o.base, false) : undefined;
        driver = commitJob({ graph: this.host.graph, top, jobId: id, ...(base ? { base } : {}) });
        break;
      }
      case 'mirror': {
        const o = req.options;
        const target = await this.openTarget(o.target, guest.length, o.sync !== 'top');
        try {
          driver = mirrorJob({
            graph: this.host.graph,
            source: guest,
            target,
            jobId: id,
            sync: o.sync ?? 'full',
            ...(o.granularity !== undefined ? { granularity: o.granularity } : {}),
            ...(o.bufSize !== undefined ? { bufSize: o.bufSize } : {}),
          });
        } finally {
          await target.unref();
        }
        break;
      }
      case 'backup': {
        const o = req.options;
        const target = await this.openTarget(o.target, guest.length, true);
        try {
          driver = await backupJob({
            graph: this.host.graph,
            source: guest,
            target,
            jobId: id,
            sync: o.sync ?? 'full',
            ...(o.bitmap !== undefined ? { bitmap: o.bitmap } : {}),
            ...(o.bitmapMode !== undefined ? { bitmapMode: o.bitmapMode } : {}),
            ...(o.compress !== undefined ? { compress: o.compress } : {}),
          });
        } finally {
          await target.unref();
        }
        break;
      }
      default:
        throw new BlockError('EINVAL', `Unknown job kind '${(req as { kind: string }).kind}'`);
    }
    const o = req.options;
    const job = this.registry.create(driver, {
      id,
      ...(o.speed !== undefined ? { speed: o.speed } : {}),
      ...(o.autoFinalize !== undefined ? { autoFinalize: o.autoFinalize } : {}),
      ...(o.autoDismiss !== undefined ? { autoDismiss: o.autoDismiss } : {}),
    });
    this.devices.set(job, disk);
    job.start();
    this.tick();
    return job.info();
  }

  /** Opens (creating it first when asked) a job's target image, read-write. */
  private async openTarget(t: JobTarget, size: number, noBacking: boolean): Promise<BlockNode> {
    if (this.host.isOpen(t.path)) throw new BlockError('EBUSY', `Cannot use '${t.path}' as a job target: the image is open in this worker`);
    if (t.create) {
      const format = t.format ?? 'qcow2';
      const options = typeof t.create === 'object' ? t.create.options : undefined;
      await this.host.create({ path: t.path, format, size, ...(options ? { options } : {}) });
    }
    return this.host.serial(() => this.host.graph.open(t.path, { ...(t.format ? { format: t.format } : {}), ...(noBacking || t.create ? { noBacking: true } : {}) }));
  }

  /** Gives `verb` to job `id` (QEMU's EPERM message when its state refuses it). */
  async verb(id: string, verb: JobVerbRequest, arg?: number | boolean): Promise<void> {
    const job = this.registry.find(id);
    switch (verb) {
      case 'pause':
        return job.pause();
      case 'resume':
        return job.resume();
      case 'cancel':
        return job.cancel(arg === true);
      case 'complete':
        return job.complete();
      case 'finalize':
        return job.finalize();
      case 'dismiss':
        return job.dismiss();
      case 'set-speed':
        if (typeof arg !== 'number') throw new BlockError('EINVAL', "Parameter 'speed' expects a number");
        job.setSpeed(arg);
        this.tick();
        return;
      default:
        throw new BlockError('EINVAL', `Unknown job verb '${String(verb)}'`);
    }
  }

  /** query-jobs: every job, or one. */
  info(id?: string): JobInfo[] {
    return (id !== undefined ? [this.registry.find(id)] : this.registry.list()).map((j) => j.info());
  }

  /** query-block-jobs: every job, or one. */
  blockInfo(id?: string): BlockJobInfo[] {
    return (id !== undefined ? [this.registry.find(id)] : this.registry.list()).map((j) => j.blockInfo());
  }

  /** Force-cancels the jobs running on `disk` and waits for them (before the disk closes). */
  async cancelOn(disk: DiskService): Promise<void> {
    const mine = [...this.devices].filter(([, d]) => d === disk).map(([j]) => j);
    await Promise.all(mine.map((job) => cancelAndWait(job)));
  }

  /** Force-cancels every job and waits for them (the worker shuts down). */
  async cancelAll(): Promise<void> {
    await this.registry.cancelAll();
    this.stopTicker();
  }

  private forward(e: JobEvent): void {
    let out: JobWireEvent | undefined;
    switch (e.event) {
      case 'JOB_STATUS_CHANGE': {
        const job = this.registry.get(e.data.id);
        const error = e.data.status === 'concluded' && job?.error ? serializeBlockError(job.error) : undefined;
        out = { id: e.data.id, type: 'status', status: e.data.status, ...(error ? { error } : {}) };
        if (job && e.data.status === 'concluded') this.concluded(job);
        break;
      }
      case 'BLOCK_JOB_READY':
        out = { id: e.data.device, type: 'ready', current: e.data.offset, total: e.data.len };
        break;
      case 'BLOCK_JOB_COMPLETED':
        out = { id: e.data.device, type: 'completed', current: e.data.offset, total: e.data.len, ...(e.data.error !== undefined ? { error: e.data.error } : {}) };
        break;
      case 'BLOCK_JOB_CANCELLED':
        out = { id: e.data.device, type: 'cancelled', current: e.data.offset, total: e.data.len };
        break;
      case 'BLOCK_JOB_PENDING':
        out = { id: e.data.id, type: 'pending' };
        break;
      case 'BLOCK_JOB_ERROR':
        out = { id: e.data.device, type: 'io-error', operation: e.data.operation, action: e.data.action };
        break;
    }
    if (out) this.send(out);
  }

  /** A job finished: the disk may have moved onto its target. */
  private concluded(job: Job): void {
    const disk = this.devices.get(job);
    this.devices.delete(job);
    this.lastProgress.delete(job);
    if (disk && !job.error && (job.type === 'mirror' || job.type === 'commit')) {
      this.host.moved(disk, imageNodeOf(disk.backend.node).filename);
    }
  }

  private send(e: JobWireEvent): void {
    for (const l of [...this.listeners]) {
      // A listener of a page that went away is dropped.
      void Promise.resolve()
        .then(() => l(e))
        .catch(() => this.listeners.delete(l));
    }
  }

  /** Runs the progress ticker while jobs exist. */
  private tick(): void {
    if (this.ticker !== undefined) return;
    this.ticker = setInterval(() => {
      const jobs = this.registry.list();
      if (jobs.length === 0) return this.stopTicker();
      for (const job of jobs) {
        const i = job.info();
        const key = `${i['current-progress']}/${i['total-progress']}`;
        if (this.lastProgress.get(job) === key || i.id === '') continue;
        this.lastProgress.set(job, key);
        this.send({ id: i.id, type: 'progress', current: i['current-progress'], total: i['total-progress'] });
      }
    }, PROGRESS_MS);
  }

  private stopTicker(): void {
    if (this.ticker !== undefined) clearInterval(this.ticker);
    this.ticker = undefined;
  }
}

async function cancelAndWait(job: Job): Promise<void> {
  try {
    if (job.status === 'concluded') void job.dismiss().catch(() => undefined);
    else if (job.status !== 'null' && job.status !== 'aborting') job.cancel(true);
  } catch {
    // waiting / pending in a finishing transaction: it concludes on its own.
  }
  await job.waitFor((s) => s === 'concluded' || s === 'null');
}

/** Does `node` stand for the image `name` (its filename, with or without the back end's prefix)? */
function names(node: BlockNode, name: string): boolean {
  const f = node.filename;
  return f === name || canonicalPath(f) === canonicalPath(name) || f.endsWith('/' + name.replace(/^\/+/, ''));
}

/** The image `name` in `from`'s backing chain (`from` itself included when `self`). */
function findInChain(from: BlockNode, name: string, self: boolean): BlockNode {
  for (let n: BlockNode | undefined = self ? from : cowChild(from); n; n = cowChild(n)) {
    if (names(n, name)) return n;
  }
  throw new BlockError('EINVAL', `Image '${name}' is not in the backing chain of '${from.filename}'`);
}


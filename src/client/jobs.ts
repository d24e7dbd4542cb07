/**
 * Block jobs from the page (`dw.jobs`): stream, commit, mirror and backup on
 * open disks, run by the worker's job registry (workers/job-service.ts) with
 * QEMU's job state machine. Each start returns a {@link Job} handle with the
 * verbs, the queries and the job's events.
 *
 * ```ts
 * const job = await dw.jobs.startMirror(disk, { target: { path: 'idb:copy.qcow2', create: true } });
 * job.on((e) => { if (e.type === 'progress') bar.value = e.current / e.total; });
 * await job.waitFor('ready');
 * await job.complete();           // the disk now runs on idb:copy.qcow2
 * await job.settled();
 * ```
 *
 * Verbs a job's state refuses fail with QEMU's EPERM message ("Job 'x' in
 * state 'running' cannot accept command verb 'complete'"); every error is a
 * BlockError with its code.
 */
import { proxy, type Remote } from 'comlink';
import type { BlockWorkerApi } from './api.js';
import type {
  BackupJobOptions,
  BlockJobInfo,
  CommitJobOptions,
  JobInfo,
  JobStartRequest,
  JobStatus,
  JobType,
  JobVerbRequest,
  JobWireEvent,
  MirrorJobOptions,
  StreamJobOptions,
} from './jobs-protocol.js';
import { deserializeBlockError } from './transfer.js';
import { BlockError } from '../core/errors.js';

/** An event of one job, as {@link Job.on} delivers it (the wire event without the id). */
export type JobEvent = JobWireEvent extends infer E ? (E extends { id: string } ? Omit<E, 'id'> : never) : never;

/** What the page adds to a job's options: a listener in place before the job starts (no event missed). */
export interface JobListenerOption {
  /** Receives every event of the job from its first status change on (see {@link Job.on}). */
  onEvent?: (e: JobEvent) => void;
}

/** What identifies a disk: its handle, or the path it was opened with. */
export type DiskRef = { readonly path: string } | string;

/** A block job running in the worker. */
export class Job {
  private statusValue: JobStatus = 'created';
  private current = 0;
  private total = 0;
  private failure: BlockError | undefined;
  private readonly listeners = new Set<(e: JobEvent) => void>();
  private waiters: Array<() => void> = [];

  /** @internal Made by {@link DiskJobs}. */
  constructor(
    private readonly remote: Remote<BlockWorkerApi>,
    /** The job id. */
    readonly id: string,
    /** stream, commit, mirror or backup. */
    readonly type: JobType,
  ) {}

  /** The last status the worker reported. */
  get status(): JobStatus {
    return this.statusValue;
  }

  /** Bytes done and the total so far (the total grows while a mirror follows guest writes). */
  get progress(): { current: number; total: number } {
    return { current: this.current, total: this.total };
  }

  /** The error the job concluded with (ECANCELED when cancelled), once concluded. */
  get error(): BlockError | undefined {
    return this.failure;
  }

  /** Listens to the job's events; returns the function that stops listening. */
  on(listener: (e: JobEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The job as query-jobs shows it (ENOENT once it is gone: dismissed). */
  async info(): Promise<JobInfo> {
    return (await this.remote.jobInfo(this.id))[0]!;
  }

  /** The job as query-block-jobs shows it (speed, paused, ready, io-status). */
  async blockInfo(): Promise<BlockJobInfo> {
    return (await this.remote.jobBlockInfo(this.id))[0]!;
  }

  /** Pauses the job at its next pause point, until {@link resume}. */
  pause(): Promise<void> {
    return this.verb('pause');
  }

  /** Resumes a paused job (also one an error policy stopped). */
  resume(): Promise<void> {
    return this.verb('resume');
  }

  /**
   * Cancels the job. A ready mirror cancelled without `force` finishes
   * cleanly: the target holds a consistent copy and the disk stays on its
   * source; `force` abandons the copy.
   */
  cancel(force = false): Promise<void> {
    return this.verb('cancel', force);
  }

  /** Asks a ready mirror or active commit to finish: the disk pivots onto the target (base). */
  complete(): Promise<void> {
    return this.verb('complete');
  }

  /** Finalizes a pending job started with `autoFinalize: false`. */
  finalize(): Promise<void> {
    return this.verb('finalize');
  }

  /** Forgets a concluded job started with `autoDismiss: false`. */
  dismiss(): Promise<void> {
    return this.verb('dismiss');
  }

  /** Limits the job to `bytesPerSecond` (0: unlimited). */
  setSpeed(bytesPerSecond: number): Promise<void> {
    return this.verb('set-speed', bytesPerSecond);
  }

  /** Resolves once the job reaches `status` (or any status `predicate` accepts); rejects if it concludes first. */
  async waitFor(status: JobStatus | ((s: JobStatus) => boolean)): Promise<void> {
    const want = typeof status === 'function' ? status : (s: JobStatus) => s === status;
    while (!want(this.statusValue)) {
      if (this.statusValue === 'concluded' || this.statusValue === 'null') {
        throw this.failure ?? new BlockError('EINVAL', `Job '${this.id}' concluded without reaching the status asked for`);
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Resolves when the job has concluded successfully; rejects with its BlockError (ECANCELED when cancelled). */
  async settled(): Promise<void> {
    await this.waitFor((s) => s === 'concluded' || s === 'null');
    if (this.failure) throw this.failure;
  }

  private async verb(verb: JobVerbRequest, arg?: number | boolean): Promise<void> {
    await this.remote.jobVerb(this.id, verb, arg);
  }

  /** @internal An event from the worker. */
  deliver(e: JobWireEvent): void {
    if (e.type === 'status') {
      this.statusValue = e.status;
      if (e.error) this.failure = deserializeBlockError(e.error);
    } else if (e.type === 'progress' || e.type === 'ready' || e.type === 'completed' || e.type === 'cancelled') {
      this.current = e.current;
      this.total = e.total;
    }
    const { id: _id, ...rest } = e;
    for (const l of [...this.listeners]) l(rest as JobEvent);
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

let generated = 0;

/** `dw.jobs`: starts block jobs on open disks and keeps their handles. */
export class DiskJobs {
  private readonly jobs = new Map<string, Job>();
  private subscribed: Promise<void> | undefined;

  /** @internal Made by DiskWorker. */
  constructor(private readonly remote: Remote<BlockWorkerApi>) {}

  /**
   * Stream: copies the data of the disk's backing chain (down to `base`, or
   * all of it) into its active image, then relinks it onto `base` (or no
   * backing file). The disk keeps running.
   */
  startStream(disk: DiskRef, options: StreamJobOptions & JobListenerOption = {}): Promise<Job> {
    return this.start('stream', disk, options);
  }

  /**
   * Commit: copies `top` (default: the disk's active image) down into `base`
   * (default: the bottom of the chain). An intermediate commit drops the
   * images between from the chain; an active commit goes `ready` and
   * {@link Job.complete} pivots the disk onto the base.
   */
  startCommit(disk: DiskRef, options: CommitJobOptions & JobListenerOption = {}): Promise<Job> {
    return this.start('commit', disk, options);
  }

  /**
   * Mirror: copies the disk to `target` (an existing image, or one created
   * with the disk's size), follows its writes, goes `ready` when in sync;
   * {@link Job.complete} then pivots the disk onto the target.
   */
  startMirror(disk: DiskRef, options: MirrorJobOptions & JobListenerOption): Promise<Job> {
    return this.start('mirror', disk, options);
  }

  /**
   * Backup: the target receives the disk as it is now (copy-before-write
   * keeps later writes out of it), while the disk keeps running.
   */
  startBackup(disk: DiskRef, options: BackupJobOptions & JobListenerOption): Promise<Job> {
    return this.start('backup', disk, options);
  }

  /** The handle of a job started from this page, if it is still known. */
  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  /** Handles of the jobs started from this page that are not yet gone. */
  list(): Job[] {
    return [...this.jobs.values()];
  }

  /** query-jobs of every job in the worker. */
  query(): Promise<JobInfo[]> {
    return this.remote.jobInfo();
  }

  private async start(kind: JobStartRequest['kind'], disk: DiskRef, all: { id?: string } & JobListenerOption): Promise<Job> {
    const { onEvent, ...options } = all;
    await this.subscribe();
    const id = options.id ?? `${kind}-${++generated}`;
    if (this.jobs.has(id)) throw new BlockError('EEXIST', `Job ID '${id}' already in use`);
    // The handle exists before the start so that no early event is lost.
    const job = new Job(this.remote, id, kind);
    if (onEvent) job.on(onEvent);
    this.jobs.set(id, job);
    const device = typeof disk === 'string' ? disk : disk.path;
    try {
      await this.remote.jobStart({ kind, device, options: { ...options, id } } as JobStartRequest);
    } catch (e) {
      this.jobs.delete(id);
      throw e;
    }
    // The worker started the job before answering; its status events come as separate messages.
    await job.waitFor((s) => s !== 'created');
    return job;
  }

  private subscribe(): Promise<void> {
    this.subscribed ??= this.remote.jobSubscribe(
      proxy((e: JobWireEvent) => {
        const job = this.jobs.get(e.id);
        if (!job) return;
        job.deliver(e);
        if (e.type === 'status' && e.status === 'null') this.jobs.delete(e.id);
      }),
    );
    return this.subscribed;
  }
}

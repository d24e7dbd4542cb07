/**
 * The shapes around a {@link Job}: what a job driver implements, what the
 * driver may call while it runs, the events a job emits and the answers of
 * `query-jobs` / `query-block-jobs`. Field names follow QEMU's QAPI schema so
 * the control plane can pass them through unchanged.
 */
import type { JobLinks } from './job-links.js';
import type { BlockNode } from '../core/node.js';
import type { BlockError } from '../core/errors.js';
import type { BackendOptions, DrainListener } from '../core/backend.js';
import type { JobStatus } from './job-status.js';

/** What kind of work a job does (QAPI JobType, the block jobs we run). */
export type JobType = 'commit' | 'stream' | 'mirror' | 'backup' | 'create' | 'amend';

/** What to do when a job's read or write fails (QAPI BlockdevOnError). */
export type OnErrorPolicy = 'report' | 'ignore' | 'enospc' | 'stop' | 'auto';

/** What was done about one failed read or write (QAPI BlockErrorAction). */
export type BlockErrorAction = 'report' | 'ignore' | 'stop';

/** The I/O status a stopped job shows (QAPI BlockDeviceIoStatus). */
export type IoStatus = 'ok' | 'failed' | 'nospace';

/**
 * The work of one kind of job. `run` does the work, calling the
 * {@link JobControl} it gets at pause points; the hooks after it run once the
 * whole transaction has finished: `prepare` (may still fail the job), then
 * `commit` or `abort`, then `clean`.
 */
export interface JobDriver {
  readonly type: JobType;
  /**
   * The nodes the job works on: every operation on them (snapshots, resize,
   * another job) is refused with "Node 'x' is busy: block device is in use
   * by block job: <type>" from the job's creation until it concludes.
   */
  readonly blockedNodes?: readonly BlockNode[];
  /** The job's own links to its nodes (QEMU's BlockJob.nodes); the job pauses while one of them is drained. */
  readonly links?: JobLinks;
  /**
   * Resolves once `run` has put the job's filter, links and backends in
   * place (or failed before): the command that starts the job replies after
   * it, as QEMU's job is in the graph when its start command returns.
   */
  readonly graphReady?: Promise<void>;
  /** The work. Throwing fails the job; returning with the job cancelled ends it as cancelled. */
  run(ctl: JobControl): Promise<void>;
  /** Last step that may fail, run for every job of a transaction before any commits. */
  prepare?(): Promise<void>;
  /** Makes the result visible (graph changes); must not fail. */
  commit?(): Promise<void> | void;
  /** Undoes what run did, after a failure or cancel. */
  abort?(): Promise<void> | void;
  /** Releases what the job held, after commit or abort. */
  clean?(): Promise<void> | void;
  /**
   * Releases what the job keeps until it is dismissed (QEMU's block_job_free):
   * a stream's and a commit's links to their nodes stay while the concluded
   * job waits for its dismiss. Must not fail.
   */
  free?(): Promise<void> | void;
  /** The user's `complete` (mirror, active commit): throw a BlockError to refuse. */
  complete?(): void;
  /**
   * The user's `cancel`: returns whether the cancel is forced. A job that can
   * stop cleanly (a ready mirror: leave a consistent copy, no pivot) returns
   * `force` itself; without this hook every cancel is forced.
   */
  cancel?(force: boolean): boolean;
  /** Called when the job reaches a pause point and is about to pause. */
  pause?(): void;
  /** Called when the job leaves a pause point. */
  resume?(): void;
  /** Called when the speed changes (the job's own rate limit is already updated). */
  setSpeed?(bytesPerSecond: number): void;
}

/** What a running driver may call on its job. */
export interface JobControl {
  /** The job's id ('' for internal jobs). */
  readonly id: string;
  /** Aborted when the job is force-cancelled: hand it to the copy engine. */
  readonly signal: AbortSignal;
  /** Pauses here if a pause was asked for; returns at once otherwise. */
  pausePoint(): Promise<void>;
  /** Waits until woken (by cancel, complete, pause or resume), then passes a pause point. */
  yield(): Promise<void>;
  /** Sleeps `ms` (woken early by cancel or pause), then passes a pause point. */
  sleep(ms: number): Promise<void>;
  /** Accounts `bytes` of work against the speed limit and sleeps as long as it asks. */
  ratelimit(bytes: number): Promise<void>;
  /** Has the job been cancelled (forced)? The driver should stop and return. */
  isCancelled(): boolean;
  /** Was any cancel asked for (a soft cancel of a ready job included)? */
  cancelRequested(): boolean;
  /** Adds `bytes` to the work done. */
  progressUpdate(bytes: number): void;
  /** Sets the work left, so total = done + remaining. */
  progressSetRemaining(bytes: number): void;
  /** Adds `bytes` to the total work (new dirty data in a mirror). */
  progressIncreaseRemaining(bytes: number): void;
  /** The job is in sync: move to `ready` and emit BLOCK_JOB_READY. */
  transitionToReady(): void;
  /**
   * Decides what to do with a failed read or write under `policy`, emits
   * BLOCK_JOB_ERROR, and on `stop` pauses the job until the user resumes it.
   */
  errorAction(policy: OnErrorPolicy, operation: 'read' | 'write', error: BlockError): BlockErrorAction;
  /**
   * Give this to the job's backends ({@link BackendOptions.drainListener}): while one of
   * their nodes is drained the job pauses at its next pause point (QEMU's child_job).
   */
  readonly drainListener: DrainListener;
}

/** The fields BLOCK_JOB_READY / COMPLETED / CANCELLED carry. */
export interface BlockJobEventData {
  type: JobType;
  device: string;
  len: number;
  offset: number;
  speed: number;
}

/** Events a job emits, named and shaped as QEMU's QMP events. */
export type JobEvent =
  | { event: 'JOB_STATUS_CHANGE'; data: { id: string; status: JobStatus } }
  | { event: 'BLOCK_JOB_READY'; data: BlockJobEventData }
  | { event: 'BLOCK_JOB_COMPLETED'; data: BlockJobEventData & { error?: string } }
  | { event: 'BLOCK_JOB_CANCELLED'; data: BlockJobEventData }
  | { event: 'BLOCK_JOB_PENDING'; data: { type: JobType; id: string } }
  | { event: 'BLOCK_JOB_ERROR'; data: { device: string; operation: 'read' | 'write'; action: BlockErrorAction } };

/** One entry of `query-jobs`. */
export interface JobInfo {
  id: string;
  type: JobType;
  status: JobStatus;
  'current-progress': number;
  'total-progress': number;
  error?: string;
}

/** One entry of `query-block-jobs`. */
export interface BlockJobInfo {
  type: JobType;
  device: string;
  len: number;
  offset: number;
  busy: boolean;
  paused: boolean;
  speed: number;
  'io-status': IoStatus;
  ready: boolean;
  status: JobStatus;
  'auto-finalize': boolean;
  'auto-dismiss': boolean;
  error?: string;
}

/** Timers a job sleeps on; injected so tests run on virtual time. */
export interface JobTimers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real clock. */
export const REAL_TIMERS: JobTimers = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

const earlyFailures = new WeakSet<object>();

/**
 * Marks a refusal that QEMU meets only after it made the job (its
 * job_early_fail): the job is reported created, then gone, before the
 * command fails with it.
 */
export function markEarlyJobFailure<E>(e: E): E {
  if (typeof e === 'object' && e !== null) earlyFailures.add(e);
  return e;
}

/** Whether {@link markEarlyJobFailure} marked `e`. */
export function isEarlyJobFailure(e: unknown): boolean {
  return typeof e === 'object' && e !== null && earlyFailures.has(e);
}

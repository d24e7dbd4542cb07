/**
 * A long-running block job and its life cycle, following QEMU's job layer:
 * created → running (⇄ paused) → [ready ⇄ standby] → waiting → pending →
 * concluded → null, or → aborting → concluded on failure or cancel. Jobs of
 * one {@link JobTxn} finalise together: each waits for the others, all
 * prepare, and then all commit — or, if one fails, all abort.
 *
 * The driver's `run` is an ordinary async function; where QEMU's coroutine
 * yields, it awaits {@link JobControl} calls, and a job is "busy" while its
 * run is between such calls. Verbs a state does not accept are refused with
 * QEMU's message (EPERM).
 */
import type { BdrvChild } from '../core/child.js';
import { blockOps, jobBlockReason } from '../core/op-blockers.js';
import { BlockError, STRERROR, toBlockError } from '../core/errors.js';
import { acceptsVerb, canTransition, isCompletedStatus, isReadyStatus, type JobStatus, type JobVerb } from './job-status.js';
import type {
  BlockJobEventData,
  BlockJobInfo,
  BlockErrorAction,
  IoStatus,
  JobControl,
  JobDriver,
  JobEvent,
  JobInfo,
  JobTimers,
  JobType,
  OnErrorPolicy,
} from './job-types.js';
import { REAL_TIMERS } from './job-types.js';
import { RateLimiter } from './rate-limit.js';

/** QEMU's block job time slice: an idle job that waits for work looks again this often. */
export const JOB_SLICE_MS = 100;

/** A running job gives the event loop a turn at least this often (at its pause points). */
const YIELD_EVERY_MS = 20;

/** Jobs that finalise or abort together. A job made without one gets its own. */
export class JobTxn {
  /** Set once one member failed: the others are cancelled and aborted with it. */
  aborting = false;
  readonly jobs = new Set<Job>();
}

/** How a job is made (see {@link JobRegistry.create} for the checked form). */
export interface JobOptions {
  /** The job's id; undefined for an internal job, which emits no events. */
  id?: string;
  txn?: JobTxn;
  /** Finalise without waiting for the user's `finalize` (default true). */
  autoFinalize?: boolean;
  /** Disappear at conclusion without waiting for `dismiss` (default true). */
  autoDismiss?: boolean;
  /** Initial speed limit in bytes per second (0: unlimited). */
  speed?: number;
  timers?: JobTimers;
  /** Called when the job reaches `null` (its registry forgets it). */
  onGone?: (job: Job) => void;
  /** A listener attached before the first event (`created`). */
  listener?: Listener;
}

/** Receives a job's events. */
export type Listener = (event: JobEvent) => void;

/** One block job. Users call the verbs; the driver gets a {@link JobControl}. */
export class Job {
  readonly id: string | undefined;
  readonly type: JobType;
  readonly autoFinalize: boolean;
  readonly autoDismiss: boolean;
  private statusValue: JobStatus = 'undefined';
  private txn: JobTxn | undefined;
  private readonly timers: JobTimers;
  private limiter: RateLimiter | undefined;
  private readonly abortController = new AbortController();
  private readonly listeners = new Set<Listener>();
  private readonly onGone: ((job: Job) => void) | undefined;
  private speedValue = 0;
  private started = false;
  private busy = false;
  private paused = true;
  private pauseCount = 1;
  private userPaused = false;
  private cancelled = false;
  private forceCancel = false;
  /** The run has returned; what is left happens in the completion steps. */
  private deferred = false;
  private wake: (() => void) | undefined;
  private timer: unknown;
  private ret: BlockError | undefined;
  private ioStatus: IoStatus = 'ok';
  private progressCurrent = 0;
  private progressTotal = 0;
  private statusWaiters: Array<() => void> = [];
  private lastYield = 0;
  private readonly control: JobControl;
  /** Lifts the job's operation blockers (at conclusion). */
  private readonly unblockNodes: () => void;

  constructor(
    private readonly driver: JobDriver,
    options: JobOptions = {},
  ) {
    this.id = options.id;
    this.type = driver.type;
    this.autoFinalize = options.autoFinalize ?? true;
    this.autoDismiss = options.autoDismiss ?? true;
    this.timers = options.timers ?? REAL_TIMERS;
    this.lastYield = this.timers.now();
    this.onGone = options.onGone;
    this.control = this.makeControl();
    // As QEMU's child_job: a drain of one of the job's nodes pauses the job, started or not.
    driver.links?.setDrainListener(this.control.drainListener);
    if (options.listener) this.listeners.add(options.listener);
    this.txn = options.txn ?? new JobTxn();
    this.txn.jobs.add(this);
    this.unblockNodes = blockOps(driver.blockedNodes ?? [], jobBlockReason(driver.type));
    this.transition('created');
    if (options.speed !== undefined) this.applySpeed(options.speed);
  }

  /** Is this a block job (QEMU's BlockJob: the BLOCK_JOB_* events, query-block-jobs)? Image creation and amend are plain jobs. */
  get isBlockJob(): boolean {
    return this.type !== 'create' && this.type !== 'amend';
  }

  /** The job's links to its nodes, newest first (the edges x-debug-query-block-graph shows). */
  get links(): readonly BdrvChild[] {
    return this.driver.links?.links ?? [];
  }

  /** The current state. */
  get status(): JobStatus {
    return this.statusValue;
  }

  /** The error the job ended with, if any (ECANCELED for a cancelled job). */
  get error(): BlockError | undefined {
    return this.ret;
  }

  /** Listens to this job's events; returns the function that stops listening. */
  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Starts the driver's run (QEMU's job_start). */
  start(): void {
    if (this.started || this.statusValue !== 'created') throw new BlockError('EPERM', `Job '${this.name}' has already been started`);
    this.started = true;
    this.pauseCount--;
    this.busy = true;
    this.paused = false;
    this.transition('running');
    void this.runDriver();
  }

  // ---- user verbs ------------------------------------------------------------------------------

  /** `job-pause`: pause at the next pause point until `resume`. */
  pause(): void {
    this.checkVerb('pause');
    if (this.userPaused) throw new BlockError('EINVAL', 'Job is already paused');
    this.userPaused = true;
    this.pauseInternal();
  }

  /** Is the job paused by the user (`pause`), as QEMU's job_user_paused? */
  get userPausedNow(): boolean {
    return this.userPaused;
  }

  /** `job-resume`: undo `pause` (or an error policy's stop). */
  resume(): void {
    if (!this.userPaused || this.pauseCount <= 0) throw new BlockError('EINVAL', "Can't resume a job that was not paused");
    this.checkVerb('resume');
    this.ioStatus = 'ok';
    this.userPaused = false;
    this.resumeInternal();
  }

  /** `job-cancel` / `block-job-cancel`: stop the job; `force` also for a ready mirror. */
  cancel(force = false): void {
    this.checkVerb('cancel');
    this.doCancel(force);
  }

  /** `job-complete`: ask a ready job (mirror, active commit) to finish and pivot. */
  complete(): void {
    this.checkVerb('complete');
    if (this.cancelled || !this.driver.complete) {
      throw new BlockError('EPERM', `The active block job '${this.name}' cannot be completed`);
    }
    this.driver.complete();
    this.enter();
  }

  /** `job-finalize`: finalise a pending job (and its transaction) made with autoFinalize off. */
  async finalize(): Promise<void> {
    this.checkVerb('finalize');
    await this.doFinalize();
  }

  /** `job-dismiss`: forget a concluded job made with autoDismiss off (resolves once its links are gone). */
  dismiss(): Promise<void> {
    this.checkVerb('dismiss');
    return this.freeAndDismiss();
  }

  /** The driver's free, run once. */
  private freeing: Promise<void> | undefined;

  /** Frees the driver (its last links go), then the job goes to null: what QEMU's dismiss does at once. */
  private async freeAndDismiss(): Promise<void> {
    // Without a free step nothing is awaited: the job is gone when the call returns.
    const free = this.driver.free;
    if (free) {
      this.freeing ??= (async () => {
        try {
          await free.call(this.driver);
        } catch {
          // Nothing is left to report to: the job has concluded.
        }
      })();
      await this.freeing;
    }
    if (this.statusValue === 'concluded') this.doDismiss();
  }

  /** `block-job-set-speed`: bytes per second, 0 for unlimited. */
  setSpeed(bytesPerSecond: number): void {
    this.checkVerb('set-speed');
    const old = this.speedValue;
    this.applySpeed(bytesPerSecond);
    // A sleeping job wakes to use a higher limit at once.
    if (bytesPerSecond !== 0 && bytesPerSecond <= old) return;
    this.enter(() => this.timer !== undefined);
  }

  /** The internal pause of a drained node: nested, invisible to the user. */
  pauseInternal(): void {
    this.pauseCount++;
    if (!this.paused) this.enter();
  }

  /** Ends one {@link pauseInternal}. */
  resumeInternal(): void {
    if (this.pauseCount <= 0) throw new BlockError('EINVAL', `Job '${this.name}' is not paused`);
    this.pauseCount--;
    if (this.pauseCount > 0) return;
    this.enter(() => this.timer === undefined);
  }

  /** Resolves when the job has concluded (or is gone); rejects with its error if it failed or was cancelled. */
  async settled(): Promise<void> {
    // A job that dismisses itself has settled once it is gone (what it held is released then).
    await this.waitFor((s) => s === 'null' || (s === 'concluded' && !this.autoDismiss));
    if (this.ret) throw this.ret;
  }

  /**
   * Resolves when the job reaches a state that `predicate` accepts; rejects
   * (with the job's error, if it failed) once it ended without reaching one,
   * instead of waiting forever.
   */
  async waitFor(predicate: (status: JobStatus) => boolean): Promise<void> {
    while (!predicate(this.statusValue)) {
      // Only 'null' follows 'concluded', and nothing follows 'null'.
      const s = this.statusValue;
      if (s === 'null' || (s === 'concluded' && !predicate('null'))) {
        throw this.ret ?? new BlockError('ECANCELED', `Job '${this.id ?? ''}' ended (${s}) without reaching the state waited for`);
      }
      await new Promise<void>((resolve) => this.statusWaiters.push(resolve));
    }
  }

  // ---- queries ---------------------------------------------------------------------------------

  /** This job as `query-jobs` shows it. */
  info(): JobInfo {
    const info: JobInfo = {
      id: this.id ?? '',
      type: this.type,
      status: this.statusValue,
      'current-progress': this.progressCurrent,
      'total-progress': this.progressTotal,
    };
    if (this.ret) info.error = this.errorText();
    return info;
  }

  /** This job as `query-block-jobs` shows it. */
  blockInfo(): BlockJobInfo {
    const info: BlockJobInfo = {
      type: this.type,
      device: this.id ?? '',
      len: this.progressTotal,
      offset: this.progressCurrent,
      busy: this.busy,
      paused: this.pauseCount > 0,
      speed: this.speedValue,
      'io-status': this.ioStatus,
      ready: isReadyStatus(this.statusValue),
      status: this.statusValue,
      'auto-finalize': this.autoFinalize,
      'auto-dismiss': this.autoDismiss,
    };
    if (this.ret) info.error = this.errorText();
    return info;
  }

  // ---- the control handed to the driver ----------------------------------------------------------

  private makeControl(): JobControl {
    const id = this.id ?? '';
    return {
      id,
      signal: this.abortController.signal,
      pausePoint: () => this.pausePoint(),
      yield: () => this.yieldUntilEntered(),
      sleep: (ms) => this.sleep(ms),
      ratelimit: async (bytes) => {
        // No timer when unlimited or on schedule: a timer per chunk would cost more than the copy.
        await this.limiter?.take(bytes);
        await this.pausePoint();
      },
      isCancelled: () => this.forceCancel,
      cancelRequested: () => this.cancelled,
      progressUpdate: (bytes) => {
        this.progressCurrent += bytes;
      },
      progressSetRemaining: (bytes) => {
        this.progressTotal = this.progressCurrent + bytes;
      },
      progressIncreaseRemaining: (bytes) => {
        this.progressTotal += bytes;
      },
      transitionToReady: () => {
        this.transition('ready');
        this.emit({ event: 'BLOCK_JOB_READY', data: this.eventData() });
      },
      errorAction: (policy, operation, error) => this.errorAction(policy, operation, error),
      drainListener: { begin: () => this.pauseInternal(), end: () => this.resumeInternal() },
    };
  }

  private async runDriver(): Promise<void> {
    await this.pausePoint();
    try {
      await this.driver.run(this.control);
    } catch (e) {
      this.ret = toBlockError(e);
    }
    this.deferred = true;
    this.busy = false;
    await this.completed();
  }

  private async pausePoint(): Promise<void> {
    // I/O that completes at once (memory, sync OPFS handles) would otherwise never let the
    // event loop run: the guest's requests and the user's verbs must get their turn.
    if (this.timers.now() - this.lastYield >= YIELD_EVERY_MS) {
      if (this.pauseCount === 0 && !this.forceCancel) await this.suspend(0);
      this.lastYield = this.timers.now();
    }
    if (this.pauseCount === 0 || this.forceCancel) return;
    this.driver.pause?.();
    if (this.pauseCount > 0 && !this.forceCancel) {
      const before = this.statusValue;
      this.transition(before === 'ready' ? 'standby' : 'paused');
      this.paused = true;
      await this.suspend();
      this.paused = false;
      this.transition(before);
    }
    this.driver.resume?.();
  }

  private async yieldUntilEntered(): Promise<void> {
    if (this.forceCancel) return;
    if (this.pauseCount === 0) await this.suspend();
    await this.pausePoint();
  }

  private async sleep(ms: number): Promise<void> {
    if (this.forceCancel) return;
    if (this.pauseCount === 0) await this.suspend(Math.max(0, ms));
    await this.pausePoint();
  }

  /** Gives up the job's turn until {@link enter} (or the timer) wakes it. */
  private suspend(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      if (ms !== undefined) {
        this.timer = this.timers.setTimeout(() => {
          this.timer = undefined;
          this.enter();
        }, ms);
      }
      this.busy = false;
      this.wake = resolve;
    });
  }

  /** Wakes a suspended job (QEMU's job_enter_cond). */
  private enter(condition?: () => boolean): void {
    if (!this.started || this.deferred || this.busy || !this.wake) return;
    if (condition && !condition()) return;
    if (this.timer !== undefined) {
      this.timers.clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.busy = true;
    const wake = this.wake;
    this.wake = undefined;
    wake();
  }

  private errorAction(policy: OnErrorPolicy, operation: 'read' | 'write', error: BlockError): BlockErrorAction {
    let action: BlockErrorAction;
    if (policy === 'enospc' || policy === 'auto') action = error.code === 'ENOSPC' ? 'stop' : 'report';
    else action = policy;
    if (this.id !== undefined) this.emit({ event: 'BLOCK_JOB_ERROR', data: { device: this.id, operation, action } });
    if (action === 'stop') {
      if (!this.userPaused) {
        this.pauseInternal();
        // Visible to the user, who resumes it.
        this.userPaused = true;
      }
      this.ioStatus = error.code === 'ENOSPC' ? 'nospace' : 'failed';
    }
    return action;
  }

  // ---- completion and the transaction ------------------------------------------------------------

  private doCancel(force: boolean): void {
    // Its finalisation (commit or abort) is under way: the job concludes on its own.
    if (this.finalizing) return;
    if (this.statusValue === 'concluded') {
      void this.freeAndDismiss();
      return;
    }
    this.cancelAsync(force);
    if (!this.started) void this.completed();
    else if (this.deferred) {
      // A soft cancel of a job that has already finished its run changes nothing.
      if (this.forceCancel) void this.txnAbort();
    } else this.enter();
  }

  private cancelAsync(force: boolean): void {
    const forced = this.driver.cancel ? this.driver.cancel(force) : true;
    if (this.userPaused) {
      this.userPaused = false;
      this.pauseCount--;
    }
    if (forced || !this.deferred) {
      this.cancelled = true;
      if (forced && !this.forceCancel) {
        this.forceCancel = true;
        this.abortController.abort(new BlockError('ECANCELED', `Job '${this.name}' was cancelled`));
      }
    }
  }

  /** The run is over (or the job was cancelled before it started). */
  private async completed(): Promise<void> {
    this.updateRc();
    if (this.ret) await this.txnAbort();
    else await this.txnSuccess();
  }

  private updateRc(): void {
    if (!this.ret && this.forceCancel) this.ret = new BlockError('ECANCELED', STRERROR.ECANCELED);
    if (this.ret) this.transition('aborting');
  }

  private async txnSuccess(): Promise<void> {
    const txn = this.txn!;
    this.transition('waiting');
    for (const job of txn.jobs) if (!isCompletedStatus(job.statusValue)) return;
    for (const job of txn.jobs) job.transitionToPending();
    if (![...txn.jobs].some((job) => !job.autoFinalize)) await this.doFinalize();
  }

  private transitionToPending(): void {
    this.transition('pending');
    if (!this.autoFinalize && this.id !== undefined && this.isBlockJob) this.emit({ event: 'BLOCK_JOB_PENDING', data: { type: this.type, id: this.id } });
  }

  private async doFinalize(): Promise<void> {
    const txn = this.txn!;
    for (const job of [...txn.jobs]) {
      if (await job.prepare()) {
        await this.txnAbort();
        return;
      }
    }
    for (const job of [...txn.jobs]) await job.finalizeSingle();
  }

  /** Runs the driver's prepare; true if the job has failed. */
  private async prepare(): Promise<boolean> {
    if (!this.ret && this.driver.prepare) {
      try {
        await this.driver.prepare();
      } catch (e) {
        this.ret = toBlockError(e);
      }
      this.updateRc();
    }
    return this.ret !== undefined;
  }

  private async txnAbort(): Promise<void> {
    const txn = this.txn!;
    if (txn.aborting) return;
    txn.aborting = true;
    // One failed: no other result matters, so the others are force-cancelled.
    for (const job of txn.jobs) if (job !== this) job.cancelAsync(true);
    while (txn.jobs.size > 0) {
      const job = txn.jobs.values().next().value as Job;
      if (!isCompletedStatus(job.statusValue)) {
        if (job.started) {
          job.enter();
          await job.waitFor(isCompletedStatus);
        } else job.updateRc();
      }
      await job.finalizeSingle();
    }
  }

  /** The finalisation in progress: a second caller (a cancel's abort racing the commit) waits for it. */
  private finalizing: Promise<void> | undefined;

  private finalizeSingle(): Promise<void> {
    this.finalizing ??= this.finalizeSingleOnce();
    return this.finalizing;
  }

  private async finalizeSingleOnce(): Promise<void> {
    this.updateRc();
    try {
      if (!this.ret) await this.driver.commit?.();
      else await this.driver.abort?.();
    } catch (e) {
      if (!this.ret) {
        this.ret = toBlockError(e);
        this.transition('aborting');
      }
    }
    try {
      await this.driver.clean?.();
    } catch (e) {
      this.ret ??= toBlockError(e);
    }
    if (this.started && this.id !== undefined && this.isBlockJob) {
      if (this.forceCancel) this.emit({ event: 'BLOCK_JOB_CANCELLED', data: this.eventData() });
      else {
        const data: BlockJobEventData & { error?: string } = this.eventData();
        if (this.ret) data.error = this.errorText();
        this.emit({ event: 'BLOCK_JOB_COMPLETED', data });
      }
    }
    this.txn?.jobs.delete(this);
    this.txn = undefined;
    // A job that keeps its links until it is dismissed (stream, commit) keeps its blockers with them.
    if (!this.driver.free) this.unblockNodes();
    this.transition('concluded');
    if (this.autoDismiss || !this.started) await this.freeAndDismiss();
  }

  private doDismiss(): void {
    this.unblockNodes();
    this.busy = false;
    this.paused = false;
    this.deferred = true;
    this.txn?.jobs.delete(this);
    this.txn = undefined;
    this.transition('null');
    this.onGone?.(this);
  }

  // ---- helpers ---------------------------------------------------------------------------------

  private get name(): string {
    return this.id ?? this.type;
  }

  private checkVerb(verb: JobVerb): void {
    if (!acceptsVerb(verb, this.statusValue)) {
      throw new BlockError('EPERM', `Job '${this.name}' in state '${this.statusValue}' cannot accept command verb '${verb}'`);
    }
  }

  private applySpeed(bytesPerSecond: number): void {
    if (!Number.isSafeInteger(bytesPerSecond) || bytesPerSecond < 0) {
      throw new BlockError('EINVAL', "Parameter 'speed' expects a non-negative value", {}, { detail: `speed ${bytesPerSecond}` });
    }
    // The job sleeps through its own sleep, so pause and cancel wake it.
    this.limiter = bytesPerSecond > 0 ? new RateLimiter(bytesPerSecond, { now: () => this.timers.now(), sleep: (ms) => this.sleep(ms) }) : undefined;
    this.speedValue = bytesPerSecond;
    this.driver.setSpeed?.(bytesPerSecond);
  }

  private transition(to: JobStatus): void {
    const from = this.statusValue;
    if (!canTransition(from, to)) {
      throw new BlockError('EINVAL', `Job '${this.name}': no transition from '${from}' to '${to}'`);
    }
    this.statusValue = to;
    if (from !== to && this.id !== undefined) this.emit({ event: 'JOB_STATUS_CHANGE', data: { id: this.id, status: to } });
    const waiters = this.statusWaiters;
    this.statusWaiters = [];
    for (const wake of waiters) wake();
  }

  private eventData(): BlockJobEventData {
    return { type: this.type, device: this.id ?? '', len: this.progressTotal, offset: this.progressCurrent, speed: this.speedValue };
  }

  private errorText(): string {
    return this.ret!.text;
  }

  private emit(event: JobEvent): void {
    for (const listener of [...this.listeners]) listener(event);
  }
}

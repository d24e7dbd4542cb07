/**
 * The jobs of one block layer instance (a worker, a CLI process, a QMP
 * server): ids are unique and well-formed as QEMU requires, every job's
 * events reach the registry's listeners, and {@link JobRegistry.cancelAll}
 * stops everything before the layer shuts down.
 */
import { BlockError } from '../core/errors.js';
import { Job, type JobOptions, type JobTxn, type Listener } from './job.js';
import type { JobDriver, JobTimers } from './job-types.js';

/** How {@link JobRegistry.create} makes a job. */
export interface CreateJobOptions {
  /** Required unless `internal`. */
  id?: string;
  /** An internal job has no id and emits no events (qemu-img's own jobs). */
  internal?: boolean;
  txn?: JobTxn;
  autoFinalize?: boolean;
  autoDismiss?: boolean;
  speed?: number;
}

/** QEMU's id rule: a letter, then letters, digits, '-', '.' or '_'. */
export function isWellFormedId(id: string): boolean {
  return /^[A-Za-z][A-Za-z0-9._-]*$/.test(id);
}

/** The live jobs, by id. */
export class JobRegistry {
  private readonly jobs = new Set<Job>();
  private readonly listeners = new Set<Listener>();

  constructor(private readonly timers?: JobTimers) {}

  /** Makes a job (status `created`); call its `start()` to run it. */
  create(driver: JobDriver, options: CreateJobOptions): Job {
    const { id, internal = false } = options;
    if (id !== undefined) {
      if (internal) throw new BlockError('EINVAL', 'Cannot specify job ID for internal job');
      if (!isWellFormedId(id)) throw new BlockError('EINVAL', `Invalid job ID '${id}'`);
      if (this.get(id)) throw new BlockError('EEXIST', `Job ID '${id}' already in use`);
    } else if (!internal) {
      throw new BlockError('EINVAL', 'An explicit job ID is required');
    }
    const jobOptions: JobOptions = {
      id,
      txn: options.txn,
      autoFinalize: options.autoFinalize,
      autoDismiss: options.autoDismiss,
      speed: options.speed,
      timers: this.timers,
      onGone: (job) => this.jobs.delete(job),
      listener: (event) => {
        for (const listener of [...this.listeners]) listener(event);
      },
    };
    const job = new Job(driver, jobOptions);
    this.jobs.add(job);
    return job;
  }

  /** The job with this id, if it is still there. */
  get(id: string): Job | undefined {
    for (const job of this.jobs) if (job.id === id) return job;
    return undefined;
  }

  /** The job with this id, or QEMU's "not found" error. */
  find(id: string): Job {
    const job = this.get(id);
    if (!job) throw new BlockError('ENOENT', `Job '${id}' not found`);
    return job;
  }

  /** Every job not yet gone, oldest first. */
  list(): Job[] {
    return [...this.jobs];
  }

  /** Listens to the events of every job; returns the function that stops listening. */
  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Force-cancels every job and waits until each has concluded (shutdown). */
  async cancelAll(): Promise<void> {
    for (const job of [...this.jobs]) {
      if (job.status === 'concluded') void job.dismiss().catch(() => undefined);
      else if (job.status !== 'null' && job.status !== 'aborting') {
        try {
          job.cancel(true);
        } catch {
          // A job in 'waiting' or 'pending' of a finishing transaction concludes on its own.
        }
      }
    }
    await Promise.all([...this.jobs].map((job) => job.waitFor((s) => s === 'concluded' || s === 'null')));
  }
}

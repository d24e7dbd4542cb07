/**
 * Wire types of the block jobs between the page and the block worker
 * (types only: both sides import this file). Field names of the job
 * queries follow QEMU's query-jobs / query-block-jobs.
 */
import type { SerializedBlockError } from './transfer.js';

export type { JobInfo, BlockJobInfo, JobType } from '../jobs/job-types.js';
export type { JobStatus } from '../jobs/job-status.js';
import type { JobStatus } from '../jobs/job-status.js';

/** Where a job's target image comes from. */
export interface JobTarget {
  /** The image: `opfs:/dir/a.qcow2`, `idb:name`, `memory:name`. */
  path: string;
  /** Its format; probed when absent (and `qcow2` when `create` makes it). */
  format?: 'qcow2' | 'raw';
  /**
   * Create (replace) the image first with the source's virtual size, in
   * `format`, with these creation options (qemu-img -o keys). Without it the
   * image must exist.
   */
  create?: boolean | { options?: Record<string, string | number | boolean> };
}

/** Options every job takes. */
export interface JobCommonOptions {
  /** The job id (QEMU's rule: a letter, then letters, digits, '-', '.', '_'); generated when absent. */
  id?: string;
  /** Bytes per second, 0 (default) for unlimited. */
  speed?: number;
  /** Finalize on its own when the work is done (default true); false waits for `finalize()`. */
  autoFinalize?: boolean;
  /** Forget the job once concluded (default true); false keeps it until `dismiss()`. */
  autoDismiss?: boolean;
}

/** Options of a stream job (QEMU block-stream) into the disk's active image. */
export interface StreamJobOptions extends JobCommonOptions {
  /** The backing image that stays below (by its filename); absent: the whole chain is pulled in. */
  base?: string;
}

/** Options of a commit job (QEMU block-commit). */
export interface CommitJobOptions extends JobCommonOptions {
  /**
   * The image whose data goes down (by its filename); absent: the disk's
   * active image, which makes an active commit (it goes ready and needs
   * `complete()` to pivot the disk onto the base).
   */
  top?: string;
  /** Where the data goes (by its filename); absent: the bottom of the chain. */
  base?: string;
}

/** Options of a mirror job (QEMU blockdev-mirror). */
export interface MirrorJobOptions extends JobCommonOptions {
  target: JobTarget;
  /** full (default): everything the disk shows; top: what its active image holds; none: only new writes. */
  sync?: 'full' | 'top' | 'none';
  /** Bytes per dirty bit (a power of two, 512 B..64 MiB). */
  granularity?: number;
  /** Most bytes in flight (default 16 MiB). */
  bufSize?: number;
}

/** Options of a backup job (QEMU blockdev-backup). */
export interface BackupJobOptions extends JobCommonOptions {
  target: JobTarget;
  /** full (default), top, none, or bitmap (incremental, from `bitmap`). */
  sync?: 'full' | 'top' | 'none' | 'bitmap';
  /** The disk's dirty bitmap to copy from (sync bitmap, or full / top). */
  bitmap?: string;
  /** What becomes of the bitmap: on-success (default with a bitmap), never, always. */
  bitmapMode?: 'on-success' | 'never' | 'always';
  /** Write the target's clusters compressed (qcow2). */
  compress?: boolean;
}

/** What the page asks the worker to start. */
export type JobStartRequest =
  | { kind: 'stream'; device: string; options: StreamJobOptions & { id: string } }
  | { kind: 'commit'; device: string; options: CommitJobOptions & { id: string } }
  | { kind: 'mirror'; device: string; options: MirrorJobOptions & { id: string } }
  | { kind: 'backup'; device: string; options: BackupJobOptions & { id: string } };

/** A verb the page sends to a job. */
export type JobVerbRequest = 'pause' | 'resume' | 'cancel' | 'complete' | 'finalize' | 'dismiss' | 'set-speed';

/**
 * An event of one job as it reaches the page. `status` follows every state
 * change (`error` set when the job concluded with one); `progress` comes at
 * most every 200 ms while the work moves; `ready`, `completed`,
 * `cancelled`, `pending` and `io-error` are QEMU's BLOCK_JOB_* events.
 */
export type JobWireEvent =
  | { id: string; type: 'status'; status: JobStatus; error?: SerializedBlockError }
  | { id: string; type: 'progress'; current: number; total: number }
  | { id: string; type: 'ready'; current: number; total: number }
  | { id: string; type: 'completed'; current: number; total: number; error?: string }
  | { id: string; type: 'cancelled'; current: number; total: number }
  | { id: string; type: 'pending' }
  | { id: string; type: 'io-error'; operation: 'read' | 'write'; action: 'report' | 'ignore' | 'stop' };

/**
 * Block jobs and the copy engine: the public surface of src/jobs.
 *
 * - {@link runCopy}: the one copier (block-status driven, bounded buffers, rate limit,
 *   progress, AbortSignal, error policy) that convert, commit, rebase and the worker use.
 * - {@link JobRegistry} / {@link Job}: QEMU's job state machine, verbs and events.
 * - Job drivers: {@link streamJob}, {@link commitJob} (active commit when top is the
 *   guest's node), {@link mirrorJob}, {@link backupJob}.
 */
export { runCopy, type CopyJob, type CopyEngineOptions, type CopyProgress, type CopyResult, type CopyErrorAction } from './copy-engine.js';
export { CopyError, type CopyOp } from './copy-error.js';
export type { CopyExtent } from './extent.js';
export { Job, JobTxn, JOB_SLICE_MS, type JobOptions, type Listener as JobListener } from './job.js';
export { JobRegistry, isWellFormedId, type CreateJobOptions } from './job-registry.js';
export { JOB_STATUSES, JOB_VERBS, acceptsVerb, canTransition, isCompletedStatus, isReadyStatus, type JobStatus, type JobVerb } from './job-status.js';
export type {
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
export { streamJob, STREAM_CHUNK, type StreamOptions } from './stream.js';
export { commitJob, COMMIT_BUFFER_SIZE, type CommitOptions } from './commit.js';
export { mirrorJob, DEFAULT_MIRROR_BUF_SIZE, type MirrorOptions, type MirrorSync } from './mirror.js';
export { JobLinks } from './job-links.js';
export { backupJob, BACKUP_CLUSTER_SIZE_DEFAULT, type BackupOptions, type BackupSync, type BitmapMode } from './backup.js';

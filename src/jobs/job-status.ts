/**
 * The states of a job and the commands (verbs) each state accepts, as QEMU's
 * job layer defines them (qapi JobStatus / JobVerb). The two tables below are
 * the whole state machine: {@link Job} asserts every transition against
 * {@link canTransition} and refuses a verb that {@link acceptsVerb} rejects,
 * with QEMU's message.
 */

/** Every state a job can be in, in QEMU's order. */
export const JOB_STATUSES = [
  'undefined',
  'created',
  'running',
  'paused',
  'ready',
  'standby',
  'waiting',
  'pending',
  'aborting',
  'concluded',
  'null',
] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** The commands a user can give a job. */
export const JOB_VERBS = ['cancel', 'pause', 'resume', 'set-speed', 'complete', 'finalize', 'dismiss'] as const;
export type JobVerb = (typeof JOB_VERBS)[number];

/**
 * Where each state may go next. `aborting` may be entered again (a
 * transaction abort meets a job that already failed on its own).
 */
const NEXT: Record<JobStatus, readonly JobStatus[]> = {
  undefined: ['created'],
  created: ['running', 'aborting', 'null'],
  running: ['paused', 'ready', 'waiting', 'aborting'],
  paused: ['running'],
  ready: ['standby', 'waiting', 'aborting'],
  standby: ['ready'],
  waiting: ['pending', 'aborting'],
  pending: ['aborting', 'concluded'],
  aborting: ['aborting', 'concluded'],
  concluded: ['null'],
  null: [],
};

/** In which states each verb is accepted. */
const ACCEPTED_IN: Record<JobVerb, readonly JobStatus[]> = {
  cancel: ['created', 'running', 'paused', 'ready', 'standby', 'waiting', 'pending'],
  pause: ['created', 'running', 'paused', 'ready', 'standby'],
  resume: ['created', 'running', 'paused', 'ready', 'standby'],
  'set-speed': ['created', 'running', 'paused', 'ready', 'standby'],
  complete: ['ready', 'standby'],
  finalize: ['pending'],
  dismiss: ['concluded'],
};

/** May a job in state `from` move to `to`? */
export function canTransition(from: JobStatus, to: JobStatus): boolean {
  return NEXT[from].includes(to);
}

/** Does a job in state `status` accept `verb`? */
export function acceptsVerb(verb: JobVerb, status: JobStatus): boolean {
  return ACCEPTED_IN[verb].includes(status);
}

/** Has the job's work finished (successfully or not), whatever is left of its finalisation? */
export function isCompletedStatus(status: JobStatus): boolean {
  return status === 'waiting' || status === 'pending' || status === 'aborting' || status === 'concluded' || status === 'null';
}

/** Is the job in sync and waiting for `complete` (mirror, active commit)? */
export function isReadyStatus(status: JobStatus): boolean {
  return status === 'ready' || status === 'standby';
}

/**
 * QEMU 7.2's transaction machinery (blockdev.c's qmp_transaction): each
 * action prepares in turn; when one fails, those prepared so far abort in
 * reverse order, else all commit in order; every action then cleans up.
 * The standalone commands that QEMU runs as one-action transactions
 * (blockdev-snapshot, blockdev-snapshot-sync, blockdev-snapshot-internal-sync,
 * blockdev-backup) go through here too.
 */
import type { BlockGraph } from '../core/graph.js';
import { drainPulse } from '../core/drain.js';
import { JobTxn } from '../jobs/job.js';
import { genericError } from './errors.js';

/** How the jobs started by a transaction end: each alone, or all together. */
export type CompletionMode = 'individual' | 'grouped';

/** One action of a transaction; only prepare may fail. */
export interface TxnAction {
  prepare(): Promise<void> | void;
  commit?(): Promise<void> | void;
  abort?(): Promise<void> | void;
  clean?(): Promise<void> | void;
}

/** What an action sees of its transaction. */
export interface TxnContext {
  /** The action's kind as the QMP union names it (for messages). */
  kind: string;
  completionMode: CompletionMode;
  /** The job transaction of a grouped transaction (undefined: each job its own). */
  jobTxn: JobTxn | undefined;
}

/** QEMU's action_check_completion_mode: actions that start no job take only 'individual'. */
export function requireIndividual(ctx: TxnContext): void {
  if (ctx.completionMode !== 'individual') {
    throw genericError(`Action '${ctx.kind}' does not support Transaction property completion-mode = ${ctx.completionMode}`);
  }
}

/** An action to be made once its context exists. */
export type ActionFactory = (ctx: TxnContext) => TxnAction;

/**
 * Runs the actions all-or-nothing. Failures of commit, abort or clean are
 * not expected (QEMU asserts on them); they are thrown after the rest ran.
 * With `graph`, every node of it is drained first (as QEMU's).
 */
export async function runTransaction(
  actions: ReadonlyArray<{ kind: string; make: ActionFactory }>,
  completionMode: CompletionMode = 'individual',
  graph?: BlockGraph,
): Promise<void> {
  // QEMU's qmp_transaction drains every node first: each job pauses and resumes once.
  if (graph) await drainPulse(graph.listNodes());
  const jobTxn = completionMode === 'grouped' ? new JobTxn() : undefined;
  const prepared: TxnAction[] = [];
  let failure: unknown;
  let failed = false;
  for (const a of actions) {
    const action = a.make({ kind: a.kind, completionMode, jobTxn });
    prepared.push(action);
    try {
      await action.prepare();
    } catch (e) {
      failure = e;
      failed = true;
      break;
    }
  }
  let late: unknown;
  const guard = async (step: (() => Promise<void> | void) | undefined) => {
    try {
      await step?.();
    } catch (e) {
      late ??= e;
    }
  };
  if (failed) {
    for (const action of [...prepared].reverse()) await guard(action.abort?.bind(action));
  } else {
    for (const action of prepared) await guard(action.commit?.bind(action));
  }
  for (const action of prepared) await guard(action.clean?.bind(action));
  if (failed) throw failure;
  if (late !== undefined) throw late;
}

/**
 * The job verbs and queries (QEMU 7.2's job-qmp.c and blockdev.c): job-*
 * (GenericError "Job not found"), block-job-* (DeviceNotActive "Block job
 * 'x' not found"), query-jobs and query-block-jobs, on the JobRegistry.
 */
import type { Job } from '../jobs/job.js';
import type { BlockQmp } from './block-qmp.js';
import type { QmpCommand } from './dispatcher.js';
import { genericError } from './errors.js';
import { m, struct } from './schema.js';

type Verb = (job: Job, args: Record<string, unknown>) => unknown;

const VERBS: Record<'pause' | 'resume' | 'cancel' | 'complete' | 'finalize' | 'dismiss', Verb> = {
  pause: (job) => job.pause(),
  resume: (job) => job.resume(),
  cancel: (job) => job.cancel(true),
  complete: (job) => job.complete(),
  finalize: (job) => job.finalize(),
  dismiss: (job) => job.dismiss(),
};

/** The job verb and query commands of `q`. */
export function jobVerbCommands(q: BlockQmp): QmpCommand[] {
  const commands: QmpCommand[] = [];
  for (const [verb, run] of Object.entries(VERBS)) {
    commands.push({ name: `job-${verb}`, args: struct(`job-${verb}`, [m('id', 'str')]), run: (args) => run(q.findJob(args.id as string), args) });
  }
  commands.push(
    {
      name: 'block-job-set-speed',
      args: struct('block-job-set-speed', [m('device', 'str'), m('speed', 'int')]),
      run: (args) => q.findBlockJob(args.device as string).setSpeed(args.speed as number),
    },
    {
      name: 'block-job-cancel',
      args: struct('block-job-cancel', [m('device', 'str'), m('*force', 'bool')]),
      run: (args) => {
        const device = args.device as string;
        const job = q.findBlockJob(device);
        const force = args.force === true;
        if (job.userPausedNow && !force) throw genericError(`The block job for device '${device}' is currently paused`);
        job.cancel(force);
      },
    },
    {
      name: 'block-job-pause',
      args: struct('block-job-pause', [m('device', 'str')]),
      run: (args) => q.findBlockJob(args.device as string).pause(),
    },
    {
      name: 'block-job-resume',
      args: struct('block-job-resume', [m('device', 'str')]),
      run: (args) => q.findBlockJob(args.device as string).resume(),
    },
    {
      name: 'block-job-complete',
      args: struct('block-job-complete', [m('device', 'str')]),
      run: (args) => q.findBlockJob(args.device as string).complete(),
    },
    {
      name: 'block-job-finalize',
      args: struct('block-job-finalize', [m('id', 'str')]),
      run: (args) => q.findBlockJob(args.id as string).finalize(),
    },
    {
      name: 'block-job-dismiss',
      args: struct('block-job-dismiss', [m('id', 'str')]),
      run: (args) => q.findBlockJob(args.id as string).dismiss(),
    },
    // QEMU keeps its jobs newest first.
    { name: 'query-jobs', args: null, run: () => q.jobs.list().reverse().filter((j) => j.id !== undefined).map((j) => j.info()) },
    { name: 'query-block-jobs', args: null, run: () => q.jobs.list().reverse().filter((j) => j.id !== undefined && j.isBlockJob).map((j) => j.blockInfo()) },
  );
  return commands;
}

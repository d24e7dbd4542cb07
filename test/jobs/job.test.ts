/**
 * The job state machine against QEMU's rules (job.c / blockjob.c semantics,
 * iotests 219 and 141's verb checks): transitions and events, the verb table,
 * pause / resume, ready / standby / complete, soft and forced cancel, manual
 * finalize / dismiss, transactions, error policies and the speed limit. All on
 * virtual time: nothing here waits on the wall clock.
 */
import { describe, expect, it } from 'vitest';
import { BlockError } from '../../src/core/errors.js';
import { Job, JobTxn } from '../../src/jobs/job.js';
import { JobRegistry } from '../../src/jobs/job-registry.js';
import { JOB_STATUSES, JOB_VERBS, acceptsVerb, canTransition, type JobStatus } from '../../src/jobs/job-status.js';
import type { JobControl, JobDriver, JobEvent, OnErrorPolicy } from '../../src/jobs/job-types.js';
import { VirtualTimers } from './virtual-timers.js';

const MiB = 1024 * 1024;

interface CopyDriverOptions {
  chunks?: number;
  chunk?: number;
  /** Go ready after the copy and wait for complete / cancel (a mirror). */
  readyMode?: boolean;
  /** Throw at this chunk. */
  failAt?: number;
  prepareFails?: boolean;
  log?: string[];
  name?: string;
}

/** A job that "copies" chunks, honouring pause points, the rate limit and cancel. */
function copyDriver(o: CopyDriverOptions = {}): JobDriver & { completedAt?: number; chunksDone: number } {
  const chunks = o.chunks ?? 10;
  const chunk = o.chunk ?? MiB;
  const log = o.log ?? [];
  const name = o.name ?? 'job';
  let shouldComplete = false;
  const driver = {
    type: (o.readyMode ? 'mirror' : 'stream') as 'mirror' | 'stream',
    chunksDone: 0,
    async run(ctl: JobControl): Promise<void> {
      ctl.progressSetRemaining(chunks * chunk);
      for (let i = 0; i < chunks; i++) {
        if (ctl.isCancelled()) return;
        if (i === o.failAt) throw new BlockError('EIO', 'Input/output error');
        ctl.progressUpdate(chunk);
        driver.chunksDone++;
        await ctl.ratelimit(chunk);
      }
      if (!o.readyMode) return;
      ctl.transitionToReady();
      while (!shouldComplete && !ctl.cancelRequested()) await ctl.yield();
      log.push(`${name}:${shouldComplete ? 'pivot' : 'no-pivot'}`);
    },
    async prepare(): Promise<void> {
      log.push(`${name}:prepare`);
      if (o.prepareFails) throw new BlockError('EIO', 'prepare failed');
    },
    commit(): void {
      log.push(`${name}:commit`);
    },
    abort(): void {
      log.push(`${name}:abort`);
    },
    clean(): void {
      log.push(`${name}:clean`);
    },
    complete: o.readyMode
      ? (): void => {
          shouldComplete = true;
        }
      : undefined,
    cancel: o.readyMode ? (force: boolean): boolean => force : undefined,
  };
  return driver;
}

function setup(): { timers: VirtualTimers; reg: JobRegistry; events: JobEvent[] } {
  const timers = new VirtualTimers();
  const reg = new JobRegistry(timers);
  const events: JobEvent[] = [];
  reg.on((e) => events.push(e));
  return { timers, reg, events };
}

const statuses = (events: JobEvent[], id: string): string[] =>
  events.filter((e) => e.event === 'JOB_STATUS_CHANGE' && e.data.id === id).map((e) => (e.data as { status: JobStatus }).status);

function expectRefused(fn: () => unknown, message: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(BlockError);
  expect((caught as BlockError).text).toBe(message);
}

describe('job state machine tables', () => {
  it('allows exactly the transitions QEMU allows', () => {
    const allowed = JOB_STATUSES.flatMap((from) => JOB_STATUSES.filter((to) => canTransition(from, to)).map((to) => `${from}>${to}`));
    expect(allowed.length).toBe(20);
    for (const t of ['created>running', 'running>ready', 'ready>standby', 'standby>ready', 'running>waiting', 'waiting>pending', 'pending>concluded', 'concluded>null', 'aborting>aborting', 'created>null']) {
      expect(allowed).toContain(t);
    }
    for (const t of ['paused>ready', 'standby>running', 'pending>running', 'concluded>running', 'null>created']) {
      expect(allowed).not.toContain(t);
    }
  });

  it('accepts verbs only in their states', () => {
    expect(acceptsVerb('complete', 'ready')).toBe(true);
    expect(acceptsVerb('complete', 'standby')).toBe(true);
    expect(acceptsVerb('complete', 'running')).toBe(false);
    expect(acceptsVerb('finalize', 'pending')).toBe(true);
    expect(acceptsVerb('dismiss', 'concluded')).toBe(true);
    expect(acceptsVerb('cancel', 'aborting')).toBe(false);
    expect(acceptsVerb('cancel', 'pending')).toBe(true);
    expect(JOB_VERBS.filter((v) => acceptsVerb(v, 'null'))).toEqual([]);
  });
});

describe('a job', () => {
  it('runs created → running → waiting → pending → concluded → null with QEMU events', async () => {
    const { timers, reg, events } = setup();
    const job = reg.create(copyDriver({ chunks: 4 }), { id: 'j0' });
    expect(job.status).toBe('created');
    job.start();
    expect(await timers.runUntil(() => job.status === 'null')).toBe(true);
    expect(statuses(events, 'j0')).toEqual(['created', 'running', 'waiting', 'pending', 'concluded', 'null']);
    const done = events.find((e) => e.event === 'BLOCK_JOB_COMPLETED');
    expect(done?.data).toEqual({ type: 'stream', device: 'j0', len: 4 * MiB, offset: 4 * MiB, speed: 0 });
    expect(reg.get('j0')).toBeUndefined();
    await job.settled();
  });

  it('refuses verbs a state does not accept, with QEMU message', async () => {
    const { timers, reg } = setup();
    const job = reg.create(copyDriver(), { id: 'j1', autoDismiss: false });
    expectRefused(() => job.complete(), "Job 'j1' in state 'created' cannot accept command verb 'complete'");
    expectRefused(() => job.dismiss(), "Job 'j1' in state 'created' cannot accept command verb 'dismiss'");
    await expect(job.finalize()).rejects.toThrow("Job 'j1' in state 'created' cannot accept command verb 'finalize'");
    job.start();
    expect(await timers.runUntil(() => job.status === 'concluded')).toBe(true);
    expectRefused(() => job.cancel(), "Job 'j1' in state 'concluded' cannot accept command verb 'cancel'");
    expectRefused(() => job.pause(), "Job 'j1' in state 'concluded' cannot accept command verb 'pause'");
    expectRefused(() => job.setSpeed(1), "Job 'j1' in state 'concluded' cannot accept command verb 'set-speed'");
    job.dismiss();
    expect(job.status).toBe('null');
  });

  it('pauses at a pause point and resumes; refuses double pause and resume of a running job', async () => {
    const { timers, reg, events } = setup();
    const driver = copyDriver({ chunks: 10 });
    const job = reg.create(driver, { id: 'p', speed: 10 * MiB });
    expectRefused(() => job.resume(), "Can't resume a job that was not paused");
    job.start();
    await timers.runUntil(() => driver.chunksDone >= 3);
    job.pause();
    expectRefused(() => job.pause(), 'Job is already paused');
    expect(await timers.runUntil(() => job.status === 'paused')).toBe(true);
    const done = driver.chunksDone;
    expect(job.blockInfo().paused).toBe(true);
    await timers.runUntil(() => false, 20);
    expect(driver.chunksDone).toBe(done);
    job.resume();
    expect(await timers.runUntil(() => job.status === 'null')).toBe(true);
    expect(driver.chunksDone).toBe(10);
    expect(statuses(events, 'p')).toEqual(['created', 'running', 'paused', 'running', 'waiting', 'pending', 'concluded', 'null']);
  });

  it('a job paused before it starts stays paused until resumed', async () => {
    const { timers, reg } = setup();
    const driver = copyDriver({ chunks: 2 });
    const job = reg.create(driver, { id: 'early' });
    job.pause();
    job.start();
    await timers.runUntil(() => false, 5);
    expect(job.status).toBe('paused');
    expect(driver.chunksDone).toBe(0);
    job.resume();
    expect(await timers.runUntil(() => job.status === 'null')).toBe(true);
  });

  it('internal pauses (drain) nest with a user pause', async () => {
    const { timers, reg } = setup();
    const driver = copyDriver({ chunks: 20 });
    const job = reg.create(driver, { id: 'd', speed: MiB });
    job.start();
    await timers.runUntil(() => driver.chunksDone >= 1);
    job.pauseInternal();
    job.pause();
    expect(await timers.runUntil(() => job.status === 'paused')).toBe(true);
    job.resumeInternal();
    await timers.runUntil(() => false, 5);
    expect(job.status).toBe('paused');
    job.resume();
    expect(await timers.runUntil(() => job.status === 'null')).toBe(true);
  });

  it('goes ready, pauses into standby, and completes on request (mirror)', async () => {
    const { timers, reg, events } = setup();
    const log: string[] = [];
    const job = reg.create(copyDriver({ chunks: 3, readyMode: true, log, name: 'm' }), { id: 'm' });
    expectRefused(() => job.complete(), "Job 'm' in state 'created' cannot accept command verb 'complete'");
    job.start();
    expect(await timers.runUntil(() => job.status === 'ready')).toBe(true);
    expect(events.some((e) => e.event === 'BLOCK_JOB_READY')).toBe(true);
    expect(job.blockInfo().ready).toBe(true);
    job.pause();
    expect(await timers.runUntil(() => job.status === 'standby')).toBe(true);
    job.resume();
    expect(await timers.runUntil(() => job.status === 'ready')).toBe(true);
    job.complete();
    expect(await timers.runUntil(() => job.status === 'null')).toBe(true);
    expect(log).toEqual(['m:pivot', 'm:prepare', 'm:commit', 'm:clean']);
    expect(statuses(events, 'm')).toEqual(['created', 'running', 'ready', 'standby', 'ready', 'waiting', 'pending', 'concluded', 'null']);
  });

  it('a soft cancel of a ready mirror completes without pivot; a forced one cancels', async () => {
    for (const force of [false, true]) {
      const { timers, reg, events } = setup();
      const log: string[] = [];
      const job = reg.create(copyDriver({ chunks: 2, readyMode: true, log, name: 'c' }), { id: 'c' });
      job.start();
      await timers.runUntil(() => job.status === 'ready');
      job.cancel(force);
      expectRefused(() => job.complete(), "The active block job 'c' cannot be completed");
      expect(await timers.runUntil(() => job.status === 'null')).toBe(true);
      const last = events.filter((e) => e.event.startsWith('BLOCK_JOB_')).at(-1)!;
      if (force) {
        expect(last.event).toBe('BLOCK_JOB_CANCELLED');
        expect(log).toEqual(['c:no-pivot', 'c:abort', 'c:clean']);
        await expect(job.settled()).rejects.toMatchObject({ code: 'ECANCELED' });
      } else {
        expect(last.event).toBe('BLOCK_JOB_COMPLETED');
        expect(log).toEqual(['c:no-pivot', 'c:prepare', 'c:commit', 'c:clean']);
        await job.settled();
      }
    }
  });

  it('cancel before start concludes at once; cancel of a concluded job dismisses it', async () => {
    const { timers, reg, events } = setup();
    const log: string[] = [];
    const job = reg.create(copyDriver({ log }), { id: 'x' });
    job.cancel();
    await timers.settle();
    expect(job.status).toBe('null');
    expect(log).toEqual(['job:abort', 'job:clean']);
    // No CANCELLED event for a job that never started.
    expect(events.filter((e) => e.event === 'BLOCK_JOB_CANCELLED')).toEqual([]);
    const kept = reg.create(copyDriver({ chunks: 1 }), { id: 'y', autoDismiss: false });
    kept.start();
    await timers.runUntil(() => kept.status === 'concluded');
    expect(reg.get('y')).toBe(kept);
    expectRefused(() => kept.cancel(), "Job 'y' in state 'concluded' cannot accept command verb 'cancel'");
    kept.dismiss();
    expect(reg.get('y')).toBeUndefined();
  });

  it('with auto-finalize off, waits in pending (BLOCK_JOB_PENDING) until finalize', async () => {
    const { timers, reg, events } = setup();
    const log: string[] = [];
    const job = reg.create(copyDriver({ chunks: 1, log }), { id: 'f', autoFinalize: false, autoDismiss: false });
    job.start();
    expect(await timers.runUntil(() => job.status === 'pending')).toBe(true);
    expect(events.some((e) => e.event === 'BLOCK_JOB_PENDING')).toBe(true);
    expect(log).toEqual([]);
    await job.finalize();
    expect(job.status).toBe('concluded');
    expect(log).toEqual(['job:prepare', 'job:commit', 'job:clean']);
    job.dismiss();
    expect(statuses(events, 'f')).toEqual(['created', 'running', 'waiting', 'pending', 'concluded', 'null']);
  });

  it('a failing run aborts with the error in query-jobs and BLOCK_JOB_COMPLETED', async () => {
    const { timers, reg, events } = setup();
    const log: string[] = [];
    const job = reg.create(copyDriver({ chunks: 5, failAt: 2, log }), { id: 'e', autoDismiss: false });
    job.start();
    expect(await timers.runUntil(() => job.status === 'concluded')).toBe(true);
    expect(job.info()).toEqual({ id: 'e', type: 'stream', status: 'concluded', 'current-progress': 2 * MiB, 'total-progress': 5 * MiB, error: 'Input/output error' });
    expect(log).toEqual(['job:abort', 'job:clean']);
    const completed = events.find((e) => e.event === 'BLOCK_JOB_COMPLETED');
    expect(completed?.data).toMatchObject({ error: 'Input/output error' });
    expect(statuses(events, 'e')).toEqual(['created', 'running', 'aborting', 'concluded']);
    await expect(job.settled()).rejects.toMatchObject({ code: 'EIO' });
  });

  it('waiting for a state the job never reaches rejects once it ended (no hang)', async () => {
    const { timers, reg } = setup();
    const failing = reg.create(copyDriver({ chunks: 5, failAt: 1, readyMode: true }), { id: 'w1', autoDismiss: false });
    const ready = failing.waitFor((s) => s === 'ready');
    ready.catch(() => undefined);
    const ended = failing.waitFor((s) => s === 'null');
    failing.start();
    expect(await timers.runUntil(() => failing.status === 'concluded')).toBe(true);
    await expect(ready).rejects.toMatchObject({ code: 'EIO' });
    // 'null' can still follow 'concluded': that wait goes on, and ends with the dismiss.
    failing.dismiss();
    await expect(ended).resolves.toBeUndefined();
    const cancelled = reg.create(copyDriver({ chunks: 50 }), { id: 'w2' });
    const ready2 = cancelled.waitFor((s) => s === 'ready');
    ready2.catch(() => undefined);
    cancelled.start();
    cancelled.cancel();
    expect(await timers.runUntil(() => cancelled.status === 'null')).toBe(true);
    await expect(ready2).rejects.toBeInstanceOf(BlockError);
  });
});

describe('transactions', () => {
  it('jobs of a transaction prepare together, then commit together', async () => {
    const { timers, reg } = setup();
    const log: string[] = [];
    const txn = new JobTxn();
    const a = reg.create(copyDriver({ chunks: 1, log, name: 'a' }), { id: 'a', txn });
    const b = reg.create(copyDriver({ chunks: 6, log, name: 'b' }), { id: 'b', txn, speed: MiB });
    a.start();
    b.start();
    expect(await timers.runUntil(() => a.status === 'waiting')).toBe(true);
    expect(log).toEqual([]);
    expect(await timers.runUntil(() => a.status === 'null' && b.status === 'null')).toBe(true);
    expect(log).toEqual(['a:prepare', 'b:prepare', 'a:commit', 'a:clean', 'b:commit', 'b:clean']);
  });

  it('one failing job cancels and aborts the others', async () => {
    const { timers, reg, events } = setup();
    const log: string[] = [];
    const txn = new JobTxn();
    const a = reg.create(copyDriver({ chunks: 1, log, name: 'a' }), { id: 'a', txn });
    const b = reg.create(copyDriver({ chunks: 50, log, name: 'b' }), { id: 'b', txn, speed: MiB });
    const c = reg.create(copyDriver({ chunks: 5, failAt: 3, log, name: 'c' }), { id: 'c', txn, speed: 2 * MiB });
    for (const j of [a, b, c]) j.start();
    expect(await timers.runUntil(() => [a, b, c].every((j) => j.status === 'null'))).toBe(true);
    expect(log.filter((l) => l.endsWith('commit') || l.endsWith('prepare'))).toEqual([]);
    expect(log.filter((l) => l.endsWith('abort')).sort()).toEqual(['a:abort', 'b:abort', 'c:abort']);
    expect(statuses(events, 'a')).toEqual(['created', 'running', 'waiting', 'aborting', 'concluded', 'null']);
    expect(events.filter((e) => e.event === 'BLOCK_JOB_CANCELLED').map((e) => (e.data as { device: string }).device).sort()).toEqual(['a', 'b']);
    expect(b.error?.code).toBe('ECANCELED');
    expect(c.error?.code).toBe('EIO');
  });

  it('a failing prepare aborts the whole transaction', async () => {
    const { timers, reg } = setup();
    const log: string[] = [];
    const txn = new JobTxn();
    const a = reg.create(copyDriver({ chunks: 1, log, name: 'a' }), { id: 'a', txn });
    const b = reg.create(copyDriver({ chunks: 1, log, name: 'b', prepareFails: true }), { id: 'b', txn });
    a.start();
    b.start();
    expect(await timers.runUntil(() => a.status === 'null' && b.status === 'null')).toBe(true);
    expect(log).toEqual(['a:prepare', 'b:prepare', 'a:abort', 'a:clean', 'b:abort', 'b:clean']);
    expect(b.error?.text).toBe('prepare failed');
  });
});

describe('error policies', () => {
  const cases: Array<[OnErrorPolicy, 'EIO' | 'ENOSPC', string]> = [
    ['report', 'EIO', 'report'],
    ['report', 'ENOSPC', 'report'],
    ['ignore', 'EIO', 'ignore'],
    ['stop', 'EIO', 'stop'],
    ['enospc', 'EIO', 'report'],
    ['enospc', 'ENOSPC', 'stop'],
    ['auto', 'ENOSPC', 'stop'],
    ['auto', 'EIO', 'report'],
  ];
  for (const [policy, code, action] of cases) {
    it(`${policy} on ${code} → ${action}`, async () => {
      const { timers, reg, events } = setup();
      let decided = '';
      const driver: JobDriver = {
        type: 'backup',
        async run(ctl) {
          decided = ctl.errorAction(policy, 'write', new BlockError(code, 'x'));
          await ctl.pausePoint();
        },
      };
      const job = reg.create(driver, { id: 'ep', autoDismiss: false });
      job.start();
      await timers.settle();
      expect(decided).toBe(action);
      expect(events.find((e) => e.event === 'BLOCK_JOB_ERROR')?.data).toEqual({ device: 'ep', operation: 'write', action });
      if (action === 'stop') {
        expect(job.status).toBe('paused');
        expect(job.blockInfo()['io-status']).toBe(code === 'ENOSPC' ? 'nospace' : 'failed');
        job.resume();
        expect(job.blockInfo()['io-status']).toBe('ok');
      }
      expect(await timers.runUntil(() => job.status === 'concluded')).toBe(true);
    });
  }
});

describe('speed', () => {
  it('a job at 10 MiB/s copies 50 MiB in 5 s ± 10 % of virtual time', async () => {
    const { timers, reg } = setup();
    const job = reg.create(copyDriver({ chunks: 200, chunk: 256 * 1024 }), { id: 's', speed: 10 * MiB });
    const t0 = timers.now();
    job.start();
    expect(await timers.runUntil(() => job.status === 'null')).toBe(true);
    const seconds = (timers.now() - t0) / 1000;
    expect(seconds).toBeGreaterThan(4.5);
    expect(seconds).toBeLessThan(5.5);
  });

  it('set-speed changes the rate mid-job and refuses negative values', async () => {
    const { timers, reg } = setup();
    const driver = copyDriver({ chunks: 40, chunk: MiB });
    const job = reg.create(driver, { id: 'v', speed: MiB });
    expectRefused(() => job.setSpeed(-1), "Parameter 'speed' expects a non-negative value");
    job.start();
    await timers.runUntil(() => driver.chunksDone >= 10);
    const t10 = timers.now();
    job.setSpeed(10 * MiB);
    expect(job.blockInfo().speed).toBe(10 * MiB);
    await timers.runUntil(() => job.status === 'null');
    // 30 MiB at 10 MiB/s: about 3 s, not the 30 s the old speed would take.
    expect((timers.now() - t10) / 1000).toBeLessThan(4);
  });
});

describe('registry', () => {
  it('checks ids as QEMU does', () => {
    const { reg } = setup();
    expectRefused(() => reg.create(copyDriver(), {}), 'An explicit job ID is required');
    expectRefused(() => reg.create(copyDriver(), { id: '1abc' }), "Invalid job ID '1abc'");
    expectRefused(() => reg.create(copyDriver(), { id: 'a b' }), "Invalid job ID 'a b'");
    expectRefused(() => reg.create(copyDriver(), { id: 'x', internal: true }), 'Cannot specify job ID for internal job');
    reg.create(copyDriver(), { id: 'ok-1.a_b' });
    expectRefused(() => reg.create(copyDriver(), { id: 'ok-1.a_b' }), "Job ID 'ok-1.a_b' already in use");
    const internal = reg.create(copyDriver(), { internal: true });
    expect(internal).toBeInstanceOf(Job);
  });

  it('cancelAll stops running, paused and created jobs', async () => {
    const { timers, reg } = setup();
    const running = reg.create(copyDriver({ chunks: 100 }), { id: 'r', speed: MiB });
    const paused = reg.create(copyDriver({ chunks: 100 }), { id: 'p' });
    reg.create(copyDriver(), { id: 'c' });
    running.start();
    paused.pause();
    paused.start();
    await timers.runUntil(() => paused.status === 'paused');
    const all = reg.cancelAll();
    expect(await timers.runUntil(() => reg.list().length === 0)).toBe(true);
    await all;
    expect(running.error?.code).toBe('ECANCELED');
  });
});

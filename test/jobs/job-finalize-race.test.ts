/**
 * A cancel that arrives while a job is finalising (its driver's commit is
 * still running) must not finalise it a second time: before the fix the
 * job went concluded → null and then threw "no transition from 'null' to
 * 'concluded'" as an unhandled rejection (seen when a worker shut down as a
 * short stream finished).
 */
import { describe, expect, it } from 'vitest';
import { JobRegistry } from '../../src/jobs/job-registry.js';
import type { JobDriver, JobEvent } from '../../src/jobs/job-types.js';

function slowCommitDriver(log: string[]): JobDriver & { release(): void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  return {
    type: 'stream',
    async run(): Promise<void> {},
    async commit(): Promise<void> {
      log.push('commit');
      await gate;
    },
    abort(): void {
      log.push('abort');
    },
    clean(): void {
      log.push('clean');
    },
    release: () => release(),
  };
}

describe('job finalisation', () => {
  for (const via of ['cancel', 'cancelAll'] as const) {
    it(`a ${via} during the driver's commit leaves one finalisation: committed, concluded once`, async () => {
      const reg = new JobRegistry();
      const events: JobEvent[] = [];
      reg.on((e) => events.push(e));
      const log: string[] = [];
      const driver = slowCommitDriver(log);
      const job = reg.create(driver, { id: 'j' });
      job.start();
      await job.waitFor((s) => s === 'pending');
      for (let i = 0; i < 5 && log.length === 0; i++) await Promise.resolve();
      expect(log).toEqual(['commit']);
      const done = via === 'cancel' ? (job.cancel(true), job.settled()) : reg.cancelAll();
      driver.release();
      await done;
      expect(log).toEqual(['commit', 'clean']);
      expect(job.status).toBe('null');
      expect(job.error).toBeUndefined();
      const statuses = events.filter((e) => e.event === 'JOB_STATUS_CHANGE').map((e) => (e.data as { status: string }).status);
      expect(statuses).toEqual(['created', 'running', 'waiting', 'pending', 'concluded', 'null']);
      expect(events.filter((e) => e.event === 'BLOCK_JOB_COMPLETED')).toHaveLength(1);
      expect(events.some((e) => e.event === 'BLOCK_JOB_CANCELLED')).toBe(false);
    });
  }
});

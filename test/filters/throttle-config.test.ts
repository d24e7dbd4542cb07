/**
 * QEMU's leaky bucket arithmetic (util/throttle.c) in throttle-config.ts:
 * how long a bucket makes the next request wait, how it leaks, how bursts
 * and iops-size are counted, and the checks of a set of limits. Times are
 * in nanoseconds, as in QEMU.
 */
import { describe, it, expect } from 'vitest';
import { Bucket, ThrottleConfig, ThrottleState, bucketWait, leakBucket, type LeakyBucket } from '../../src/filters/throttle-config.js';

const bucket = (b: Partial<LeakyBucket>): LeakyBucket => ({ avg: 0, max: 0, level: 0, burstLevel: 0, burstLength: 1, ...b });
const S = 1e9;

describe('leaky bucket', () => {
  it('without a burst rate, a tenth of a second of the rate goes before requests wait', () => {
    expect(bucketWait(bucket({ avg: 1000, level: 100 }))).toBe(0);
    // 50 units over the bucket's 100 leak at 1000/s in 50 ms.
    expect(bucketWait(bucket({ avg: 1000, level: 150 }))).toBe(0.05 * S);
    expect(bucketWait(bucket({ avg: 0, level: 1e9 }))).toBe(0);
  });

  it('with a burst rate, the bucket holds max × length and the burst level leaks at max', () => {
    const b = bucket({ avg: 100, max: 1000, burstLength: 5, level: 4000, burstLevel: 150 });
    // Main bucket (5000) not full; the burst level is 50 over max / 10 = 100: 50 ms at 1000/s.
    expect(bucketWait(b)).toBe(0.05 * S);
    b.level = 5100;
    // The main bucket is full: 100 units at the average rate, one second.
    expect(bucketWait(b)).toBe(1 * S);
  });

  it('leaks at the average rate and the burst level at the burst rate, never below zero', () => {
    const b = bucket({ avg: 100, max: 1000, burstLength: 2, level: 500, burstLevel: 500 });
    leakBucket(b, 0.1 * S);
    expect(b.level).toBeCloseTo(490);
    expect(b.burstLevel).toBeCloseTo(400);
    leakBucket(b, 10 * S);
    expect(b.level).toBe(0);
    expect(b.burstLevel).toBe(0);
  });

  it('charges bytes and operations to the total and the direction buckets; iops-size splits large requests', () => {
    const cfg = ThrottleConfig.fromLimits({ 'bps-read': 1000, 'iops-total': 10, 'iops-size': 4096 });
    const st = new ThrottleState(cfg, 0);
    st.account(false, 16384);
    st.account(true, 1000);
    const levels = st.config.buckets.map((b) => b.level);
    expect(levels[Bucket.BPS_TOTAL]).toBe(17384);
    expect(levels[Bucket.BPS_READ]).toBe(16384);
    expect(levels[Bucket.BPS_WRITE]).toBe(1000);
    // 16 KiB is four 4 KiB operations; the 1000-byte write is one.
    expect(levels[Bucket.OPS_TOTAL]).toBe(5);
    expect(levels[Bucket.OPS_READ]).toBe(4);
    expect(levels[Bucket.OPS_WRITE]).toBe(1);
    // Writes are not held by the read limit; reads are (16384 - 100 bytes over, at 1000 B/s).
    expect(st.waitFor(true, 0)).toBe(Math.trunc(((5 - 1) * S) / 10));
    expect(st.waitFor(false, 0)).toBe(Math.trunc(((16384 - 100) * S) / 1000));
  });

  it('a new config starts with empty buckets', () => {
    const st = new ThrottleState(ThrottleConfig.fromLimits({ 'bps-total': 10 }), 0);
    st.account(true, 100);
    expect(st.waitFor(true, 0)).toBeGreaterThan(0);
    st.configure(ThrottleConfig.fromLimits({ 'bps-total': 20 }), 0);
    expect(st.waitFor(true, 0)).toBe(0);
  });
});

describe('limits checks (QEMU messages)', () => {
  const cases: Array<[string, Parameters<typeof ThrottleConfig.fromLimits>[0], string]> = [
    ['total with read', { 'bps-total': 1, 'bps-read': 1 }, 'bps/iops/max total values and read/write values cannot be used at the same time'],
    ['total max with write max', { 'iops-total': 1, 'iops-total-max': 2, 'iops-write': 1, 'iops-write-max': 2 }, 'cannot be used at the same time'],
    ['iops-size alone', { 'iops-size': 512 }, 'iops size requires an iops value to be set'],
    ['above 1e15', { 'bps-write': 1e15 + 1 }, 'bps/iops/max values must be within [0, 1000000000000000]'],
    ['negative', { 'iops-read': -1 }, 'bps/iops/max values must be within [0, 1000000000000000]'],
    ['burst length 0', { 'bps-total': 1, 'bps-total-max-length': 0 }, 'the burst length cannot be 0'],
    ['burst length without max', { 'bps-total': 1, 'bps-total-max-length': 3 }, 'burst length set without burst rate'],
    ['burst too long', { 'bps-total': 1, 'bps-total-max': 1e12, 'bps-total-max-length': 1001 }, 'burst length too high for this burst rate'],
    ['max without avg', { 'iops-write-max': 5 }, 'bps_max/iops_max require corresponding bps/iops values'],
    ['max below avg', { 'bps-read': 10, 'bps-read-max': 5 }, 'bps_max/iops_max cannot be lower than bps/iops'],
    ['length above UINT_MAX', { 'bps-total-max-length': 2 ** 32 }, 'bps-total-max-length value must be in the range [0, 4294967295]'],
  ];
  for (const [name, limits, message] of cases) {
    it(`refuses ${name}`, () => {
      expect(() => ThrottleConfig.fromLimits(limits)).toThrow(message);
    });
  }

  it('takes coherent limits and answers them back', () => {
    const cfg = ThrottleConfig.fromLimits({ 'bps-total': 100, 'bps-total-max': 1000, 'bps-total-max-length': 5, 'iops-read': 7, 'iops-size': 4096 });
    expect(cfg.enabled()).toBe(true);
    expect(cfg.toLimits()).toMatchObject({ 'bps-total': 100, 'bps-total-max': 1000, 'bps-total-max-length': 5, 'iops-read': 7, 'iops-size': 4096, 'bps-read': 0, 'iops-write-max-length': 1 });
    expect(new ThrottleConfig().enabled()).toBe(false);
  });
});

/**
 * I/O limits as QEMU 7.2 keeps them (include/qemu/throttle.h, util/throttle.c):
 * six leaky buckets (bytes and operations; total, read, write), each with an
 * average rate, an optional burst rate and a burst length in seconds, plus the
 * size that counts as one operation. {@link ThrottleConfig} holds and checks
 * the limits; {@link ThrottleState} is the accounting: buckets fill with every
 * request, leak at their rate, and say how long the next request must wait.
 *
 * How a bucket works: its level leaks at `avg` units per second. Requests go
 * through while the level is at most the bucket size: `avg / 10` without a
 * burst rate (a tenth of a second of slack), `max * burstLength` with one.
 * With a burst length above one second a second level leaks at `max`, so a
 * burst runs at `max` for at most `burstLength` seconds before the rate
 * falls back to `avg`.
 */
import { einval } from '../core/errors.js';

/** The six buckets, in QEMU's order. */
export const Bucket = {
  BPS_TOTAL: 0,
  BPS_READ: 1,
  BPS_WRITE: 2,
  OPS_TOTAL: 3,
  OPS_READ: 4,
  OPS_WRITE: 5,
} as const;
export type Bucket = (typeof Bucket)[keyof typeof Bucket];
const BUCKET_COUNT = 6;

/** The largest rate QEMU takes (THROTTLE_VALUE_MAX). */
export const THROTTLE_VALUE_MAX = 1_000_000_000_000_000;
/** The largest burst length (C's UINT_MAX). */
export const BURST_LENGTH_MAX = 4_294_967_295;

/** One leaky bucket: its settings and its two levels. */
export interface LeakyBucket {
  /** Average rate, units per second (0: no limit). */
  avg: number;
  /** Burst rate, units per second (0: no burst rate). */
  max: number;
  /** Units done and not yet leaked. */
  level: number;
  /** Units done and not yet leaked at the burst rate (burst length > 1 only). */
  burstLevel: number;
  /** Longest burst, in seconds (1 when not set). */
  burstLength: number;
}

/** QEMU's ThrottleLimits (the `limits` of a throttle-group), by QAPI name. */
export interface ThrottleLimits {
  'iops-total'?: number;
  'iops-total-max'?: number;
  'iops-total-max-length'?: number;
  'iops-read'?: number;
  'iops-read-max'?: number;
  'iops-read-max-length'?: number;
  'iops-write'?: number;
  'iops-write-max'?: number;
  'iops-write-max-length'?: number;
  'bps-total'?: number;
  'bps-total-max'?: number;
  'bps-total-max-length'?: number;
  'bps-read'?: number;
  'bps-read-max'?: number;
  'bps-read-max-length'?: number;
  'bps-write'?: number;
  'bps-write-max'?: number;
  'bps-write-max-length'?: number;
  'iops-size'?: number;
}
export type ThrottleLimitName = keyof ThrottleLimits;

/** What a limit sets: a bucket's rate, burst rate or burst length, or the operation size. */
export interface LimitField {
  name: ThrottleLimitName;
  kind: 'avg' | 'max' | 'burst-length' | 'iops-size';
  bucket: Bucket;
}

/** Every limit, in QEMU's schema order (the order QEMU checks their types in). */
export const LIMIT_FIELDS: readonly LimitField[] = (() => {
  const out: LimitField[] = [];
  const groups: Array<[string, Bucket]> = [
    ['iops-total', Bucket.OPS_TOTAL],
    ['iops-read', Bucket.OPS_READ],
    ['iops-write', Bucket.OPS_WRITE],
    ['bps-total', Bucket.BPS_TOTAL],
    ['bps-read', Bucket.BPS_READ],
    ['bps-write', Bucket.BPS_WRITE],
  ];
  for (const [base, bucket] of groups) {
    out.push({ name: base as ThrottleLimitName, kind: 'avg', bucket });
    out.push({ name: `${base}-max` as ThrottleLimitName, kind: 'max', bucket });
    out.push({ name: `${base}-max-length` as ThrottleLimitName, kind: 'burst-length', bucket });
  }
  out.push({ name: 'iops-size', kind: 'iops-size', bucket: Bucket.OPS_TOTAL });
  return out;
})();

/**
 * A C `uint64_t` holding a QAPI `int`: QEMU stores negative limits as huge
 * unsigned values (which then fail the range checks). Exact enough for the
 * comparisons made with it.
 */
function asUnsigned(v: number): number {
  return v < 0 ? v + 2 ** 64 : v;
}

/** A set of limits for the six buckets (QEMU's ThrottleConfig). */
export class ThrottleConfig {
  readonly buckets: LeakyBucket[];
  /** Bytes that count as one operation for the iops buckets (0: every request is one). */
  opSize = 0;

  /** No limits (every burst length 1). */
  constructor() {
    this.buckets = Array.from({ length: BUCKET_COUNT }, () => ({ avg: 0, max: 0, level: 0, burstLevel: 0, burstLength: 1 }));
  }

  /** A validated config from limits; throws EINVAL with QEMU's message. */
  static fromLimits(limits: ThrottleLimits): ThrottleConfig {
    const c = new ThrottleConfig();
    c.applyLimits(limits);
    return c;
  }

  /** A copy (levels included). */
  clone(): ThrottleConfig {
    const c = new ThrottleConfig();
    c.buckets.forEach((b, i) => Object.assign(b, this.buckets[i]));
    c.opSize = this.opSize;
    return c;
  }

  /**
   * Sets one limit as a throttle-group's `x-*` property does (no check of
   * the whole config; {@link validate} does that once all are set).
   */
  setField(field: LimitField, value: number, propertyName: string): void {
    if (value < 0) throw einval('Property values cannot be negative', {}, `${propertyName}=${value}`);
    if (field.kind === 'burst-length' && value > BURST_LENGTH_MAX) {
      // QEMU's wording, missing space included.
      throw einval(`${propertyName} value must be in therange [0, ${BURST_LENGTH_MAX}]`, {}, `got ${value}`);
    }
    this.store(field, value);
  }

  private store(field: LimitField, value: number): void {
    const b = this.buckets[field.bucket]!;
    if (field.kind === 'avg') b.avg = value;
    else if (field.kind === 'max') b.max = value;
    else if (field.kind === 'burst-length') b.burstLength = value;
    else this.opSize = value;
  }

  /**
   * Merges limits into this config and validates the result, as QEMU's
   * throttle_limits_to_config: rates first, then the burst lengths (each at
   * most {@link BURST_LENGTH_MAX}), then {@link validate}. Limits not given
   * keep their value.
   */
  applyLimits(limits: ThrottleLimits): void {
    const given = LIMIT_FIELDS.filter((f) => limits[f.name] !== undefined);
    for (const f of given) if (f.kind === 'avg' || f.kind === 'max') this.store(f, asUnsigned(limits[f.name]!));
    // QEMU checks the lengths bps first, then iops.
    const lengths = given.filter((f) => f.kind === 'burst-length').sort((a, b) => Number(a.name.startsWith('iops')) - Number(b.name.startsWith('iops')));
    for (const f of lengths) {
      const v = limits[f.name]!;
      // A signed comparison in QEMU: a negative length passes here and fails validate().
      if (v > BURST_LENGTH_MAX) throw einval(`${f.name} value must be in the range [0, ${BURST_LENGTH_MAX}]`, {}, `got ${v}`);
      this.store(f, asUnsigned(v));
    }
    if (limits['iops-size'] !== undefined) this.opSize = asUnsigned(limits['iops-size']);
    this.validate();
  }

  /** The limits as QEMU's query answers them (every field present). */
  toLimits(): Required<ThrottleLimits> {
    const out = {} as Record<ThrottleLimitName, number>;
    for (const f of LIMIT_FIELDS) {
      const b = this.buckets[f.bucket]!;
      out[f.name] = f.kind === 'avg' ? b.avg : f.kind === 'max' ? b.max : f.kind === 'burst-length' ? b.burstLength : this.opSize;
    }
    return out as Required<ThrottleLimits>;
  }

  /** Whether any bucket limits anything (QEMU's throttle_enabled). */
  enabled(): boolean {
    return this.buckets.some((b) => b.avg > 0);
  }

  /** Throws EINVAL with QEMU's message unless the limits are coherent (QEMU's throttle_is_valid). */
  validate(): void {
    const [bpsT, bpsR, bpsW, opsT, opsR, opsW] = this.buckets as [LeakyBucket, LeakyBucket, LeakyBucket, LeakyBucket, LeakyBucket, LeakyBucket];
    const mixes = (t: LeakyBucket, r: LeakyBucket, w: LeakyBucket, k: 'avg' | 'max') => t[k] > 0 && (r[k] > 0 || w[k] > 0);
    if (mixes(bpsT, bpsR, bpsW, 'avg') || mixes(opsT, opsR, opsW, 'avg') || mixes(bpsT, bpsR, bpsW, 'max') || mixes(opsT, opsR, opsW, 'max')) {
      throw einval('bps/iops/max total values and read/write values cannot be used at the same time');
    }
    if (this.opSize > 0 && !opsT.avg && !opsR.avg && !opsW.avg) {
      throw einval('iops size requires an iops value to be set', {}, `iops-size ${this.opSize}`);
    }
    this.buckets.forEach((b, i) => {
      const which = LIMIT_FIELDS.find((f) => f.bucket === i && f.kind === 'avg')!.name;
      if (b.avg > THROTTLE_VALUE_MAX || b.max > THROTTLE_VALUE_MAX) {
        throw einval(`bps/iops/max values must be within [0, ${THROTTLE_VALUE_MAX}]`, {}, `${which}: ${b.avg}, max ${b.max}`);
      }
      if (!b.burstLength) throw einval('the burst length cannot be 0', {}, `${which}-max-length`);
      if (b.burstLength > 1 && !b.max) throw einval('burst length set without burst rate', {}, `${which}-max-length ${b.burstLength}`);
      if (b.max && b.burstLength > Math.floor(THROTTLE_VALUE_MAX / b.max)) {
        throw einval('burst length too high for this burst rate', {}, `${which}-max ${b.max}, length ${b.burstLength}`);
      }
      if (b.max && !b.avg) throw einval('bps_max/iops_max require corresponding bps/iops values', {}, `${which}-max ${b.max}`);
      if (b.max && b.max < b.avg) throw einval('bps_max/iops_max cannot be lower than bps/iops', {}, `${which}-max ${b.max} < ${which} ${b.avg}`);
    });
  }
}

const NS_PER_SECOND = 1e9;

/** Nanoseconds until `extra` units have leaked at `rate` units per second (truncated as QEMU's int64). */
function waitNs(rate: number, extra: number): number {
  return Math.trunc((extra * NS_PER_SECOND) / rate);
}

/**
 * How long the next request must wait for one bucket, in nanoseconds (0: it
 * may go now), as QEMU's throttle_compute_wait.
 */
export function bucketWait(b: LeakyBucket): number {
  if (!b.avg) return 0;
  // Without a burst rate a tenth of a second of slack keeps short bursts from
  // being throttled one request at a time.
  const size = b.max ? b.max * b.burstLength : b.avg / 10;
  const extra = b.level - size;
  if (extra > 0) return waitNs(b.avg, extra);
  if (b.burstLength > 1) {
    const burstExtra = b.burstLevel - b.max / 10;
    if (burstExtra > 0) return waitNs(b.max, burstExtra);
  }
  return 0;
}

/** Lets a bucket leak for `deltaNs` nanoseconds (QEMU's throttle_leak_bucket). */
export function leakBucket(b: LeakyBucket, deltaNs: number): void {
  b.level = Math.max(b.level - (b.avg * deltaNs) / NS_PER_SECOND, 0);
  if (b.burstLength > 1) b.burstLevel = Math.max(b.burstLevel - (b.max * deltaNs) / NS_PER_SECOND, 0);
}

/** The buckets a read or a write is checked against and charged to. */
const CHECKED: readonly [readonly Bucket[], readonly Bucket[]] = [
  [Bucket.BPS_TOTAL, Bucket.OPS_TOTAL, Bucket.BPS_READ, Bucket.OPS_READ],
  [Bucket.BPS_TOTAL, Bucket.OPS_TOTAL, Bucket.BPS_WRITE, Bucket.OPS_WRITE],
];

/** A config in use: its buckets' levels and the time they last leaked (QEMU's ThrottleState). */
export class ThrottleState {
  private cfg: ThrottleConfig;
  private lastLeakNs: number;

  constructor(config: ThrottleConfig, nowNs: number) {
    this.cfg = config;
    this.lastLeakNs = nowNs;
    this.configure(config, nowNs);
  }

  /** The limits in force (levels are this state's). */
  get config(): ThrottleConfig {
    return this.cfg;
  }

  /** Takes new limits with empty buckets (QEMU's throttle_config). */
  configure(config: ThrottleConfig, nowNs: number): void {
    this.cfg = config.clone();
    for (const b of this.cfg.buckets) {
      b.level = 0;
      b.burstLevel = 0;
    }
    this.lastLeakNs = nowNs;
  }

  /** Leaks every bucket for the time since the last leak. */
  leak(nowNs: number): void {
    const delta = nowNs - this.lastLeakNs;
    this.lastLeakNs = nowNs;
    if (delta <= 0) return;
    for (const b of this.cfg.buckets) leakBucket(b, delta);
  }

  /**
   * Leaks up to `nowNs`, then answers how many nanoseconds a read or write
   * must wait before it may go (0: now), the longest wait of its buckets.
   */
  waitFor(isWrite: boolean, nowNs: number): number {
    this.leak(nowNs);
    let wait = 0;
    for (const i of CHECKED[isWrite ? 1 : 0]) wait = Math.max(wait, bucketWait(this.cfg.buckets[i]!));
    return wait;
  }

  /**
   * Charges a request of `bytes` that is going ahead: its bytes to the byte
   * buckets, its operations to the iops buckets (a request larger than the
   * operation size counts as `bytes / opSize` operations).
   */
  account(isWrite: boolean, bytes: number): void {
    const units = this.cfg.opSize && bytes > this.cfg.opSize ? bytes / this.cfg.opSize : 1;
    const [, , bps, ops] = CHECKED[isWrite ? 1 : 0];
    for (const [i, n] of [
      [Bucket.BPS_TOTAL, bytes],
      [bps!, bytes],
      [Bucket.OPS_TOTAL, units],
      [ops!, units],
    ] as const) {
      const b = this.cfg.buckets[i]!;
      b.level += n;
      if (b.burstLength > 1) b.burstLevel += n;
    }
  }
}

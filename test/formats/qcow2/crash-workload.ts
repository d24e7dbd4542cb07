/**
 * The seeded crash workload shared by the power-cut tests (memory back end
 * that stops persisting after write N), their fuzz sweeps and the real-process
 * kill test: ordinary writes, zero writes (with and without unmap), discards,
 * compressed writes to clusters that are unallocated at that point, and a
 * flush every few requests, with up to `inFlight` requests running at once.
 *
 * Requests in flight never overlap (a request on clusters in use waits for
 * them), so the guest content after the requests before a flush is known
 * whatever order they completed in: {@link modelAt} replays the same stream
 * one by one.
 */
import { ReqFlag, type BlockBackend } from '../../../src/node.js';
import { prng } from '../../prng.js';

/** One guest request of the stream. */
export type CrashOp =
  | { kind: 'write' | 'zero' | 'zero-unmap' | 'discard'; off: number; len: number; seed: number }
  | { kind: 'compress'; off: number; len: number; seed: number }
  | { kind: 'flush' };

/** The shape of a workload. */
export interface CrashShape {
  size: number;
  cs: number;
  /** Requests in the stream. */
  ops: number;
  /** Guest bytes [0, base) come from a backing file (its content is `baseData`). */
  base: number;
  /** Whether compressed writes are part of the mix. */
  compressed: boolean;
}

/** Data of a normal write: pseudo-random bytes. */
export function opData(len: number, seed: number): Uint8Array {
  const r = prng(seed);
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (r() * 256) | 0;
  return b;
}

/**
 * Data of a compressed write: one cluster, different per seed, that shrinks
 * to about a third, so that a host cluster holds only a few compressed
 * clusters and discarding them frees it now and then.
 */
export function packableData(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  b.set(opData(Math.floor(len * 0.3), seed));
  for (let j = Math.floor(len * 0.3); j < len; j++) b[j] = j % 7 === 0 ? seed & 0xff : 65 + (j % 13);
  return b;
}

/**
 * The request stream of `seed`: deterministic. Compressed writes go to
 * clusters nothing was written to since they were last discarded (or ever),
 * since compression never overwrites an allocated cluster.
 */
export function crashOps(shape: CrashShape, seed: number): CrashOp[] {
  const { size, cs } = shape;
  const r = prng(seed);
  const clusters = size / cs;
  /** Clusters a compressed write may go to. */
  const free = new Uint8Array(clusters).fill(1);
  const mark = (off: number, len: number, v: number) => free.fill(v, Math.floor(off / cs), Math.ceil((off + len) / cs));
  const ops: CrashOp[] = [];
  let cursor = Math.floor(r() * clusters);
  for (let i = 0; i < shape.ops; i++) {
    const k = r();
    // Mostly small requests, some over several clusters.
    const len = r() < 0.7 ? 512 * (1 + Math.floor(r() * 16)) : 512 * (1 + Math.floor((r() * 3 * cs) / 512));
    const off = Math.floor((r() * (size - len)) / 512) * 512;
    const s = seed * 10007 + i;
    if (k < 0.12) {
      ops.push({ kind: 'flush' });
    } else if (shape.compressed && k < 0.4) {
      // Consecutive guest clusters (where free), so that the compressed clusters
      // packed into one host cluster are neighbours and one discard can free it.
      let c = cursor;
      for (let n = 0; n < clusters && !free[c]; n++) c = (c + 1) % clusters;
      cursor = (c + 1) % clusters;
      if (!free[c]) continue;
      free[c] = 0;
      ops.push({ kind: 'compress', off: c * cs, len: cs, seed: s });
    } else if (k < 0.62) {
      ops.push({ kind: 'write', off, len, seed: s });
      mark(off, len, 0);
    } else if (k < 0.74) {
      ops.push({ kind: r() < 0.5 ? 'zero' : 'zero-unmap', off, len, seed: s });
      mark(off, len, 0);
    } else {
      // Discards of whole clusters make them unallocated (zero) again; half of
      // them hit a compressed cluster, so that packed host clusters get freed.
      const recent = ops.filter((o) => o.kind === 'compress').slice(-6);
      const aim = recent.length > 0 && r() < 0.5 ? recent[Math.floor(r() * recent.length)]! : undefined;
      const first = aim && aim.kind === 'compress' ? aim.off / cs : Math.floor(off / cs);
      const n = 1 + Math.floor(r() * (aim ? 6 : 3));
      const end = Math.min(clusters, first + n);
      ops.push({ kind: 'discard', off: first * cs, len: (end - first) * cs, seed: s });
      mark(first * cs, (end - first) * cs, 1);
    }
  }
  return ops;
}

/** Guest content after `ops` applied one by one to `initial` (what QEMU's semantics give). */
export function applyOp(data: Uint8Array, op: CrashOp): void {
  switch (op.kind) {
    case 'flush':
      return;
    case 'write':
      data.set(opData(op.len, op.seed), op.off);
      return;
    case 'compress':
      data.set(packableData(op.len, op.seed), op.off);
      return;
    default:
      data.fill(0, op.off, op.off + op.len);
  }
}

/** Byte range an op changes (empty for a flush). */
function range(op: CrashOp): [number, number] {
  return op.kind === 'flush' ? [0, 0] : [op.off, op.off + op.len];
}

/** The content after ops [0, n) and the sectors ops [n, end) may change. */
export function modelAt(ops: CrashOp[], n: number, initial: Uint8Array): { data: Uint8Array; unstable: Uint8Array } {
  const data = initial.slice();
  for (let i = 0; i < n; i++) applyOp(data, ops[i]!);
  const unstable = new Uint8Array(Math.ceil(initial.length / 512));
  for (let i = n; i < ops.length; i++) {
    const [s, e] = range(ops[i]!);
    if (e > s) unstable.fill(1, Math.floor(s / 512), Math.ceil(e / 512));
  }
  return { data, unstable };
}

/** Submits one request. */
function submit(bb: BlockBackend, op: CrashOp): Promise<void> {
  switch (op.kind) {
    case 'write':
      return bb.write(op.off, opData(op.len, op.seed));
    case 'compress':
      return bb.writeCompressed(op.off, packableData(op.len, op.seed));
    case 'zero':
      return bb.writeZeroes(op.off, op.len, 0);
    case 'zero-unmap':
      return bb.writeZeroes(op.off, op.len, ReqFlag.MAY_UNMAP);
    case 'discard':
      return bb.discard(op.off, op.len);
    case 'flush':
      return bb.flush();
  }
}

/** What a run reports as it goes. */
export interface CrashHooks {
  /** Op `i` is about to be submitted. */
  submitted?(i: number): void;
  /** The flush that follows ops [0, n) has completed. */
  flushed?(n: number): void;
}

/**
 * Runs the stream with up to `inFlight` requests at once, none overlapping
 * (a request waits for those on the same clusters). A flush waits for
 * everything before it.
 */
export async function runCrashOps(bb: BlockBackend, ops: CrashOp[], cs: number, inFlight: number, hooks: CrashHooks = {}): Promise<void> {
  /** Requests running, with the clusters they cover. */
  const running = new Map<Promise<void>, [number, number]>();
  let all: Array<Promise<void>> = [];
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.kind === 'flush') {
      await Promise.all(all);
      all = [];
      hooks.submitted?.(i);
      await bb.flush();
      hooks.flushed?.(i);
      continue;
    }
    const [s, e] = range(op);
    const c0 = Math.floor(s / cs);
    const c1 = Math.floor((e - 1) / cs);
    for (;;) {
      let busy: Promise<void> | undefined;
      for (const [p, [a, b]] of running) if (a <= c1 && b >= c0) busy = p;
      if (!busy && running.size < inFlight) break;
      await Promise.race(busy ? [busy] : [...running.keys()]);
    }
    hooks.submitted?.(i);
    const p: Promise<void> = submit(bb, op).finally(() => running.delete(p));
    // Failures surface through `all`; this keeps a failure while waiting elsewhere from going unhandled.
    p.catch(() => undefined);
    running.set(p, [c0, c1]);
    all.push(p);
  }
  await Promise.all(all);
}

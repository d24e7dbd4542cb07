/**
 * Decoding compressed clusters on more than one core: the small interface a
 * format driver uses when it has several compressed clusters in hand at once
 * (qcow2's batched reads), as QEMU 7.2 decodes them in its thread pool with
 * several requests in flight.
 *
 * A pool decodes some of a batch on its threads while the caller decodes the
 * rest inline, or all of it ({@link DecompressPool.wholeBatches};
 * {@link decodeClusters}); small batches, and environments
 * without a pool, decode inline only. Which pool is used: the one given to
 * {@link setDecompressPool}, else the environment's default (worker threads
 * in Node, Web Workers in browsers: src/wasm/decompress-workers.ts).
 */
import type { BlockError, ErrorContext } from './errors.js';

/** The codec of a compressed cluster (qcow2's compression_type). */
export type ClusterCompression = 'zlib' | 'zstd';

/** One compressed cluster: `input` (as stored, padding included) decodes into all of `out`. */
export interface DecompressTask {
  input: Uint8Array;
  out: Uint8Array;
  /** Names the cluster in an error (node, offset of the compressed data). */
  context: ErrorContext;
}

/** Threads that decode compressed clusters. */
export interface DecompressPool {
  /** Threads decoding besides the caller's. */
  readonly threads: number;
  /**
   * Take whole batches rather than a share: the caller decodes nothing inline
   * (its thread has the copy's own work to do, and the pool's threads are
   * cheap to feed).
   */
  readonly wholeBatches?: boolean;
  /**
   * Decodes `tasks` on the pool's threads. Resolves with one entry per task:
   * null when it decoded into `out`, else the BlockError the inline decoder
   * would throw for it (corrupt or short data). Rejects only when the pool
   * itself failed (a thread died or could not start): the caller then decodes
   * the tasks inline.
   */
  decode(kind: ClusterCompression, tasks: readonly DecompressTask[]): Promise<Array<BlockError | null>>;
  /** Stops the threads; later decodes reject. */
  close(): Promise<void>;
}

/** Fewest clusters in a batch worth handing to a pool (a message costs about a cluster's decode). */
export const MIN_POOL_BATCH = 4;

let chosen: DecompressPool | null | undefined;

/**
 * Sets the pool compressed reads use: a pool, null for inline decoding only,
 * undefined for the environment's default (the initial state). The previous
 * pool is not closed.
 */
export function setDecompressPool(pool: DecompressPool | null | undefined): void {
  chosen = pool;
}

/** The pool set with {@link setDecompressPool}: a pool, null (none), or undefined (the default). */
export function chosenDecompressPool(): DecompressPool | null | undefined {
  return chosen;
}

/**
 * Decodes every task: a share on `pool` (about threads / (threads + 1) of
 * them, or all with wholeBatches) while `inline` decodes the rest here, or all inline without a pool or
 * for fewer than {@link MIN_POOL_BATCH} tasks. Tasks the pool could not take
 * (it failed) are decoded inline. Throws the error of the first task in order
 * that failed, as a cluster-by-cluster decode would. `inline` returns a
 * promise only when its decoder is asynchronous.
 */
export async function decodeClusters(
  pool: DecompressPool | undefined,
  kind: ClusterCompression,
  tasks: readonly DecompressTask[],
  inline: (t: DecompressTask) => Promise<unknown> | undefined,
): Promise<void> {
  if (!pool || pool.threads < 1 || tasks.length < MIN_POOL_BATCH) {
    for (const t of tasks) {
      const p = inline(t);
      if (p) await p;
    }
    return;
  }
  // Rounded up: the caller's thread also runs the reads and writes around the decoding.
  const toPool = pool.wholeBatches ? tasks.length : Math.ceil((tasks.length * pool.threads) / (pool.threads + 1));
  const pooled = pool.decode(kind, tasks.slice(0, toPool));
  // Settles with the pool's answers, or undefined when the pool failed.
  const answers = pooled.then(
    (a) => a as Array<BlockError | null> | undefined,
    () => undefined,
  );
  let firstError: { at: number; error: unknown } | undefined;
  for (let i = toPool; i < tasks.length && !firstError; i++) {
    try {
      const p = inline(tasks[i]!);
      if (p) await p;
    } catch (e) {
      firstError = { at: i, error: e };
    }
  }
  const got = await answers;
  for (let i = 0; i < toPool; i++) {
    let error: unknown = got ? got[i] : null;
    if (!got) {
      try {
        const p = inline(tasks[i]!);
        if (p) await p;
      } catch (e) {
        error = e;
      }
    }
    if (error) throw error;
  }
  if (firstError) throw firstError.error;
}

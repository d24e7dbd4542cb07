/** One measured figure, as a ratio to a baseline measured in the same run. */
export interface BenchResult {
  /** What was measured ("4 KiB reads, BlockBackend → raw → null"). */
  name: string;
  /** Unit of value and baselineValue ("ops/s", "MiB/s", "ms"). */
  unit: string;
  value: number;
  /** What the baseline is ("null back end called directly"). */
  baseline: string;
  baselineValue: number;
  /** value / baselineValue for rates; baselineValue / value for times (higher is better). */
  ratio: number;
  /** The ratio the issue asks for, when there is one. */
  target?: number;
}

/** A benchmark module: `bench/<group>/<name>.ts` exporting run(). */
export interface BenchModule {
  run(): Promise<BenchResult[]>;
}

/** Runs `fn` repeatedly for about `ms` milliseconds and returns operations per second. */
export async function opsPerSecond(fn: () => unknown, ms = 1000, batch = 64): Promise<number> {
  // Warm up so the JIT has settled before timing.
  const warmUntil = performance.now() + Math.min(200, ms / 4);
  while (performance.now() < warmUntil) for (let i = 0; i < batch; i++) await fn();
  let ops = 0;
  const start = performance.now();
  let elapsed = 0;
  do {
    for (let i = 0; i < batch; i++) await fn();
    ops += batch;
    elapsed = performance.now() - start;
  } while (elapsed < ms);
  return (ops / elapsed) * 1000;
}

/** Best of `rounds` measurements (the least disturbed one). */
export async function bestOf(rounds: number, measure: () => Promise<number>): Promise<number> {
  let best = 0;
  for (let i = 0; i < rounds; i++) best = Math.max(best, await measure());
  return best;
}

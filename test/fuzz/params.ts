/**
 * Parameters of a long fuzz run, set by `npm run fuzz -- [target...] --seed N
 * --count N` (scripts/fuzz.mjs) through the environment.
 */
export interface FuzzParams {
  /** First seed; case i uses seed + i. */
  seed: number;
  /** Number of cases (sessions, images, workloads) to run. */
  count: number;
}

/** Reads DW_FUZZ_SEED / DW_FUZZ_COUNT, with the target's own default count. */
export function fuzzParams(defaultCount: number): FuzzParams {
  const seed = Number(process.env.DW_FUZZ_SEED ?? Date.now() % 1_000_000);
  const count = Number(process.env.DW_FUZZ_COUNT ?? defaultCount);
  if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(count) || count < 1) {
    throw new Error(`bad fuzz parameters: seed=${process.env.DW_FUZZ_SEED} count=${process.env.DW_FUZZ_COUNT}`);
  }
  return { seed, count };
}

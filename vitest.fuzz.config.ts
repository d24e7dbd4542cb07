import { defineConfig } from 'vitest/config';

/**
 * Long-running fuzzers (`npm run fuzz`): the `*.fuzz.ts` files, which read
 * their seed and case count from the environment (see test/fuzz/params.ts).
 * `npm test` runs a fixed seeded sample of the same code from `*.test.ts` files.
 */
export default defineConfig({
  test: {
    include: ['test/**/*.fuzz.ts'],
    testTimeout: 0,
    hookTimeout: 600_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});

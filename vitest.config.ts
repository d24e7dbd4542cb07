import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Three workers on two cores: most tests wait on qemu-img / qemu-io children, so a
    // third keeps both cores busy (the suite is bound by its differential cases).
    maxWorkers: 3,
  },
});

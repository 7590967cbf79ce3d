/**
 * Runs the shared write budget's tests alone, without the suite's global setup
 * (they start a Redis of their own, so the project's services need not run):
 *   npx vitest run --config test/persist/shared-budget.vitest.config.ts
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/persist/shared-budget.test.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});

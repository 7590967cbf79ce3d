import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/services.ts'],
    // Every test process may start only what the README's test command installs.
    setupFiles: ['test/setup/programs.ts'],
    // Files share one Redis and one database and some count server-side commands:
    // they run one after another.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 900_000,
    reporters: ['default'],
  },
});

import { defineConfig } from "vitest/config";

// Browser benchmarks that reuse the test helpers; `npm test` (the root config) never includes them.
export default defineConfig({
  test: {
    include: ["bench/**/*.e2e.ts"],
    testTimeout: 600_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 1,
    minWorkers: 1,
  },
});

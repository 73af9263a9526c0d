import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Kernel, Jupyter server and Chromium tests each start real processes; on a 2-core machine
    // running every file at once starves them, so files run two at a time.
    maxWorkers: 2,
    minWorkers: 1,
    pool: "forks",
    // CI also writes a JSON report, from which .ci/run prints a plain "N passed, N failed" closing line.
    reporters: process.env.TSNB_TEST_REPORT ? ["default", "json"] : ["default"],
    ...(process.env.TSNB_TEST_REPORT ? { outputFile: { json: process.env.TSNB_TEST_REPORT } } : {}),
  },
});

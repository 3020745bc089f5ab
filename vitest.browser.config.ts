import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/browser/**/*.test.ts"],
    pool: "forks",
    // .ci/run reads the JSON report to print its one "N passed, N failed" line.
    reporters: ["default", ["json", { outputFile: "test-results/browser.json" }]],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});

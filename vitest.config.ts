import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: ["test/browser/**", "node_modules/**"],
    // Each file starts its own identity provider, BFF and backends on port 0.
    pool: "forks",
    // .ci/run reads the JSON report to print its one "N passed, N failed" line.
    reporters: ["default", ["json", { outputFile: "test-results/unit.json" }]],
    testTimeout: 20_000,
    hookTimeout: 30_000,
  },
});

// Mutation testing of the security-critical modules (issue 17): `npm run mutate`.
// `MUTATE=src/crypto/**/*.ts npm run mutate` narrows it to some files; the incremental
// file (reports/stryker-incremental.json) lets a second run retest only what changed.
const securityCritical = [
  "src/auth/**/*.ts",
  "src/ws/gate.ts",
  "src/ws/tickets.ts",
  "src/ws/registry.ts",
  "src/proxy/relay.ts",
  "src/audit/**/*.ts",
  "src/http/rate-limit.ts",
  "src/crypto/**/*.ts",
];

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  vitest: { configFile: "vitest.config.ts" },
  checkers: ["typescript"],
  tsconfigFile: "tsconfig.json",
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  mutate: process.env.MUTATE ? process.env.MUTATE.split(",") : securityCritical,
  coverageAnalysis: "perTest",
  incremental: true,
  incrementalFile: "reports/stryker-incremental.json",
  // Two cores: one vitest worker per core.
  concurrency: 2,
  timeoutMS: 20_000,
  reporters: ["clear-text", "json", "progress"],
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  thresholds: { high: 90, low: 75, break: null },
  ignorePatterns: ["db/*.sqlite*", "db/demo-secrets", "test-results", "bench/results", "reports"],
};

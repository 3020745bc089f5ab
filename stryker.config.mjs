// Mutation testing of the security-critical modules (issue 17): `npm run mutate`.
// `npm run mutate -- --mutate src/crypto/**/*.ts` (or MUTATE_MODULE=crypto) narrows it to one
// module; each module keeps its own incremental file, so a rerun retests only what changed.
export const modules = {
  crypto: ["src/crypto/**/*.ts"],
  "rate-limit": ["src/http/rate-limit.ts"],
  tickets: ["src/ws/tickets.ts"],
  registry: ["src/ws/registry.ts"],
  audit: ["src/audit/**/*.ts"],
  gate: ["src/ws/gate.ts"],
  "api-relay": ["src/proxy/relay.ts"],
  auth: ["src/auth/**/*.ts"],
};

const name = process.env.MUTATE_MODULE ?? "all";
const mutate = name === "all" ? Object.values(modules).flat() : modules[name];
if (mutate === undefined) {
  throw new Error(`MUTATE_MODULE must be one of: ${Object.keys(modules).join(", ")}`);
}

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  vitest: { configFile: "vitest.config.ts" },
  checkers: ["typescript"],
  tsconfigFile: "tsconfig.json",
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  mutate,
  coverageAnalysis: "perTest",
  incremental: true,
  incrementalFile: `reports/stryker-incremental-${name}.json`,
  // Two cores: one test runner per core.
  concurrency: 2,
  timeoutMS: 20_000,
  reporters: ["clear-text", "json", "progress"],
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  thresholds: { high: 90, low: 75, break: null },
  ignorePatterns: ["db/*.sqlite*", "db/demo-secrets*", "test-results", "bench/results", "reports", "dist"],
};

// Mutation testing of the security-critical modules (issue 17): `npm run mutate`.
// `npm run mutate -- --mutate src/crypto/**/*.ts` (or MUTATE_MODULE=crypto) narrows it to one
// module; each module keeps its own incremental file, so a rerun retests only what changed.
// Each module with the tests that prove its SECURITY.md items.
export const modules = {
  crypto: { mutate: ["src/crypto/**/*.ts"], tests: ["test/crypto/**/*.test.ts", "test/auth/key-rotation.test.ts", "test/auth/session-secret.test.ts"] },
  "rate-limit": { mutate: ["src/http/rate-limit.ts"], tests: ["test/http/rate-limit*.test.ts", "test/auth/csrf.test.ts"] },
  tickets: { mutate: ["src/ws/tickets.ts"], tests: ["test/ws/tickets.test.ts", "test/ws/ticket-route.test.ts", "test/ws/gate-order.test.ts"] },
  registry: { mutate: ["src/ws/registry.ts"], tests: ["test/ws/registry*.test.ts"] },
  audit: { mutate: ["src/audit/**/*.ts"], tests: ["test/audit/**/*.test.ts"] },
  gate: { mutate: ["src/ws/gate.ts"], tests: ["test/ws/gate*.test.ts", "test/http/rate-limit-session.test.ts", "test/ws/routes.test.ts", "test/hostile/redos.test.ts"] },
  "api-relay": { mutate: ["src/proxy/relay.ts"], tests: ["test/proxy/relay*.test.ts", "test/proxy/upstreams.test.ts"] },
  auth: { mutate: ["src/auth/**/*.ts"], tests: ["test/auth/**/*.test.ts", "test/hostile/fuzz.test.ts"] },
};

const name = process.env.MUTATE_MODULE ?? "all";
const chosen = name === "all" ? Object.values(modules) : modules[name] === undefined ? undefined : [modules[name]];
if (chosen === undefined) {
  throw new Error(`MUTATE_MODULE must be one of: ${Object.keys(modules).join(", ")}`);
}
const mutate = chosen.flatMap((m) => m.mutate);
// Read by vitest.stryker.config.ts in the test runner processes Stryker starts.
process.env.MUTATE_TESTS = chosen.flatMap((m) => m.tests).join(",");

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  vitest: { configFile: "vitest.stryker.config.ts", related: false },
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

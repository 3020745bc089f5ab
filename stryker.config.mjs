// Mutation testing of the security-critical modules (issue 17): `npm run mutate`.
// `npm run mutate -- --mutate src/crypto/**/*.ts` (or MUTATE_MODULE=crypto) narrows it to one
// module; each module keeps its own incremental file, so a rerun retests only what changed.
// Each module with the tests that prove its SECURITY.md items.
export const modules = {
  crypto: { mutate: ["src/crypto/**/*.ts"], tests: ["test/crypto/**/*.test.ts", "test/auth/key-rotation.test.ts", "test/auth/session-secret.test.ts"] },
  "rate-limit": { mutate: ["src/http/rate-limit.ts"], tests: ["test/http/rate-limit*.test.ts", "test/auth/csrf.test.ts"] },
  tickets: { mutate: ["src/ws/tickets.ts"], tests: ["test/ws/tickets.test.ts", "test/ws/ticket-route.test.ts", "test/ws/gate-order.test.ts"] },
  registry: { mutate: ["src/ws/registry.ts"], tests: ["test/ws/registry*.test.ts"] },
  audit: {
    mutate: ["src/audit/**/*.ts"],
    tests: ["test/audit/**/*.test.ts"],
    timeoutMS: 8_000,
    // SECURITY.md G33 (escaping, the keyed session reference, the field cap) and I38 (the
    // aggregation of anonymous refusals, the bounded queues, the 0600 file, rotation).
    security: [
      "src/audit/log.ts:107-117",
      "src/audit/log.ts:143-157",
      "src/audit/log.ts:166-181",
      "src/audit/log.ts:198-219",
      "src/audit/aggregate.ts:44-57",
      "src/audit/aggregate.ts:78-84",
      "src/audit/destination.ts:95-105",
      "src/audit/destination.ts:170-183",
      "src/audit/destination.ts:230-238",
      "src/audit/destination.ts:288-305",
    ],
  },
  gate: { mutate: ["src/ws/gate.ts"], tests: ["test/ws/gate*.test.ts", "test/http/rate-limit-session.test.ts", "test/ws/routes.test.ts", "test/hostile/redos.test.ts"], timeoutMS: 8_000 },
  // The Socket.IO long-polling tests relay through forwardRequest too (its signal, the
  // stripping, the 413). Module-level mutants (the header sets, the agents) are left out with
  // ignoreStatic: each would rerun every listed test, and the header tables in
  // relay.test.ts and relay-headers.test.ts prove each set's names one by one.
  "api-relay": {
    mutate: ["src/proxy/relay.ts"],
    // refresh.test.ts: a provider-token route of the session's own provider gets through.
    tests: ["test/proxy/relay*.test.ts", "test/proxy/upstreams.test.ts", "test/proxy/refresh.test.ts", "test/socketio/polling.test.ts"],
    ignoreStatic: true,
    timeoutMS: 8_000,
    // SECURITY.md D20/D21/I42 (the route and method checks, the credential, both header
    // filters, no-store), H36 (the bounded body), H35 and E27 (the exchange's one timer, the
    // browser that leaves, the caller's signal), C13's wrong-provider check.
    security: ["src/proxy/relay.ts:155-183", "src/proxy/relay.ts:219-302", "src/proxy/relay.ts:330-424", "src/proxy/relay.ts:438-483"],
    // The rest of `security` (MUTATE_SCOPE=exchange): the exchange's failure answers and
    // audit line, no-store and the answer's head, the one timer, the browser that leaves and
    // the caller's signal (H35, E27).
    exchange: ["src/proxy/relay.ts:236-259", "src/proxy/relay.ts:277-302", "src/proxy/relay.ts:330-424"],
    // What one afternoon's run covered (MUTATE_SCOPE=filters): the route, method and
    // provider checks, both header filters with no-store, the credential, the body limit.
    filters: [
      "src/proxy/relay.ts:155-183",
      "src/proxy/relay.ts:219-235",
      "src/proxy/relay.ts:256-276",
      "src/proxy/relay.ts:438-483",
    ],
  },
  // auth in three parts (1,780 mutants in one run did not fit an afternoon on two cores),
  // each against the tests that prove its files; `auth` still names the whole directory.
  "auth-session": {
    mutate: ["src/auth/session.ts", "src/auth/session-middleware.ts", "src/auth/csrf.ts", "src/auth/cookies.ts", "src/auth/return-to.ts"],
    tests: [
      "test/auth/session*.test.ts",
      "test/auth/csrf.test.ts",
      "test/auth/cookies.test.ts",
      "test/auth/return-to.test.ts",
      "test/auth/revoked-event.test.ts",
      "test/auth/refresh-lifetime.test.ts",
      "test/auth/key-rotation.test.ts",
      "test/auth/grant-releaser.test.ts",
      "test/hostile/fuzz.test.ts",
      // The store contract (the tamper check of both engines, refreshed tokens' compare-and-swap
      // and cap, back-channel logout's match) and the routes that exercise them.
      "test/store/store.test.ts",
      "test/store/round-trips.test.ts",
      "test/proxy/refresh.test.ts",
      "test/auth/backchannel-logout.test.ts",
    ],
    // SECURITY.md A1-A6, B9, C15, D17, G32, I43: the token's format and secret check, the
    // tamper check, the timeouts and the slide throttle, the refresh-token cap, ending and
    // announcing a session and releasing its grant; CSRF and Origin; the cookie reader and
    // writer; returnTo; the cookie as the only source. (Line numbers of session.ts: move
    // them with the code.)
    timeoutMS: 8_000,
    security: [
      "src/auth/session.ts:60-70",
      "src/auth/session.ts:93-226",
      "src/auth/session.ts:279-420",
      "src/auth/session.ts:452-530",
      "src/auth/csrf.ts",
      "src/auth/cookies.ts",
      "src/auth/return-to.ts",
      "src/auth/session-middleware.ts",
    ],
  },
  "auth-login": {
    mutate: ["src/auth/login.ts", "src/auth/login-attempts.ts", "src/auth/providers.ts", "src/auth/accounts.ts", "src/auth/account-blocks.ts"],
    tests: [
      "test/auth/login*.test.ts",
      "test/auth/callback*.test.ts",
      "test/auth/mixup.test.ts",
      "test/auth/accounts.test.ts",
      "test/auth/providers.test.ts",
      "test/auth/no-store.test.ts",
      "test/auth/refresh-lifetime.test.ts",
      "test/auth/discovery-retry.test.ts",
      // Ending the session a browser had (or sent to the callback) at a new login; the store
      // contract's accounts (the display name kept up to date).
      "test/auth/session.test.ts",
      "test/store/store.test.ts",
    ],
    timeoutMS: 8_000,
    // SECURITY.md A5, A7, C10-C14: the login's no-store and login-state cookie, the callback's
    // checks in order (repeated parameters, state, provider, error, iss, code), ending the
    // earlier session, the escaped continue page; the attempt's random secrets, sealing,
    // single use and per-browser binding; (issuer, subject) accounts; discovery's issuer and
    // S256 checks, the OIDC provider's PKCE and nonce, the ID token's claims, the token
    // response's lifetimes. The preset providers (Google, Discord, GitHub, Twitch) are left
    // out: no test can reach them, beyond the URLs providers.test.ts checks.
    security: [
      "src/auth/login.ts:36-190",
      "src/auth/login.ts:200-209",
      "src/auth/login-attempts.ts:31-161",
      "src/auth/accounts.ts:40-84",
      "src/auth/providers.ts:215-340",
      "src/auth/providers.ts:497-570",
    ],
  },
  "auth-logout": {
    mutate: ["src/auth/backchannel-logout.ts", "src/auth/logout-token.ts", "src/auth/provider-logout.ts", "src/auth/session-events.ts", "src/auth/routes.ts"],
    tests: [
      "test/auth/backchannel-logout.test.ts",
      "test/auth/provider-logout.test.ts",
      "test/auth/revoked-event.test.ts",
      "test/auth/session.test.ts",
      "test/auth/session-live.test.ts",
      "test/auth/no-store.test.ts",
      "test/auth/session-events.test.ts",
      // DELETE /auth/sessions/:id of the caller's own session expires its cookie.
      "test/auth/callback-outcomes.test.ts",
    ],
    timeoutMS: 8_000,
  },
  auth: { mutate: ["src/auth/**/*.ts"], tests: ["test/auth/**/*.test.ts", "test/hostile/fuzz.test.ts"] },
};

const name = process.env.MUTATE_MODULE ?? "all";
// "all" runs every part once: the whole-directory `auth` entry is left out of it.
const chosen = name === "all" ? Object.entries(modules).filter(([key]) => key !== "auth").map(([, m]) => m) : modules[name] === undefined ? undefined : [modules[name]];
if (chosen === undefined) {
  throw new Error(`MUTATE_MODULE must be one of: ${Object.keys(modules).join(", ")}`);
}
// MUTATE_SCOPE=security mutates only a module's security-enforcing lines (its `security`
// list), for a run that would not finish otherwise; its report and incremental file are
// kept apart from the full run's.
const scope = process.env.MUTATE_SCOPE ?? "full";
const mutate = chosen.flatMap((m) => (scope !== "full" && m[scope] !== undefined ? m[scope] : m.mutate));
const reportName = scope === "full" ? name : `${name}-${scope}-lines`;
// Per-module overrides (a single module only): a shorter timeoutMS where the module's tests
// have no long waits, and ignoreStatic where module-level mutants would each cost the whole list.
const only = chosen.length === 1 ? chosen[0] : {};
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
  incrementalFile: `reports/stryker-incremental-${reportName}.json`,
  // Two cores: one test runner per core.
  concurrency: 2,
  timeoutMS: only.timeoutMS ?? 20_000,
  ignoreStatic: only.ignoreStatic ?? false,
  // The instrumented dry run runs every listed test once with coverage; on two busy cores it
  // needs more than Stryker's default 5 minutes for the larger lists.
  dryRunTimeoutMinutes: 20,
  reporters: ["clear-text", "json", "progress"],
  jsonReporter: { fileName: `reports/mutation/${reportName}.json` },
  thresholds: { high: 90, low: 75, break: null },
  ignorePatterns: ["db/*.sqlite*", "db/demo-secrets*", "test-results", "bench/results", "reports", "dist"],
};

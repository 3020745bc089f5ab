/**
 * Portcullis for the side-by-side benchmark, in its own process so that its RSS is read
 * alone: the test harness's real oidc-provider, a real SQLite file, and one player logged
 * in through the real login flow, whose session the load generator uses.
 *
 * argv: <game backend URL> <assertion key id> <base64 Ed25519 seed> [--metrics]
 * With --metrics the Prometheus listener is on and scraped every 5 s, as a Prometheus
 * server would (its default is 15 s), so the cost of counting and of exposing is in the figures.
 * IPC: answers `{type: "ready", origin, token, sub, sid, name, pid}`; on `{type: "gc"}`
 * collects garbage (forked with --expose-gc) and answers `{type: "gc-done"}`; on
 * `{type: "loop-delay"}` answers `{type: "loop-delay", p50, p99, max}` (ms, the event loop's
 * delay since the previous such message) and starts counting again; on `{type: "stop"}`
 * closes and exits.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { Writable } from "node:stream";
import { ManualClock } from "../src/clock";
import { startHarness } from "../test/fixtures/harness";
import { isRecord, LOADGEN_LIMITS, readString } from "./protocol";

/**
 * The harness takes a ManualClock so tests can move time by hand; a benchmark needs the
 * wall clock, or rate-limit buckets never refill and identity assertions (60 s) expire
 * a minute into the run.
 */
class WallClock extends ManualClock {
  override now(): number {
    return Date.now();
  }
}

const [backendURL, keyId, seed] = process.argv.slice(2);
if (backendURL === undefined || keyId === undefined || seed === undefined) {
  throw new Error("usage: portcullis.ts <game backend URL> <key id> <base64 seed>");
}

// Limits that would otherwise throttle the load generator itself; the bucket burst bounds
// how many requests of one kind a run may make, so it sits far above any run's total.
const METRICS = process.argv.includes("--metrics");
const SCRAPE_INTERVAL_MS = 5_000;
const h = await startHarness({
  clock: new WallClock(),
  env: {
    GAME_BACKEND_URL: backendURL,
    ASSERTION_SIGNING_KEYS: `${keyId}:${seed}`,
    ...LOADGEN_LIMITS,
    ...(METRICS ? { METRICS_PORT: "0" } : {}),
  },
  // The harness would keep every audit line in memory and grow the RSS being measured.
  // Lines are still formatted; only the write is dropped.
  portcullis: { auditStream: new Writable({ write: (_chunk, _encoding, done) => done() }) },
});

const { token } = await h.login("bench-player");
const me: unknown = await (await fetch(`${h.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${token}` } })).json();
const user = isRecord(me) ? me.user : undefined;
const session = isRecord(me) ? me.session : undefined;
const sub = readString(user, "id");
const sid = readString(session, "id");
const name = readString(user, "displayName");
if (sub === null || sid === null || name === null) throw new Error("/auth/me did not describe the session");

const metricsURL = h.bff.metricsURL;
if (metricsURL !== null) {
  const scraper = setInterval(() => {
    void fetch(`${metricsURL}/metrics`)
      .then((response) => response.text())
      .catch(() => undefined);
  }, SCRAPE_INTERVAL_MS);
  scraper.unref();
}

// How long the event loop was blocked: what every message behind a stall waits for (issue 14).
const loopDelay = monitorEventLoopDelay({ resolution: 1 });
loopDelay.enable();

process.send?.({ type: "ready", origin: h.origin, token, sub, sid, name, pid: process.pid });

process.on("message", (message: unknown) => {
  const type = readString(message, "type");
  if (type === "gc") {
    globalThis.gc?.();
    process.send?.({ type: "gc-done" });
  } else if (type === "loop-delay") {
    const ms = (ns: number): number => ns / 1e6;
    process.send?.({ type: "loop-delay", p50: ms(loopDelay.percentile(50)), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) });
    loopDelay.reset();
  } else if (type === "stop") {
    void h.close().finally(() => process.exit(0));
  }
});
// The orchestrator died: do not outlive it.
process.on("disconnect", () => process.exit(0));

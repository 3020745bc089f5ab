import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { SessionEndReason } from "../auth/session-events";
import {
  API_METHODS,
  LIMITERS,
  REFRESH_OUTCOMES,
  UPGRADE_OUTCOMES,
  bounded,
  closeCodeLabel,
  statusClass,
  type APIRequest,
  type Metrics,
  type RefreshOutcome,
  type RelayTally,
} from "./metrics";

const PREFIX = "portcullis_";
const SESSION_END_REASONS: readonly SessionEndReason[] = ["logout", "revoked", "expired", "refresh_refused", "replaced", "decrypt_failed"];
const STATEMENT_KINDS = ["select", "insert", "update", "delete", "other"] as const;
type StatementKind = (typeof STATEMENT_KINDS)[number];
// /api answers: from a cached refusal (sub-millisecond) to the 30 s upstream timeout.
const API_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
// SQLite on a local file: tens of microseconds for an indexed read, milliseconds for a
// write waiting on the WAL, up to the 5 s busy timeout.
const DB_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5];

export interface PrometheusMetricsOptions {
  /** Sessions alive now, read from the database when Prometheus scrapes. */
  countLiveSessions: () => number | Promise<number>;
  /** Upstream prefixes from UPSTREAMS_FILE: their label sets start at zero. */
  upstreams?: string[];
  /** The WebSocket routes: their socket gauges start at zero. */
  routes?: string[];
}

/** The {@link Metrics} Prometheus reads, with the exposition for the metrics listener. */
export interface PrometheusMetrics extends Metrics {
  readonly registry: Registry;
  sessionEnded(reason: SessionEndReason): void;
  /** Times one SQLite statement run; `sql` only decides the statement label. */
  databaseQuery(kind: StatementKind, seconds: number): void;
  /** The text exposition format (version 0.0.4). */
  exposition(): Promise<string>;
  readonly contentType: string;
}

/**
 * prom-client metrics in a registry of their own (tests run several servers in one process).
 * Every label set of a bounded label starts at zero, so a rate over a fresh counter is 0,
 * not absent, and the exposition lists the whole vocabulary.
 */
export function createPrometheusMetrics(options: PrometheusMetricsOptions): PrometheusMetrics {
  const registry = new Registry();
  // Node's process metrics and event-loop delay (nodejs_eventloop_lag_*), under their usual
  // names so the common Node dashboards work unchanged.
  collectDefaultMetrics({ register: registry });
  // Three of the defaults are gauges named like counters, which `promtool check metrics`
  // refuses; their by-type siblings (nodejs_active_handles{type}, …) sum to the same.
  for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) {
    registry.removeSingleMetric(name);
  }

  const relayed = { toBackend: { messages: 0, bytes: 0 }, toClient: { messages: 0, bytes: 0 } };
  const publishTallies = (read: (tally: RelayTally) => number) =>
    function collect(this: Counter<"direction">): void {
      // The relay only adds to plain numbers (no hashing of labels per frame); the counter
      // takes their totals here, when Prometheus asks.
      this.reset();
      this.inc({ direction: "to_backend" }, read(relayed.toBackend));
      this.inc({ direction: "to_client" }, read(relayed.toClient));
    };
  new Counter({
    name: `${PREFIX}ws_messages_total`,
    help: "WebSocket data messages relayed, by direction.",
    labelNames: ["direction"],
    registers: [registry],
    collect: publishTallies((tally) => tally.messages),
  });
  new Counter({
    name: `${PREFIX}ws_bytes_total`,
    help: "Bytes read from one side of a relay for the other (frame headers included), by direction.",
    labelNames: ["direction"],
    registers: [registry],
    collect: publishTallies((tally) => tally.bytes),
  });

  const sockets = new Gauge({ name: `${PREFIX}ws_sockets`, help: "Relayed WebSockets open now, by route.", labelNames: ["route"], registers: [registry] });
  for (const route of options.routes ?? ["/ws"]) sockets.set({ route }, 0);
  const upgrades = zeroed(
    new Counter({ name: `${PREFIX}ws_upgrades_total`, help: "WebSocket upgrades decided, by outcome (accepted or the refusal's code).", labelNames: ["outcome"], registers: [registry] }),
    UPGRADE_OUTCOMES.map((outcome) => ({ outcome })),
  );
  const closes = zeroed(
    new Counter({ name: `${PREFIX}ws_closes_total`, help: "Relayed WebSockets ended, by the close code the browser saw.", labelNames: ["code"], registers: [registry] }),
    ["1000", "1001", "1006", "1008", "1009", "1014", "4401", "backend", "other"].map((code) => ({ code })),
  );
  const created = new Counter({ name: `${PREFIX}sessions_created_total`, help: "Sessions created (logins).", registers: [registry] });
  const ended = zeroed(
    new Counter({ name: `${PREFIX}sessions_ended_total`, help: "Sessions ended, by reason.", labelNames: ["reason"], registers: [registry] }),
    SESSION_END_REASONS.map((reason) => ({ reason })),
  );
  new Gauge({
    name: `${PREFIX}sessions_live`,
    help: "Sessions in the database that have not expired.",
    registers: [registry],
    async collect(): Promise<void> {
      try {
        this.set(await options.countLiveSessions());
      } catch {
        // The database cannot answer now: the gauge keeps its last value, the scrape succeeds.
      }
    },
  });
  const apiRequests = new Counter({
    name: `${PREFIX}api_requests_total`,
    help: "/api requests answered, by upstream prefix, method and status class.",
    labelNames: ["upstream", "method", "status_class"],
    registers: [registry],
  });
  const apiDuration = new Histogram({
    name: `${PREFIX}api_request_duration_seconds`,
    help: "Time from an /api request's arrival to its answer's headers, by upstream prefix.",
    labelNames: ["upstream"],
    buckets: API_BUCKETS,
    registers: [registry],
  });
  const upstreams = new Set(options.upstreams ?? []);
  for (const upstream of upstreams) apiDuration.zero({ upstream });
  const refreshes = zeroed(
    new Counter({ name: `${PREFIX}token_refreshes_total`, help: "Provider token refreshes, by outcome.", labelNames: ["outcome"], registers: [registry] }),
    REFRESH_OUTCOMES.map((outcome) => ({ outcome })),
  );
  const rateLimits = zeroed(
    new Counter({ name: `${PREFIX}rate_limit_hits_total`, help: "Requests, upgrades and messages refused by a rate limit, by limiter.", labelNames: ["limiter"], registers: [registry] }),
    LIMITERS.map((limiter) => ({ limiter })),
  );
  const queries = new Histogram({
    name: `${PREFIX}db_query_duration_seconds`,
    help: "SQLite statement run time, by statement kind.",
    labelNames: ["statement"],
    buckets: DB_BUCKETS,
    registers: [registry],
  });
  for (const statement of STATEMENT_KINDS) queries.zero({ statement });

  return {
    enabled: true,
    relayed,
    registry,
    contentType: registry.contentType,
    upgrade(outcome) {
      upgrades.inc({ outcome: bounded(UPGRADE_OUTCOMES, outcome) });
    },
    socketOpened(route) {
      sockets.inc({ route });
    },
    socketClosed(route) {
      sockets.dec({ route });
    },
    relayClosed(code) {
      closes.inc({ code: closeCodeLabel(code) });
    },
    sessionCreated() {
      created.inc();
    },
    sessionEnded(reason) {
      ended.inc({ reason: bounded(SESSION_END_REASONS, reason) });
    },
    apiRequest(request: APIRequest) {
      // Only configured prefixes are labels: a request no route matched is "none".
      const upstream = request.upstream !== null && upstreams.has(request.upstream) ? request.upstream : "none";
      apiRequests.inc({ upstream, method: bounded(API_METHODS, request.method), status_class: statusClass(request.status) });
      apiDuration.observe({ upstream }, request.seconds);
    },
    tokenRefresh(outcome: RefreshOutcome) {
      refreshes.inc({ outcome });
    },
    rateLimited(limiter) {
      rateLimits.inc({ limiter: bounded(LIMITERS, limiter) });
    },
    databaseQuery(kind, seconds) {
      queries.observe({ statement: kind }, seconds);
    },
    exposition() {
      return registry.metrics();
    },
  };
}

/** The statement label of a SQL text: its first keyword. */
export function statementKind(sql: string): StatementKind {
  const word = sql.trimStart().slice(0, 6).toLowerCase();
  return bounded(STATEMENT_KINDS, word);
}

function zeroed<T extends string>(counter: Counter<T>, labelSets: Partial<Record<T, string>>[]): Counter<T> {
  for (const labels of labelSets) counter.inc(labels, 0);
  return counter;
}

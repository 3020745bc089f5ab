import type { SessionEvents } from "../auth/session-events";
import type { Clock } from "../clock";
import type { Config } from "../config";
import type { Database } from "../db/database";
import { timeStatements } from "./database";
import { startMetricsListener, type MetricsListener } from "./listener";
import { noMetrics, type Metrics } from "./metrics";
import { createPrometheusMetrics } from "./prometheus";

export interface MetricsSetup {
  metrics: Metrics;
  /** Null when METRICS_PORT is unset. */
  listener: MetricsListener | null;
  close(): Promise<void>;
}

export interface MetricsSources {
  db: Database;
  events: SessionEvents;
  clock: Clock;
  /** The configured /api prefixes, the only values of the upstream label. */
  upstreams: string[];
  /** The configured WebSocket route paths, the only values of the route label. */
  routes: string[];
}

/**
 * Metrics as the configuration asks: off ({@link noMetrics}, no listener, nothing wrapped)
 * without METRICS_PORT; otherwise Prometheus metrics, SQLite statement timing, session ends
 * heard from the session-ended bus, and the listener on METRICS_HOST:METRICS_PORT.
 */
export async function startMetrics(config: Config, sources: MetricsSources): Promise<MetricsSetup> {
  if (config.metrics === null) return { metrics: noMetrics, listener: null, close: async () => undefined };
  const idleMs = config.sessionIdleTimeoutSeconds * 1000;
  const live = sources.db.sqlite.prepare("SELECT count(*) AS n FROM sessions WHERE expires_at > ? AND last_seen_at > ?");
  const metrics = createPrometheusMetrics({
    countLiveSessions: () => {
      const now = sources.clock.now();
      const row: unknown = live.get(now, now - idleMs);
      return typeof row === "object" && row !== null && "n" in row && typeof row.n === "number" ? row.n : 0;
    },
    upstreams: sources.upstreams,
    routes: sources.routes,
  });
  timeStatements(sources.db.sqlite, metrics);
  const unsubscribe = sources.events.onEnded((event) => metrics.sessionEnded(event.reason));
  const listener = await startMetricsListener(metrics, config.metrics);
  return {
    metrics,
    listener,
    async close() {
      unsubscribe();
      await listener.close();
    },
  };
}

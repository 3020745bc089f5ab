import type BetterSqlite3 from "better-sqlite3";
import type { Config } from "../config";
import type { SessionEventBus } from "../store/types";
import { timeStatements } from "./database";
import { startMetricsListener, type MetricsListener } from "./listener";
import { noMetrics, type Metrics } from "./metrics";
import { createPrometheusMetrics } from "./prometheus";

export interface MetricsSetup {
  metrics: Metrics;
  /** Null when METRICS_PORT is unset. */
  listener: MetricsListener | null;
  /** Counts session ends heard on the store's bus (called once the store is open). */
  observe(events: Pick<SessionEventBus, "subscribe">): void;
  close(): Promise<void>;
}

export interface MetricsSources {
  /** Sessions alive now, read through the store when Prometheus scrapes. */
  countLiveSessions: () => Promise<number>;
  /**
   * The SQLite handle, when that is the engine: its statements are timed by wrapping
   * `prepare`, so this must run before the store prepares its own. PostgreSQL statements
   * are not timed here (null).
   */
  sqlite: BetterSqlite3.Database | null;
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
  if (config.metrics === null) return { metrics: noMetrics, listener: null, observe: () => undefined, close: async () => undefined };
  const metrics = createPrometheusMetrics({
    countLiveSessions: sources.countLiveSessions,
    upstreams: sources.upstreams,
    routes: sources.routes,
  });
  if (sources.sqlite !== null) timeStatements(sources.sqlite, metrics);
  let unsubscribe = (): void => undefined;
  const listener = await startMetricsListener(metrics, config.metrics);
  return {
    metrics,
    listener,
    observe(events) {
      unsubscribe = events.subscribe((event) => metrics.sessionEnded(event.reason));
    },
    async close() {
      unsubscribe();
      await listener.close();
    },
  };
}

import { performance } from "node:perf_hooks";
import type BetterSqlite3 from "better-sqlite3";
import { statementKind, type PrometheusMetrics } from "./prometheus";

const TIMED_METHODS = ["run", "get", "all"] as const;

/**
 * Times every statement prepared from now on: drizzle prepares each query through
 * `sqlite.prepare`, and the session store prepares its hot lookups there once, so one wrap
 * here covers them all without a change to the stores. Only called when metrics are on;
 * with them off the database is left exactly as it was.
 */
export function timeStatements(sqlite: BetterSqlite3.Database, metrics: Pick<PrometheusMetrics, "databaseQuery">): void {
  const prepare = sqlite.prepare.bind(sqlite);
  sqlite.prepare = function timedPrepare<P extends unknown[] | {} = unknown[], R = unknown>(source: string): BetterSqlite3.Statement<P, R> {
    const statement = prepare<P, R>(source);
    const kind = statementKind(source);
    for (const name of TIMED_METHODS) {
      const method: unknown = Reflect.get(statement, name);
      if (typeof method !== "function") continue;
      // An own property shadows the prototype's method; `raw()` and `pluck()` return the
      // same object, so their runs are timed too.
      Object.defineProperty(statement, name, {
        configurable: true,
        writable: true,
        value: function timed(this: unknown, ...args: unknown[]): unknown {
          const started = performance.now();
          try {
            const result: unknown = Reflect.apply(method, this, args);
            return result;
          } finally {
            metrics.databaseQuery(kind, (performance.now() - started) / 1000);
          }
        },
      });
    }
    return statement;
  };
}

import { performance } from "node:perf_hooks";
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app-env";
import type { Metrics } from "./metrics";

/**
 * Counts and times each /api request from its arrival at the relay to its answer's headers
 * (the body streams on afterwards). Refusals count too: app.onError has already turned
 * them into the answer when `next` returns. Mounted only when metrics are on.
 */
export function measureAPI(metrics: Metrics): MiddlewareHandler<AppEnv> {
  return async function measure(c, next) {
    const started = performance.now();
    try {
      await next();
    } finally {
      metrics.apiRequest({
        // The configured prefix the relay matched, never the path the client sent.
        upstream: c.var.upstream ?? null,
        method: c.req.method,
        status: c.var.sentStatus ?? c.res.status,
        seconds: (performance.now() - started) / 1000,
      });
    }
  };
}

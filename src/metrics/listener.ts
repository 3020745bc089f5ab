import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { PrometheusMetrics } from "./prometheus";

export interface MetricsListener {
  server: Server;
  /** `http://host:port` it listens on. */
  url: string;
  close(): Promise<void>;
}

/**
 * `GET /metrics` on a listener of its own (SECURITY.md I44): not a route of the public app,
 * so no proxy rule or middleware order can expose it; bind it to loopback (the default) or
 * to an address only the Prometheus server reaches. Anything else is a 404.
 */
export async function startMetricsListener(metrics: PrometheusMetrics, options: { host: string; port: number }): Promise<MetricsListener> {
  const server = createServer({ requestTimeout: 10_000, headersTimeout: 5_000 }, (req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
      res.end("not found\n");
      return;
    }
    metrics.exposition().then(
      (text) => {
        res.writeHead(200, { "content-type": metrics.contentType, "cache-control": "no-store" });
        res.end(req.method === "HEAD" ? undefined : text);
      },
      (error: unknown) => {
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end(`metrics failed: ${error instanceof Error ? error.message : "unknown error"}\n`);
      },
    );
  });
  // A scraper keeps one connection; it needs no more than a few.
  server.maxConnections = 64;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const url = `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}`;
  return {
    server,
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

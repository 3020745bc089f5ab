import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Hono, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { serveStatic } from "@hono/node-server/serve-static";
import type { AppEnv } from "./app-env";
import type { AuditLog } from "./audit/log";
import { csrfMiddleware } from "./auth/csrf";
import { loginRoutes } from "./auth/login";
import type { Provider } from "./auth/providers";
import { sessionRoutes } from "./auth/routes";
import { sessionMiddleware } from "./auth/session-middleware";
import type { Clock } from "./clock";
import type { Config } from "./config";
import { clientIP } from "./http/client-ip";
import { errorHandler, jsonError, notFound } from "./http/errors";
import { securityHeadersMiddleware } from "./http/headers";
import { staticGuard } from "./http/static-guard";
import { RateLimiter, rateLimitMiddleware } from "./http/rate-limit";
import { requestIdMiddleware } from "./http/request-id";
import type { Metrics } from "./metrics/metrics";
import type { AssertionSigner } from "./proxy/assertion";
import type { Store } from "./store/types";

export interface AppDeps {
  config: Config;
  /** Sessions, accounts, logins in progress: whichever engine runs (STYLE.md 13). */
  store: Store;
  providers: Map<string, Provider>;
  signer: AssertionSigner;
  audit: AuditLog;
  clock: Clock;
  metrics: Metrics;
  /** True when the game backend answers (for /readyz). */
  isBackendReady: () => Promise<boolean>;
  /** Routes mounted by the other parts (ws tickets, /api) on the same middleware stack. */
  mount?: (app: Hono<AppEnv>) => void;
}

const PUBLIC_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../public");
const BODY_LIMIT = 1024 * 1024;
const METHODS_IN_USE = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/**
 * The HTTP side of Portcullis. The middleware order is the security model read top to
 * bottom: headers on everything, method allowlist, client IP, body limit, session, rate
 * limits, CSRF, then routes. No I/O happens here; `createApp` only wires.
 */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const { config, audit } = deps;
  const app = new Hono<AppEnv>();
  const providerOrigins = [...new Set([...deps.providers.values()].map((p) => p.authorizationOrigin))];

  app.use(requestIdMiddleware());
  app.use(securityHeadersMiddleware({ publicOrigin: config.publicOrigin, formActionOrigins: providerOrigins, connectOrigins: [] }));
  app.use(async function requestBasics(c, next) {
    // SECURITY.md H36: only the methods in use; TRACE and friends never reach a route.
    if (!METHODS_IN_USE.has(c.req.method)) {
      return jsonError(405, "method_not_allowed", "This method is not used here.");
    }
    c.set("noStore", false);
    c.set("clientIP", clientIP(c.env?.incoming?.socket?.remoteAddress, c.req.header("x-forwarded-for"), config.trustProxy));
    return next();
  });
  // The unread rest of the body is still on the wire: close the connection after answering.
  const tooLarge = (): Response => jsonError(413, "too_large", "The request body is larger than 1 MiB.", { connection: "close" });
  const limitStreamedBody = bodyLimit({ maxSize: BODY_LIMIT, onError: tooLarge });
  // hono's bodyLimit, decided from the headers where they decide it: a GET or HEAD has no
  // body, and without Transfer-Encoding the declared Content-Length is the whole body (Node
  // refuses a malformed one). Only a chunked body is counted as it streams in. This spares
  // building a whole web Request on every /api GET and ticket POST (issue 14).
  const limitBody: MiddlewareHandler<AppEnv> = async (c, next) => {
    if (c.req.method === "GET" || c.req.method === "HEAD") return next();
    if (c.req.header("transfer-encoding") !== undefined) return limitStreamedBody(c, next);
    return Number(c.req.header("content-length") ?? "0") > BODY_LIMIT ? tooLarge() : next();
  };
  app.use("/auth/*", limitBody);
  app.use("/api/*", limitBody);
  const { store } = deps;
  const session = sessionMiddleware(store.sessions);
  app.use("/auth/*", session);
  app.use("/api/*", session);
  // Rate limits before CSRF: a refusal must cost its sender a token too, or a flood of
  // CSRF-less POSTs is answered (and audited) at full speed forever (SECURITY.md H34, I38).
  // The session lookup above is one indexed read, so per-session keys still apply.
  app.use("/auth/*", rateLimitMiddleware("auth", new RateLimiter(config.rateLimits.auth, deps.clock), audit, deps.metrics));
  const loginLimit = rateLimitMiddleware("login", new RateLimiter(config.rateLimits.login, deps.clock), audit, deps.metrics);
  app.use("/auth/login/*", loginLimit);
  app.use("/auth/callback/*", loginLimit);
  app.on("POST", "/auth/ws-ticket", rateLimitMiddleware("ticket", new RateLimiter(config.rateLimits.ticket, deps.clock), audit, deps.metrics));
  app.use("/api/*", rateLimitMiddleware("api", new RateLimiter(config.rateLimits.api, deps.clock), audit, deps.metrics));
  const csrf = csrfMiddleware(config.allowedOrigins, audit);
  app.use("/auth/*", csrf);
  app.use("/api/*", csrf);

  app.route("/auth", loginRoutes({ ...deps, attempts: store.loginAttempts, accounts: store.accounts, sessions: store.sessions }));
  app.route("/auth", sessionRoutes({ ...deps, sessions: store.sessions }));
  deps.mount?.(app);

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", async (c) => {
    // The database answers, and (with more than one node) this node hears the others'
    // session ends: a node cut off from them must not take traffic (issue 13).
    const database = (await store.isHealthy()) && store.events.connected;
    const backend = await deps.isBackendReady();
    // Identity providers whose discovery is still being retried: their logins answer 503.
    // Names only: the reason (URLs, errors) is for the operator's log, not this open route.
    const unavailableProviders = [...deps.providers.values()].filter((p) => p.unavailable() !== null).map((p) => p.name);
    const ready = database && backend && unavailableProviders.length === 0;
    return c.json({ status: ready ? "ready" : "not_ready", database, backend, unavailableProviders }, ready ? 200 : 503);
  });
  app.get("/.well-known/jwks.json", (c) => {
    c.header("Content-Type", "application/jwk-set+json; charset=utf-8");
    c.header("Cache-Control", "public, max-age=300");
    // Game backends on other origins fetch this from their servers, not browsers: no CORS.
    return c.body(deps.signer.jwksJSON());
  });

  // A known path with the wrong method is a 405, not a 404 (and GET /auth/logout changes nothing).
  const methodNotAllowed: MiddlewareHandler<AppEnv> = async () =>
    jsonError(405, "method_not_allowed", "This route does not take that method.");
  for (const path of ["/auth/logout", "/auth/ws-ticket", "/auth/me", "/auth/sessions", "/auth/sessions/:id", "/auth/login/:provider", "/auth/callback/:provider", "/healthz", "/readyz"]) {
    app.all(path, methodNotAllowed);
  }

  // Behind the same headers and CSP as everything above: a studio's own built front-end
  // (STATIC_DIR) or the demo client. serveStatic refuses `..`, encoded dots and backslashes.
  const staticRoot = config.staticDir === null ? PUBLIC_DIR : resolve(config.staticDir);
  app.use("/*", staticGuard(staticRoot));
  app.use("/*", serveStatic({ root: staticRoot }));
  app.notFound(() => notFound());
  app.onError(
    errorHandler((error, c) => {
      audit.write("request.refused", {
        status: 500,
        ip: c.var.clientIP,
        path: c.req.path,
        method: c.req.method,
        requestId: c.var.requestId,
        detail: error instanceof Error ? error.name : "unknown error",
      });
      process.stderr.write(`unexpected error on ${c.req.method} ${c.req.path}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    }),
  );
  return app;
}

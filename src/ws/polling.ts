import { Hono, type Context, type MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { AppEnv } from "../app-env";
import type { AuditLog } from "../audit/log";
import { requireSession } from "../auth/routes";
import { sessionMiddleware } from "../auth/session-middleware";
import type { Clock } from "../clock";
import type { Config } from "../config";
import type { Metrics } from "../metrics/metrics";
import type { AccountRepository, SessionRepository } from "../store/types";
import { jsonError, refuse } from "../http/errors";
import { RateLimiter, rateLimitMiddleware } from "../http/rate-limit";
import type { AssertionSigner } from "../proxy/assertion";
import { forwardRequest, playerAssertion } from "../proxy/relay";
import { GOING_AWAY, SESSION_ENDED, type LiveConnection, type SocketRegistry } from "./registry";
import { buildWebSocketRoutes, resolveWebSocketRoute } from "./routes";

export interface LongPollingDeps {
  config: Config;
  sessions: SessionRepository;
  accounts: AccountRepository;
  registry: SocketRegistry;
  signer: AssertionSigner;
  audit: AuditLog;
  clock: Clock;
  metrics: Metrics;
  /** How long the backend has to answer a poll, the streamed answer included (30 s; tests shorten it). */
  timeoutMs?: number;
}

// As long as an /api exchange: engine.io answers a held poll within its pingInterval (25 s).
const POLL_TIMEOUT_MS = 30_000;

/**
 * Socket.IO's HTTP long-polling transport on the WebSocket routes (CONTRACT.md: "a WebSocket
 * route's long-polling requests"): `GET` and `POST` on a route's path whose query says
 * `transport=polling`, and nothing else — the route does not become a general HTTP relay.
 * The checks are those of `/api`, in its order: session, the /api rate limit (its own
 * buckets: a game's polls do not eat its API budget), then CSRF, for GET too, since a poll
 * hands the player's messages out. The backend gets the route's identity assertion and,
 * from the relay `/api` uses, the same header stripping, bounded body and streamed answer.
 *
 * A poll in flight is one of its session's live connections in the socket registry: logout,
 * revocation, expiry (the registry's recheck) and shutdown end it as they close sockets,
 * within 1 s, with the contract's 401 (or 503 at shutdown) when the backend has not answered
 * yet, or by cutting the answer when it has.
 */
export function longPollingRoutes(deps: LongPollingDeps): Hono<AppEnv> {
  const { config, audit } = deps;
  const app = new Hono<AppEnv>();
  const routes = buildWebSocketRoutes(config);
  const publicProto = new URL(config.publicOrigin).protocol.replace(":", "");
  const session = sessionMiddleware(deps.sessions);
  const rateLimit = rateLimitMiddleware("polling", new RateLimiter(config.rateLimits.api, deps.clock), audit, deps.metrics);
  const csrf = csrfOnEveryMethod(new Set(config.allowedOrigins), audit);
  const unregister = (poll: HeldPoll): void => deps.registry.remove(poll);

  const relay = async function relayPoll(c: Context<AppEnv>): Promise<Response> {
    const { session, account } = requireSession(c);
    const resolved = resolveWebSocketRoute(routes, c.env?.incoming?.url ?? new URL(c.req.url).pathname);
    if ("refusal" in resolved) {
      if (resolved.refusal === "bad_path") refuse(400, "bad_path", "That path is not allowed.");
      refuse(404, "not_found", "No such route.");
    }
    const { route, url } = resolved;
    const poll = new HeldPoll(session.id, session.accountId, deps.clock.now(), unregister);
    deps.registry.add(poll);
    // The response's own end (answered, cut, or the browser gone) takes the poll out of the
    // registry: a streamed answer outlives this handler.
    const outgoing = c.env?.outgoing;
    if (outgoing === undefined) poll.finish();
    else outgoing.once("close", () => poll.finish());
    try {
      return await forwardRequest(c, {
        url,
        upstream: route.path,
        sessionId: session.id,
        publicProto,
        audit,
        timeoutMs: deps.timeoutMs ?? POLL_TIMEOUT_MS,
        signal: poll.signal,
        credential: async () => playerAssertion(deps.signer, session, account, route.audience, { reuse: true }),
      });
    } catch (error) {
      // Settled without an answer to stream: nothing to wait for.
      poll.finish();
      throw error;
    }
  };

  // Only engine.io's polling requests take this chain; anything else on the path falls
  // through to the rest of the app (a 404), without a session lookup or a rate-limit token.
  const pollingOnly: MiddlewareHandler<AppEnv> = async function pollingOnly(c, next) {
    if (new URL(c.req.url).searchParams.get("transport") !== "polling") return next();
    // A poll's answer is the player's messages: never cached, whatever the backend says.
    c.set("noStore", true);
    let answer: Response | undefined;
    await session(c, async () => {
      await rateLimit(c, async () => {
        await csrf(c, async () => {
          answer = await relay(c);
        });
      });
    });
    return answer;
  };
  for (const route of routes) {
    app.on(["GET", "POST"], route.prefix === null ? route.path : `${route.prefix}*`, pollingOnly);
  }
  return app;
}

/**
 * CONTRACT.md's CSRF rule, here for GET as well (app.ts's middleware spares safe methods
 * outside /api): `X-CSRF: 1` — which engine.io-client sends through `extraHeaders` — and an
 * allowed Origin, or no Origin with `Sec-Fetch-Site: same-origin` (browsers send no Origin
 * on a same-origin GET). A foreign Origin is refused whatever else is present.
 */
function csrfOnEveryMethod(allowed: Set<string>, audit: AuditLog): MiddlewareHandler<AppEnv> {
  return async function pollCSRF(c, next) {
    const origin = c.req.header("origin");
    const sameOrigin = origin !== undefined && origin !== "null" ? allowed.has(origin) : c.req.header("sec-fetch-site") === "same-origin";
    const reason = c.req.header("x-csrf") !== "1" ? "missing X-CSRF: 1" : sameOrigin ? null : "origin not allowed on a long-polling request";
    if (reason === null) return next();
    const where = { method: c.req.method, path: c.req.path, origin: origin ?? "(none)", ip: c.var.clientIP, sessionId: c.var.session?.id };
    audit.write("csrf.refused", { reason, ...where });
    refuse(403, "csrf", "This request must come from the game's own page.");
  };
}

/**
 * A long-polling request in flight, as the registry sees a socket. Closing it aborts the
 * backend exchange: before the backend answered, the browser gets 401 (session ended) or
 * 503 (shutdown), which engine.io-client reports as a transport error with that status.
 */
class HeldPoll implements LiveConnection {
  readonly ended: Promise<void>;
  private readonly controller = new AbortController();
  private resolveEnded: () => void = () => undefined;
  private finished = false;

  constructor(
    readonly sessionId: string,
    readonly accountId: string,
    /** A poll is the player's activity, as a message is on a socket. */
    readonly lastMessageAt: number,
    private readonly onFinished: (poll: HeldPoll) => void,
  ) {
    this.ended = new Promise((resolve) => {
      this.resolveEnded = resolve;
    });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  close(code: number): void {
    if (code === SESSION_ENDED) this.abort(401, "no_session", "Your session has ended.");
    else if (code === GOING_AWAY) this.abort(503, "unavailable", "The server is shutting down; reconnect.", { "retry-after": "1" });
    else this.abort(502, "upstream_unreachable", "The poll was ended.");
  }

  heartbeat(): void {
    // A poll is bounded by its own timeout; there is nothing to ping.
  }

  terminate(): void {
    this.close(GOING_AWAY);
  }

  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.onFinished(this);
    this.resolveEnded();
  }

  private abort(status: 401 | 502 | 503, error: string, message: string, headers: Record<string, string> = {}): void {
    if (this.controller.signal.aborted) return;
    this.controller.abort(new HTTPException(status, { res: jsonError(status, error, message, headers), message }));
  }
}

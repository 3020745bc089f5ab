import type { IncomingMessage } from "node:http";
import { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { AuditLog } from "../audit/log";
import { SESSION_COOKIE, readCookie } from "../auth/cookies";
import type { Clock } from "../clock";
import type { Config } from "../config";
import { addressGroup, clientIP } from "../http/client-ip";
import { RateLimiter } from "../http/rate-limit";
import { REQUEST_ID_HEADER, requestIdFrom } from "../http/request-id";
import type { Metrics } from "../metrics/metrics";
import type { AssertionSigner } from "../proxy/assertion";
import { openBackendSocket } from "./backend-handshake";
import { acceptKey } from "./frames";
import { Relay, type RelayLimits } from "./relay";
import { GOING_AWAY, SESSION_ENDED, type LiveConnection, type SocketRegistry } from "./registry";
import { buildWebSocketRoutes, resolveWebSocketRoute } from "./routes";
import type { SessionRepository, SocketSlots } from "../store/types";

const TICKET_PREFIX = "ticket.";
const BACKEND_HANDSHAKE_TIMEOUT_MS = 10_000;
// CONTRACT.md: reading from one side pauses while the other has more than 1 MiB buffered.
const HIGH_WATER_BYTES = 1024 * 1024;
const WEBSOCKET_KEY = /^[+/0-9A-Za-z]{22}==$/;
// RFC 7230 3.2.6 token characters, as RFC 6455 4.1 requires of a subprotocol name.
const SUBPROTOCOL_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Upgrades waiting for their backend handshake hold two sockets each: cap them, so a
// stalled backend cannot make the gate pile up connections (issue 7, SECURITY.md H35).
const MAX_UPGRADES_IN_PROGRESS = 1_000;

export interface GateDeps {
  config: Config;
  sessions: SessionRepository;
  /** Spends tickets and counts WS_MAX_SOCKETS_PER_SESSION across every node on the database. */
  socketSlots: SocketSlots;
  registry: SocketRegistry;
  signer: AssertionSigner;
  audit: AuditLog;
  clock: Clock;
  metrics: Metrics;
  limits?: Partial<RelayLimits>;
  /** How long the backend has to accept its own upgrade (10 s; tests shorten it). */
  backendHandshakeTimeoutMs?: number;
}

export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/**
 * A refusal: the HTTP status written on the raw socket, the error code of CONTRACT.md's
 * JSON error shape, and the reason for the audit log.
 */
/** What a refusal is written with: the audit log, the metrics, and the upgrade's identity. */
interface UpgradeContext {
  audit: AuditLog;
  metrics: Metrics;
  ip: string;
  requestId: string;
  sessionId: string | undefined;
}

class Refusal {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly reason: string,
    readonly headers: Record<string, string> = {},
  ) {}
}

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  429: "Too Many Requests",
  502: "Bad Gateway",
  503: "Service Unavailable",
};

/**
 * The gate of `/ws` and every configured WebSocket route (CONTRACT.md "The WebSocket gate",
 * SECURITY.md E22): a flat list of guards in the contract's order, the same for every
 * route, all before the handshake and before any backend connection. Each refusal is a
 * plain HTTP status on the raw socket, which is then destroyed; no path leaves a socket
 * open (ws `abortHandshake`).
 */
export function createUpgradeGate(deps: GateDeps): UpgradeHandler {
  const { config, audit } = deps;
  const allowedOrigins = new Set(config.allowedOrigins);
  // The route table is data, read once (STYLE.md 16): below, the gate looks a route up and
  // takes its backend, subprotocols and limits from it; it never branches on a path.
  const routes = buildWebSocketRoutes(config);
  const upgradeLimiter = new RateLimiter(config.rateLimits.upgrade, deps.clock);
  const backendHandshakeTimeoutMs = deps.backendHandshakeTimeoutMs ?? BACKEND_HANDSHAKE_TIMEOUT_MS;
  let upgradesInProgress = 0;
  // Made once, not per upgrade: a closure made inside the gate would keep that upgrade's
  // whole scope (session, headers, assertion) alive for as long as the relay lives.
  // One per route, so the socket gauge is labelled with the configured path (bounded: the
  // operator's routes, never a path the client chose; SECURITY.md I44).
  const unregisterFor = new Map(
    routes.map((route) => [
      route,
      (connection: LiveConnection): void => {
        deps.registry.remove(connection);
        deps.metrics.socketClosed(route.path);
      },
    ]),
  );

  return function upgradeGate(req, socket, head) {
    socket.on("error", destroyOnError);
    void admit(req, socket, head);
  };

  async function admit(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    // The one header read before the rate limit, and only with TRUST_PROXY > 0: a split on
    // "," and a trim, linear in its length (SECURITY.md I37).
    const ip = clientIP(req.socket.remoteAddress, headerValue(req, "x-forwarded-for"), config.trustProxy);
    // Needed by the rate limit's own audit line; bounded work: the length is checked before
    // the one linear pattern runs on at most 64 characters (SECURITY.md I37).
    const upgrade: UpgradeContext = { audit, metrics: deps.metrics, ip, requestId: requestIdFrom(headerValue(req, "x-request-id")), sessionId: undefined };
    const { requestId } = upgrade;
    try {
      // 1. The path, the method, a well-formed upgrade offering the route's subprotocol.
      // Checked here as strictly as `ws` will check it at the handshake, so that a request we
      // let through to the backend is never one `ws` then refuses with the backend left open.
      // Stryker: equivalent (`?? ""`) — Node sets url on every request it has parsed.
      const resolved = resolveWebSocketRoute(routes, req.url ?? "");
      if ("refusal" in resolved) {
        if (resolved.refusal === "bad_path") throw new Refusal(400, "bad_path", "path not allowed");
        throw new Refusal(404, "not_found", "no WebSocket route");
      }
      const { route, url: backendURL } = resolved;
      // Node hands an upgrade a net.Socket (a TLSSocket behind TLS); the relay needs one.
      // Stryker: not reached by a test, for that reason.
      if (!(socket instanceof Socket)) throw new Refusal(400, "bad_upgrade", "not a socket");
      if (req.method !== "GET") throw new Refusal(405, "method_not_allowed", "method");
      // Rate limit before any header is parsed (SECURITY.md I37) and before any database
      // work (H34): whatever a request costs past this line, one IP pays it a bounded
      // number of times.
      const rate = upgradeLimiter.take(`ip:${addressGroup(ip)}`);
      if (!rate.allowed) {
        // Stryker: the metrics label enforces nothing (SECURITY.md I44 bounds labels, not their text).
        deps.metrics.rateLimited("upgrade");
        audit.write("ratelimit.hit", { reason: "upgrade", ip, requestId });
        throw new Refusal(429, "rate_limited", "upgrade rate limit", { "Retry-After": String(rate.retryAfterSeconds) });
      }
      const protocols = offeredProtocols(req);
      if (
        headerValue(req, "upgrade")?.toLowerCase() !== "websocket" ||
        !listIncludes(headerValue(req, "connection"), "upgrade") ||
        headerValue(req, "sec-websocket-version") !== "13" ||
        // Stryker: equivalent (`?? ""`) — no other string matches WEBSOCKET_KEY either.
        !WEBSOCKET_KEY.test(headerValue(req, "sec-websocket-key") ?? "") ||
        protocols === null ||
        !protocols.includes(route.protocol)
      ) {
        throw new Refusal(400, "bad_upgrade", "malformed upgrade request");
      }
      // 2. Exact Origin (RFC 6455 10.2): browsers always send it, and cookies ride along
      // cross-site WebSocket upgrades, so this is the cross-site WebSocket hijacking defence.
      const origin = headerValue(req, "origin");
      if (origin === undefined || !allowedOrigins.has(origin)) throw new Refusal(403, "origin", "origin not allowed");
      // 3. The session cookie.
      const token = readCookie(headerValue(req, "cookie"), SESSION_COOKIE);
      const found = token === null ? null : await deps.sessions.authenticate(token, { slide: true });
      if (found === null) throw new Refusal(401, "no_session", "no valid session");
      const { session, account } = found;
      upgrade.sessionId = session.id;
      // SECURITY.md H34: per session as well as per IP, so one session cannot get around the
      // limit from rotating addresses. Taken before the ticket: a refusal leaves it unspent.
      const sessionRate = upgradeLimiter.take(`session:${session.id}`);
      if (!sessionRate.allowed) {
        // Stryker: the metrics label enforces nothing (SECURITY.md I44 bounds labels, not their text).
        deps.metrics.rateLimited("upgrade");
        audit.write("ratelimit.hit", { reason: "upgrade", ip, sessionId: session.id, requestId });
        throw new Refusal(429, "rate_limited", "upgrade rate limit", { "Retry-After": String(sessionRate.retryAfterSeconds) });
      }
      // 4. A one-time ticket, in the subprotocol header so it never reaches an access log.
      const ticket = protocols.find((p) => p.startsWith(TICKET_PREFIX))?.slice(TICKET_PREFIX.length);
      if (ticket === undefined) throw new Refusal(401, "bad_ticket", "no ticket");
      // Refused before the ticket is spent: the browser may retry with it.
      // test/ws/gate-busy.test.ts holds 1,000 upgrades at a stalled backend to prove this cap.
      if (upgradesInProgress >= MAX_UPGRADES_IN_PROGRESS) throw new Refusal(503, "busy", "too many upgrades in progress");
      // 5. The ticket is spent (whatever follows) and must be this session's: a ticket leaked
      // from one session opens nothing for another, and cannot be retried. 6. A cap on
      // sockets per session (WebSocket cheat sheet: bound what one user holds), across every
      // node: the slot counts from now on, so the cap holds for upgrades made in parallel,
      // here or on another node. Both in one call to the store, in this order.
      const admission = await deps.socketSlots.admit(ticket, session.id, config.wsMaxSocketsPerSession);
      if (admission.status === "wrong_session") throw new Refusal(403, "wrong_session", "ticket of another session");
      if (admission.status === "full") throw new Refusal(429, "too_many_sockets", "too many sockets");
      if (admission.status !== "admitted") throw new Refusal(401, "bad_ticket", `ticket ${admission.status}`);
      const { slot } = admission;
      const releaseSlot = (): void => releaseQuietly(deps.socketSlots, slot);
      // The browser may have left while the database answered.
      // Stryker: not reached by a test (a browser that leaves within the store's few
      // microseconds); it only spares the backend an attempt the close handler would drop.
      if (socket.destroyed) {
        releaseSlot();
        socket.destroy();
        return;
      }

      // 7. The backend must accept its own upgrade before we answer ours (fail closed).
      const assertion = deps.signer.sign({
        sub: account.id,
        sid: session.id,
        name: account.displayName,
        aud: route.audience,
        idp: session.provider,
        idpSub: account.providerSubject,
      });
      // Stryker: equivalent (`?? ""`) — step 1 matched the key against WEBSOCKET_KEY.
      const key = headerValue(req, "sec-websocket-key") ?? "";
      let waiting = true;
      upgradesInProgress += 1;
      const settle = (): boolean => {
        if (!waiting) return false;
        waiting = false;
        upgradesInProgress -= 1;
        socket.off("close", onClientGone);
        socket.off("end", onClientGone);
        deps.registry.remove(pending);
        pending.settle();
        return true;
      };
      // The backend gets the browser's path rest and query, never the ticket: that stays in
      // the browser's Sec-WebSocket-Protocol, which is not forwarded.
      const abortBackend = openBackendSocket(
        { url: backendURL, protocol: route.backendProtocol, authorization: `Bearer ${assertion}`, timeoutMs: backendHandshakeTimeoutMs, requestId },
        {
          fail: (reason) => {
            if (!settle()) return;
            releaseSlot();
            refuse(socket, new Refusal(502, "backend_unavailable", reason), upgrade);
          },
          open: (backend, backendHead) => {
            // Stryker: equivalent (this block) — open never fires after settle(): every path that
            // settles also aborts the backend handshake, after which it fires no event.
            if (!settle()) {
              backend.destroy();
              return;
            }
            // Stryker: not reached by a test — a browser that left fires 'close'/'end' first, and
            // onClientGone settles the upgrade before the backend can open.
            if (!socket.writable) {
              releaseSlot();
              backend.destroy();
              return;
            }
            // Stryker: equivalent (the fallback) — unregisterFor holds every route of the table.
            const onClosed = unregisterFor.get(route) ?? ((connection: LiveConnection) => deps.registry.remove(connection));
            // RFC 6455 4.2.2: our own 101, naming the route's subprotocol (never the ticket),
            // and no extension.
            socket.write(
              "HTTP/1.1 101 Switching Protocols\r\n" +
                "Upgrade: websocket\r\n" +
                "Connection: Upgrade\r\n" +
                `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n` +
                `Sec-WebSocket-Protocol: ${route.protocol}\r\n` +
                `${REQUEST_ID_HEADER}: ${requestId}\r\n\r\n`,
            );
            const relay = new Relay({
              browser: socket,
              backend,
              sessionId: session.id,
              accountId: session.accountId,
              // SECURITY.md E24: the route's size cap holds both ways; no compression is negotiated.
              limits: { ...route.limits, highWaterBytes: HIGH_WATER_BYTES, ...deps.limits },
              clock: deps.clock,
              audit,
              metrics: deps.metrics,
              requestId,
              onClosed: unregisterAndRelease(onClosed, deps.socketSlots, slot),
            });
            deps.registry.add(relay);
            deps.metrics.upgrade("accepted");
            deps.metrics.socketOpened(route.path);
            audit.write("ws.upgrade.accepted", { sessionId: session.id, accountId: session.accountId, ip, requestId });
            relay.start({ browser: head, backend: backendHead });
          },
        },
      );
      // The upgrade counts as one of the session's sockets from now on: the cap holds for
      // upgrades made in parallel, and a session that ends meanwhile cancels it (CONTRACT.md:
      // its sockets close within 1 s) rather than getting a relay for a dead session.
      const pending = new PendingUpgrade(session.id, session.accountId, (refusal) => {
        if (!settle()) return;
        releaseSlot();
        abortBackend();
        refuse(socket, refusal, upgrade);
      });
      deps.registry.add(pending);
      // The browser may give up while we wait for the backend (a reset, or a FIN, which
      // alone would leave the half-open socket unclosed): never leave a backend socket
      // open for a browser that is gone.
      const onClientGone = (): void => {
        if (!settle()) return;
        releaseSlot();
        abortBackend();
        socket.destroy();
        deps.metrics.upgrade("client_gone");
        audit.write("ws.upgrade.refused", { status: 502, reason: "client left during backend handshake", ip, sessionId: session.id, requestId });
      };
      socket.once("close", onClientGone);
      socket.once("end", onClientGone);
    } catch (error) {
      if (error instanceof Refusal) {
        refuse(socket, error, upgrade);
        return;
      }
      // Anything unexpected (a database that cannot answer) still closes the socket with a
      // 503, never the process.
      // test/ws/gate-store-down.test.ts closes the database under the server to reach this.
      refuse(socket, new Refusal(503, "unavailable", "internal error"), upgrade);
    }
  }
}

/**
 * The relay's close callback: out of the registry, then the socket's slot freed. Made here,
 * not in the upgrade handler: a callback made there would keep the handler's whole scope
 * (the request, the assertion, the pending upgrade) alive as long as the socket lives, about
 * 10 KiB per idle connection (issue 13's slot release did exactly that until this).
 */
function unregisterAndRelease(unregister: (connection: LiveConnection) => void, slots: SocketSlots, slot: string): (connection: LiveConnection) => void {
  return (connection) => {
    unregister(connection);
    releaseQuietly(slots, slot);
  };
}

/** Frees a socket's slot without waiting; the database away, the slot lapses with its node's next renewal missing it. */
function releaseQuietly(slots: SocketSlots, slot: string): void {
  slots.release(slot).catch(() => undefined);
}

/**
 * An upgrade waiting for the backend's 101, in the registry as one of its session's
 * sockets. Closing it refuses the browser's upgrade with a plain HTTP status: no 101 has
 * been written yet.
 */
class PendingUpgrade implements LiveConnection {
  readonly lastMessageAt = 0;
  readonly ended: Promise<void>;
  private resolveEnded: () => void = () => undefined;

  constructor(
    readonly sessionId: string,
    readonly accountId: string,
    private readonly cancel: (refusal: Refusal) => void,
  ) {
    this.ended = new Promise((resolve) => {
      this.resolveEnded = resolve;
    });
  }

  close(code: number): void {
    if (code === SESSION_ENDED) this.cancel(new Refusal(401, "no_session", "session ended during the backend handshake"));
    else if (code === GOING_AWAY) this.cancel(new Refusal(503, "unavailable", "server shutting down"));
    else this.cancel(new Refusal(502, "backend_unavailable", "upgrade cancelled"));
  }

  heartbeat(): void {
    // Nothing to ping before the handshake; the backend handshake has its own timeout.
  }

  terminate(): void {
    this.close(GOING_AWAY);
  }

  /** The upgrade went one way or the other: it leaves the registry. */
  settle(): void {
    this.resolveEnded();
  }
}

/**
 * A socket error before the relay owns the socket: drop it (the relay adds its own handling).
 * Stryker: equivalent (the empty body) — a net.Socket that emits 'error' is already being
 * destroyed (autoDestroy); what matters is that a listener exists, so the error never throws.
 */
function destroyOnError(this: Duplex): void {
  this.destroy();
}

/** Writes a plain HTTP refusal on the raw socket and destroys it (ws `abortHandshake`); one audit event. */
function refuse(socket: Duplex, refusal: Refusal, upgrade: UpgradeContext): void {
  const { ip, sessionId, requestId } = upgrade;
  upgrade.metrics.upgrade(refusal.error);
  upgrade.audit.write("ws.upgrade.refused", { status: refusal.status, reason: refusal.reason, ip, requestId, ...(sessionId ? { sessionId } : {}) });
  // Stryker: not reached by a test (a browser that left between the check and this write);
  // destroying instead of writing to a socket that cannot be written is the only safe choice.
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify({ error: refusal.error, message: refusal.reason });
  const extra = Object.entries(refusal.headers).map(([name, value]) => `${name}: ${value}\r\n`);
  socket.once("finish", () => socket.destroy());
  socket.end(
    // Stryker: equivalent (`?? ""`) — every status the gate refuses with is in STATUS_TEXT.
    `HTTP/1.1 ${refusal.status} ${STATUS_TEXT[refusal.status] ?? "Error"}\r\n` +
      "Connection: close\r\n" +
      "Content-Type: application/json; charset=utf-8\r\n" +
      "Cache-Control: no-store\r\n" +
      "X-Content-Type-Options: nosniff\r\n" +
      `${REQUEST_ID_HEADER}: ${requestId}\r\n` +
      extra.join("") +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Whether a comma-separated header list (RFC 9110 5.6.1) names `token`, case-insensitively.
 * A split on "," and a trim are linear; a split on optional spaces around the comma
 * backtracks quadratically on a run of spaces: 16 KB of them cost 200 ms of event loop
 * per request (issue 11, SECURITY.md I37).
 */
function listIncludes(header: string | undefined, token: string): boolean {
  return header !== undefined && header.split(",").some((item) => item.trim().toLowerCase() === token);
}

/**
 * RFC 6455 4.1: `Sec-WebSocket-Protocol` is a comma-separated list of distinct tokens; null
 * if malformed. `ws` refuses duplicates too, so they must not get past the gate.
 */
function offeredProtocols(req: IncomingMessage): string[] | null {
  const header = headerValue(req, "sec-websocket-protocol");
  // Stryker: `>= 512` is the same bound, one byte apart.
  if (header === undefined || header.length > 512) return null;
  const protocols = header.split(",").map((p) => p.trim());
  const wellFormed = protocols.every((p) => SUBPROTOCOL_TOKEN.test(p));
  return wellFormed && new Set(protocols).size === protocols.length ? protocols : null;
}

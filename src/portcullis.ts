import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Writable } from "node:stream";
import { getRequestListener } from "@hono/node-server";
import { createApp } from "./app";
import { createAuditLog, type AuditLog } from "./audit/log";
import { AccountStore } from "./auth/accounts";
import { LoginAttemptStore } from "./auth/login-attempts";
import { createProviders, type Provider } from "./auth/providers";
import { SessionStore } from "./auth/session";
import { SessionEvents } from "./auth/session-events";
import { secureRandomBytes, systemClock, type Clock, type RandomBytes } from "./clock";
import type { Config, NamedKey } from "./config";
import { hmacSHA256 } from "./crypto/hash";
import { TokenCipher } from "./crypto/token-cipher";
import { openDatabase, type Database } from "./db/database";
import { AssertionSigner } from "./proxy/assertion";
import { TokenRefresher } from "./proxy/refresh";
import { apiRoutes } from "./proxy/relay";
import { loadUpstreams } from "./proxy/upstreams";
import { createUpgradeGate } from "./ws/gate";
import { GOING_AWAY, SocketRegistry } from "./ws/registry";
import { wsTicketRoutes } from "./ws/ticket-route";
import { TicketStore } from "./ws/tickets";

export interface PortcullisOptions {
  clock?: Clock;
  randomBytes?: RandomBytes;
  /** Where audit lines go (stdout by default). */
  auditStream?: Writable;
  /** A server already listening (tests listen on port 0 first to learn PUBLIC_ORIGIN). */
  server?: Server;
  /** Used for provider discovery and identity APIs. */
  fetch?: typeof fetch;
  /** Keys for demo mode, when the configuration has none. */
  keys?: { tokenEncryptionKeys: NamedKey[]; assertionSigningKeys: NamedKey[] };
  /** WebSocket timers (tests shorten the heartbeat to see a missed pong). */
  ws?: { heartbeatMs?: number; recheckMs?: number; backendHandshakeTimeoutMs?: number };
  /** The /api upstream timeout (30 s; tests shorten it). */
  upstreamTimeoutMs?: number;
}

export interface Portcullis {
  config: Config;
  server: Server;
  /** `http://host:port` the server actually listens on. */
  url: string;
  db: Database;
  sessions: SessionStore;
  events: SessionEvents;
  audit: AuditLog;
  signer: AssertionSigner;
  cipher: TokenCipher;
  providers: Map<string, Provider>;
  tickets: TicketStore;
  registry: SocketRegistry;
  close(): Promise<void>;
}

// Node's defaults are 60 s for headers and 300 s per request; SECURITY.md H35 wants ≤20/30.
const HEADERS_TIMEOUT_MS = 15_000;
const REQUEST_TIMEOUT_MS = 30_000;
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
const MAX_HEADER_BYTES = 16 * 1024;
const SWEEP_INTERVAL_MS = 60_000;
// In-flight requests get as long as the request timeout allows, no more.
const SHUTDOWN_DEADLINE_MS = REQUEST_TIMEOUT_MS;
// CONTRACT.md: ping every 30 s; session expiry rechecked at least every 60 s (ASVS 7.4.1).
const HEARTBEAT_MS = 30_000;
const RECHECK_MS = 30_000;
const SHUTDOWN_CLOSE_GRACE_MS = 1_000;

/** The composition root: builds every part from the configuration and starts serving. */
export async function startPortcullis(config: Config, options: PortcullisOptions = {}): Promise<Portcullis> {
  const clock = options.clock ?? systemClock;
  const randomBytes = options.randomBytes ?? secureRandomBytes;
  const tokenKeys = config.tokenEncryptionKeys ?? options.keys?.tokenEncryptionKeys;
  const signingKeys = config.assertionSigningKeys ?? options.keys?.assertionSigningKeys;
  if (tokenKeys === undefined || signingKeys === undefined) {
    throw new Error("no TOKEN_ENCRYPTION_KEYS / ASSERTION_SIGNING_KEYS (demo keys are only generated in demo mode)");
  }

  // The upstreams file is configuration: check it before any network or database I/O.
  const upstreams = loadUpstreams(config, config.providers.map((p) => p.name));
  const providers = await createProviders(config.providers, { publicOrigin: config.publicOrigin, clock, fetch: options.fetch });
  const db = openDatabase(config.databasePath);
  // The audit log names sessions by a keyed hash; the key is derived from the first token key.
  const audit = createAuditLog({
    stream: options.auditStream,
    filePath: config.auditLogPath,
    maxFileBytes: config.auditLogMaxBytes,
    hashKey: hmacSHA256((tokenKeys[0] as NamedKey).key, "portcullis audit session hash"),
    clock,
  });
  const cipher = new TokenCipher(tokenKeys, randomBytes);
  const events = new SessionEvents();
  const sessions = new SessionStore(db, cipher, events, audit, clock, randomBytes, {
    idleTimeoutSeconds: config.sessionIdleTimeoutSeconds,
    absoluteTimeoutSeconds: config.sessionAbsoluteTimeoutSeconds,
  });
  const accounts = new AccountStore(db, clock, randomBytes);
  const attempts = new LoginAttemptStore(db, cipher, clock, randomBytes);
  const signer = new AssertionSigner(signingKeys, config.publicOrigin, clock, randomBytes);
  const refresher = new TokenRefresher(sessions, providers, audit, clock);
  const tickets = new TicketStore(db, clock, randomBytes, config.wsTicketTTLSeconds);
  const registry = new SocketRegistry(events, sessions);
  registry.start({ heartbeatMs: options.ws?.heartbeatMs ?? HEARTBEAT_MS, recheckMs: options.ws?.recheckMs ?? RECHECK_MS });

  const app = createApp({
    config,
    db,
    sessions,
    accounts,
    attempts,
    providers,
    signer,
    audit,
    clock,
    isBackendReady: () => probe(config.gameBackendURL),
    mount: (app) => {
      app.route("/auth", wsTicketRoutes({ tickets, audit }));
      app.route(
        "/api",
        apiRoutes({
          routes: upstreams,
          signer,
          refresher,
          audit,
          clock,
          rateLimit: config.rateLimits.api,
          publicOrigin: config.publicOrigin,
          timeoutMs: options.upstreamTimeoutMs,
        }),
      );
    },
  });

  const server = options.server ?? createHTTPServer();
  server.maxConnections = config.maxConnections;
  // maxHeaderSize is a creation option; for a server made elsewhere the process default
  // (16 KiB since Node 14) already applies. Larger headers get 431.
  server.on("request", getRequestListener(app.fetch));
  server.on(
    "upgrade",
    createUpgradeGate({
      config,
      sessions,
      accounts,
      tickets,
      registry,
      signer,
      audit,
      clock,
      backendHandshakeTimeoutMs: options.ws?.backendHandshakeTimeoutMs,
    }),
  );
  if (!server.listening) {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.port, config.host, () => resolve());
    });
  }
  const address = server.address() as AddressInfo;
  const url = `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}`;

  const sweeper = setInterval(() => {
    sessions.sweepExpired();
    tickets.sweep();
  }, SWEEP_INTERVAL_MS);
  sweeper.unref();
  audit.write("server.started", { detail: `listening on ${url} for ${config.publicOrigin}` });

  return {
    config,
    server,
    url,
    db,
    sessions,
    events,
    audit,
    signer,
    cipher,
    providers,
    tickets,
    registry,
    async close() {
      clearInterval(sweeper);
      audit.write("server.stopping");
      // Tell every player to reconnect elsewhere (1001), give the closing handshakes a
      // moment, then drop whatever did not answer: shutdown must not wait 30 s per socket.
      await registry.closeAll(GOING_AWAY, "server shutting down", { graceMs: SHUTDOWN_CLOSE_GRACE_MS });
      registry.dispose();
      // Stop accepting; let requests in flight finish, closing each connection as soon as it
      // goes idle (not after the keep-alive timeout), and cut whatever is left at the deadline.
      await new Promise<void>((resolve) => {
        const sweep = setInterval(() => server.closeIdleConnections(), 100);
        const deadline = setTimeout(() => server.closeAllConnections(), SHUTDOWN_DEADLINE_MS);
        server.close(() => {
          clearInterval(sweep);
          clearTimeout(deadline);
          resolve();
        });
        server.closeIdleConnections();
      });
      await audit.close();
      db.close();
    },
  };
}

/**
 * The HTTP server with the limits of SECURITY.md H35. `connectionsCheckingInterval` is how
 * often Node enforces the header and request timeouts (default 30 s, which would let a
 * slowloris connection live up to 45 s); tests shorten the timeouts themselves.
 */
export function createHTTPServer(options: { headersTimeoutMs?: number; requestTimeoutMs?: number } = {}): Server {
  const server = createServer({
    maxHeaderSize: MAX_HEADER_BYTES,
    headersTimeout: options.headersTimeoutMs ?? HEADERS_TIMEOUT_MS,
    requestTimeout: options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS,
    connectionsCheckingInterval: Math.min(1_000, options.headersTimeoutMs ?? 1_000),
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
  });
  return server;
}

/** True when something answers HTTP at the game backend's base URL within 2 s. */
async function probe(base: string | null): Promise<boolean> {
  if (base === null) {
    return false;
  }
  try {
    const response = await fetch(base, { redirect: "manual", signal: AbortSignal.timeout(2_000) });
    await response.body?.cancel();
    return true;
  } catch {
    return false;
  }
}

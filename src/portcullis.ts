import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Writable } from "node:stream";
import { getRequestListener } from "@hono/node-server";
import { createApp } from "./app";
import { addressGroup } from "./http/client-ip";
import { createAuditLog, type AuditLog } from "./audit/log";
import { OperatorActionWatcher } from "./admin/operator-watch";
import { backchannelLogoutRoutes } from "./auth/backchannel-logout";
import { createProviders, type Provider, type Timers } from "./auth/providers";
import { secureRandomBytes, systemClock, type Clock, type RandomBytes } from "./clock";
import { ConfigError, readConfig, type Config, type NamedKey } from "./config";
import { hmacSHA256 } from "./crypto/hash";
import { TokenCipher } from "./crypto/token-cipher";
import { openDatabase } from "./db/database";
import { demoAssetRoutes } from "./demo/assets";
import { answerClientErrors, refusalBeforeApp, refusedForMissingHost } from "./http/errors";
import { securityHeaderList } from "./http/headers";
import type { Metrics } from "./metrics/metrics";
import { startMetrics } from "./metrics/setup";
import { AssertionSigner } from "./proxy/assertion";
import { TokenRefresher } from "./proxy/refresh";
import { apiRoutes } from "./proxy/relay";
import { loadUpstreams, readUpstreams } from "./proxy/upstreams";
import { createUpgradeGate } from "./ws/gate";
import { longPollingRoutes } from "./ws/polling";
import { GOING_AWAY, SocketRegistry } from "./ws/registry";
import { createPostgresStore } from "./store/postgres";
import { createSqliteStore, type SqliteHandles } from "./store/sqlite";
import type { Store } from "./store/types";
import { wsTicketRoutes } from "./ws/ticket-route";

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
  /** How often the server looks for the operator command's writes (250 ms). */
  operatorPollMs?: number;
  /** WebSocket timers (tests shorten the heartbeat to see a missed pong). */
  ws?: { heartbeatMs?: number; recheckMs?: number; backendHandshakeTimeoutMs?: number };
  /** The /api upstream timeout (30 s; tests shorten it). */
  upstreamTimeoutMs?: number;
  /** Provider discovery retries (tests fire them by hand). */
  timers?: Timers;
  /** Operator messages that are not audit events (discovery failures); stderr by default. */
  report?: (line: string) => void;
}

export interface Portcullis {
  config: Config;
  server: Server;
  /** `http://host:port` the server actually listens on. */
  url: string;
  /** Everything kept between requests, on whichever engine the configuration chose. */
  store: Store;
  /** The embedded engine's file and classes, for tests that look inside; null on PostgreSQL. */
  sqlite: SqliteHandles | null;
  audit: AuditLog;
  signer: AssertionSigner;
  cipher: TokenCipher;
  providers: Map<string, Provider>;
  registry: SocketRegistry;
  metrics: Metrics;
  /** `http://host:port` of the metrics listener; null when METRICS_PORT is unset. */
  metricsURL: string | null;
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
const REVOCATION_GRACE_MS = 2_000;
// How long a /readyz answer about the game backend is reused.
const READINESS_CACHE_MS = 2_000;

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
  // Discovery does not hold the start: the first attempt of each provider is awaited (a
  // reachable provider is usable from the first request), a failed one is retried in the
  // background while /readyz names it and its login answers 503.
  const discovery = createProviders(config.providers, {
    publicOrigin: config.publicOrigin,
    clock,
    fetch: options.fetch,
    timers: options.timers,
    report: options.report,
  });
  await discovery.firstAttempts;
  const providers = discovery.all;
  // The audit log names sessions by a keyed hash; the key is derived from the first token key.
  const audit = createAuditLog({
    stream: options.auditStream,
    filePath: config.auditLogPath,
    maxFileBytes: config.auditLogMaxBytes,
    hashKey: hmacSHA256((tokenKeys[0] as NamedKey).key, "portcullis audit session hash"),
    clock,
  });
  const cipher = new TokenCipher(tokenKeys, randomBytes);
  const report = options.report ?? ((line: string): void => void process.stderr.write(`${line}\n`));
  const storeOptions = {
    cipher,
    audit,
    clock,
    randomBytes,
    sessions: { idleTimeoutSeconds: config.sessionIdleTimeoutSeconds, absoluteTimeoutSeconds: config.sessionAbsoluteTimeoutSeconds },
    ticketTTLSeconds: config.wsTicketTTLSeconds,
  };
  // The one place that knows which engine runs: DATABASE_URL chooses PostgreSQL (any
  // number of nodes on one database), else the SQLite file. Everything below gets `store`.
  const sqliteDb = config.postgres === null ? openDatabase(config.databasePath) : null;
  let store: Store | null = null;
  // Off (a no-op object, nothing wrapped, no listener) unless METRICS_PORT is set. Made
  // before the SQLite store, so the statements it prepares once are timed too.
  const metricsSetup = await startMetrics(config, {
    countLiveSessions: () => store?.sessions.countLive() ?? Promise.resolve(0),
    sqlite: sqliteDb?.sqlite ?? null,
    upstreams: upstreams.map((route) => route.prefix),
    routes: config.wsRoutes.map((route) => route.path),
  });
  const { metrics } = metricsSetup;
  const sqlite = sqliteDb === null ? null : createSqliteStore({ ...storeOptions, db: sqliteDb });
  store =
    config.postgres === null
      ? (sqlite ?? failNoStore())
      : await createPostgresStore({
          ...storeOptions,
          postgres: config.postgres,
          // A lost listener, a NOTIFY that failed: the operator's log, never the audit log.
          onError: (error) => report(`database: ${error instanceof Error ? error.message : String(error)}`),
        });
  metricsSetup.observe(store.events);
  const signer = new AssertionSigner(signingKeys, config.publicOrigin, clock, randomBytes);
  const refresher = new TokenRefresher(store.sessions, store.refreshLease, providers, audit, clock, metrics);
  store.sessions.setGrantRevoker((grant) => refresher.revokeGrant(grant));
  // Closes this node's sockets of every session that ends, here or (PostgreSQL) on any node.
  const registry = new SocketRegistry(store.events, store.sessions, store.socketSlots);
  registry.start({ heartbeatMs: options.ws?.heartbeatMs ?? HEARTBEAT_MS, recheckMs: options.ws?.recheckMs ?? RECHECK_MS });
  // The operator's command runs as another process: its blocks and ended sessions reach
  // this one through the database (src/admin/operator-watch.ts).
  const operatorActions = new OperatorActionWatcher(store.operatorActions, store.sessions, audit);
  operatorActions.start({ pollMs: options.operatorPollMs });

  const app = createApp({
    config,
    store,
    providers,
    signer,
    audit,
    clock,
    metrics,
    isBackendReady: cachedProbe(() => probe(config.gameBackendURL), clock),
    mount: (app) => {
      app.route("/auth", wsTicketRoutes({ tickets: store.tickets, audit }));
      app.route(
        "/auth",
        backchannelLogoutRoutes({ providers, sessions: store.sessions, accounts: store.accounts, jtis: store.logoutTokenJTIs, audit, clock, fetch: options.fetch }),
      );
      app.route(
        "/api",
        apiRoutes({
          routes: upstreams,
          signer,
          refresher,
          audit,
          clock,
          publicOrigin: config.publicOrigin,
          metrics,
          timeoutMs: options.upstreamTimeoutMs,
        }),
      );
      if (!config.production) app.route("/", demoAssetRoutes());
      app.route("/", longPollingRoutes({ config, sessions: store.sessions, accounts: store.accounts, registry, signer, audit, clock, metrics, timeoutMs: options.upstreamTimeoutMs }));
    },
  });

  const server = options.server ?? createHTTPServer();
  server.maxConnections = config.maxConnections;
  // Behind a proxy every connection comes from the proxy: a per-address cap would cap the
  // proxy, so it is the proxy's job there (README).
  if (config.trustProxy === 0) capConnectionsPerAddress(server, config.maxConnectionsPerIP, audit);
  // maxHeaderSize is a creation option; for a server made elsewhere the process default
  // (16 KiB since Node 14) already applies. Larger headers get 431.
  // What Node or @hono/node-server refuses before Hono runs carries the same headers as
  // every answer from the app (SECURITY.md F31); the CSP names the same provider origins.
  const securityHeaders = securityHeaderList({
    publicOrigin: config.publicOrigin,
    formActionOrigins: [...new Set([...providers.values()].map((p) => p.authorizationOrigin))],
    connectOrigins: [],
  });
  const listener = getRequestListener(app.fetch, { errorHandler: refusalBeforeApp(securityHeaders) });
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    if (refusedForMissingHost(req, res, securityHeaders)) return;
    void listener(req, res);
  });
  answerClientErrors(server, securityHeaders);
  server.on(
    "upgrade",
    createUpgradeGate({
      config,
      sessions: store.sessions,
      socketSlots: store.socketSlots,
      registry,
      signer,
      audit,
      clock,
      metrics,
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

  // One sweep at a time; a database that cannot answer now is swept next time.
  let sweeping: Promise<unknown> | null = null;
  const sweeper = setInterval(() => {
    if (sweeping !== null) return;
    const running = store;
    sweeping = Promise.allSettled([running.sessions.sweepExpired(), running.tickets.sweep(), running.logoutTokenJTIs.sweep(), operatorActions.sweep()]).finally(() => {
      sweeping = null;
    });
  }, SWEEP_INTERVAL_MS);
  sweeper.unref();
  audit.write("server.started", { detail: `listening on ${url} for ${config.publicOrigin}` });

  return {
    config,
    server,
    url,
    store,
    sqlite,
    audit,
    signer,
    cipher,
    providers,
    registry,
    metrics,
    metricsURL: metricsSetup.listener?.url ?? null,
    async close() {
      clearInterval(sweeper);
      discovery.stop();
      operatorActions.stop();
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
      // Refresh-token revocations already started (SECURITY.md I43) get a short, bounded
      // wait: a provider that hangs must not hold the shutdown.
      await sweeping;
      await Promise.race([store.sessions.revocationsSettled(), new Promise((resolve) => setTimeout(resolve, REVOCATION_GRACE_MS).unref())]);
      await metricsSetup.close();
      await audit.close();
      await store.close();
    },
  };
}

function failNoStore(): never {
  throw new Error("the store is not open yet");
}

/**
 * The whole configuration checked at once: the environment, then the upstreams file read
 * with the providers the environment names (the demo provider in demo mode). Throws one
 * {@link ConfigError} listing every problem, so an operator fixes them in one round.
 */
export function checkConfiguration(env: Record<string, string | undefined>): Config {
  const { config, problems } = readConfig(env);
  const providerNames = config.demo !== null ? ["demo"] : config.providers.map((p) => p.name);
  readUpstreams(config, providerNames, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
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
    // Node's own refusal of an HTTP/1.1 request without Host is a bare 400 written before
    // any listener runs; without it, @hono/node-server refuses it and the answer is ours.
    requireHostHeader: false,
  });
  return server;
}

/**
 * SECURITY.md I39: `maxConnections` alone lets one client take every slot (10,000 idle
 * connections from one address and nobody else gets in; the header timeout does not help,
 * as connections that never send a byte are cheap to hold). Connections are counted per
 * address when the server accepts them and the excess is destroyed at once, before a
 * byte is read. An upgraded WebSocket keeps its connection, so it keeps counting until it
 * closes. An address's first refusal is audited, not each one, until all its connections
 * are gone: a flood must not become a flood of log lines (I38).
 */
export function capConnectionsPerAddress(server: Server, cap: number, audit: AuditLog): void {
  const open = new Map<string, number>();
  const refusing = new Set<string>();
  server.on("connection", (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined) {
      // Already gone (reset before we saw it): nothing to count.
      socket.destroy();
      return;
    }
    const group = addressGroup(address);
    const count = open.get(group) ?? 0;
    if (count >= cap) {
      if (!refusing.has(group)) {
        refusing.add(group);
        audit.write("request.refused", { reason: "connection_cap", ip: group, detail: `more than ${cap} connections from one address` });
      }
      socket.destroy();
      return;
    }
    open.set(group, count + 1);
    socket.once("close", () => {
      const left = (open.get(group) ?? 1) - 1;
      if (left === 0) {
        // Only an address that has gone away entirely gets a fresh audit line next time.
        open.delete(group);
        refusing.delete(group);
      } else {
        open.set(group, left);
      }
    });
  });
}


/**
 * /readyz is unauthenticated and unthrottled, so without this every call would be one
 * request to the game backend (2,000 calls, 2,000 probes): an amplifier aimed at our own
 * backend. The answer is reused for `ttlMs` on the injected clock, and callers that arrive
 * while a probe runs share it: at most one probe in flight, and at most one per `ttlMs`.
 */
export function cachedProbe(probe: () => Promise<boolean>, clock: Clock, ttlMs: number = READINESS_CACHE_MS): () => Promise<boolean> {
  let cached: { value: boolean; until: number } | null = null;
  let inFlight: Promise<boolean> | null = null;
  return function isReady(): Promise<boolean> {
    if (cached !== null && clock.now() < cached.until) return Promise.resolve(cached.value);
    inFlight ??= probe()
      .catch(() => false)
      .then((value) => {
        cached = { value, until: clock.now() + ttlMs };
        return value;
      })
      .finally(() => {
        inFlight = null;
      });
    return inFlight;
  };
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

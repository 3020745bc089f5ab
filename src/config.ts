import { existsSync, readFileSync, statSync } from "node:fs";
import { parseEnv } from "node:util";

/** A named 32-byte key, as given in `TOKEN_ENCRYPTION_KEYS` or `ASSERTION_SIGNING_KEYS`. */
export interface NamedKey {
  id: string;
  key: Buffer;
}

export type PresetProviderKind = "google" | "discord" | "github" | "twitch";

export type ProviderConfig =
  | {
      kind: "oidc";
      name: string;
      label: string;
      issuer: string;
      clientId: string;
      clientSecret: string;
      scopes: string[];
      /** OIDC `prompt` values sent with every login; empty: none sent (OIDC Core 3.1.2.1). */
      prompt: string[];
      /** The ID token claim tried first for the display name; null: the default order only. */
      nameClaim: string | null;
    }
  | {
      kind: PresetProviderKind;
      name: string;
      label: string;
      clientId: string;
      clientSecret: string;
      scopes: string[];
    };

export interface RateLimitConfig {
  /** Tokens added per second. */
  rate: number;
  /** Bucket size. */
  burst: number;
}

/**
 * One public WebSocket path and where it is relayed (CONTRACT.md "The WebSocket gate"),
 * as configured; `ws/routes.ts` resolves the targets once the game backend is known.
 */
export interface WebSocketRouteConfig {
  /** `/ws` (that path exactly) or a prefix ending in `/` (`/socket.io/`: itself and below). */
  path: string;
  /** The http(s) URL the path maps to; null: the game backend's URL with the same path. */
  target: string | null;
  /** The `aud` of the route's assertions; null: the game backend's audience, or the target's origin. */
  audience: string | null;
  /**
   * The application subprotocol the browser offers beside `ticket.<t>` and our 101 names.
   * Never none: a browser that offered a subprotocol fails a 101 that names none (WHATWG
   * WebSockets, "establish a WebSocket connection"; Chromium: "Sent non-empty
   * 'Sec-WebSocket-Protocol' header but no response was received"), and the 101 must never
   * name the ticket.
   */
  protocol: string;
  /** The subprotocol offered to the backend and required in its 101; null: none (Socket.IO and most libraries). */
  backendProtocol: string | null;
  /** Overrides `WS_MAX_MESSAGE_BYTES` on this route. */
  maxMessageBytes: number | null;
  /** Overrides `WS_MAX_MESSAGES_PER_SECOND` on this route. */
  maxMessagesPerSecond: number | null;
}

export interface Config {
  production: boolean;
  port: number;
  host: string;
  publicOrigin: string;
  /** `PUBLIC_ORIGIN` first, then `ALLOWED_ORIGINS`; compared exactly. */
  allowedOrigins: string[];
  databasePath: string;
  /** `DATABASE_URL` selects PostgreSQL (shared by every node); null: SQLite at `databasePath`. */
  postgres: { url: string; poolSize: number; statementTimeoutMs: number } | null;
  /** Null in demo mode until the demo game backend is started. */
  gameBackendURL: string | null;
  /** The `aud` of identity assertions for the game backend; defaults to its origin. */
  gameBackendAudience: string | null;
  sessionIdleTimeoutSeconds: number;
  sessionAbsoluteTimeoutSeconds: number;
  wsTicketTTLSeconds: number;
  wsMaxMessageBytes: number;
  wsMaxMessagesPerSecond: number;
  wsMaxSocketsPerSession: number;
  /** The WebSocket routes: `/ws` first (the default unless `WS_ROUTES` overrides it), then `WS_ROUTES`. */
  wsRoutes: WebSocketRouteConfig[];
  /** Null means "generate and keep under db/" (demo mode only). */
  tokenEncryptionKeys: NamedKey[] | null;
  /** Null means "generate and keep under db/" (demo mode only). */
  assertionSigningKeys: NamedKey[] | null;
  providers: ProviderConfig[];
  /** Present when no provider is configured outside production. */
  demo: { idpPort: number; gamePort: number } | null;
  /** How many reverse-proxy hops in front of us may set `X-Forwarded-For`. */
  trustProxy: number;
  upstreamsFile: string | null;
  /** The folder of the game page Portcullis serves at `/`; null: the demo client in public/. */
  staticDir: string | null;
  auditLogPath: string | null;
  /** Rotate AUDIT_LOG_PATH to `<path>.1` before it grows past this; null: never (logrotate + SIGHUP). */
  auditLogMaxBytes: number | null;
  maxConnections: number;
  /**
   * Concurrent connections from one address (an IPv6 /64 counts as one), so a single
   * client cannot hold the whole `maxConnections` (SECURITY.md I39). Only enforced when
   * `trustProxy` is 0: behind a proxy every connection comes from the proxy.
   */
  maxConnectionsPerIP: number;
  /**
   * The Prometheus listener (METRICS_PORT, METRICS_HOST): its own server, never the public
   * one (SECURITY.md I44); null when METRICS_PORT is unset, and then nothing is counted.
   */
  metrics: { port: number; host: string } | null;
  rateLimits: {
    /** Every other /auth/* request (me, sessions, logout). */
    auth: RateLimitConfig;
    login: RateLimitConfig;
    ticket: RateLimitConfig;
    upgrade: RateLimitConfig;
    api: RateLimitConfig;
  };
}

/** Every problem found in the configuration, so an operator can fix them in one go. */
export class ConfigError extends Error {
  readonly problems: string[];

  constructor(problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

type Env = Record<string, string | undefined>;

const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const PROVIDER_NAME = /^[a-z][a-z0-9-]{0,31}$/;

/** The `prompt` values of OIDC Core 3.1.2.1. */
const PROMPT_VALUES = new Set(["none", "login", "consent", "select_account"]);
const CLAIM_NAME = /^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$/;
const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);

/**
 * Reads the environment once and checks all of it. Every problem is collected and thrown
 * together (oauth2-proxy's pkg/validation habit) before anything listens.
 */
export function loadConfig(env: Env): Config {
  const { config, problems } = readConfig(env);
  if (problems.length > 0) {
    throw new ConfigError(problems);
  }
  return config;
}

/**
 * The configuration and every problem found in it, without throwing: the start-up adds the
 * upstreams file's problems to the same list, so an operator sees them all in one go. Each
 * mistake yields one message; a value that is wrong is never also reported as missing.
 */
export function readConfig(env: Env): { config: Config; problems: string[] } {
  const problems: string[] = [];
  const read = new EnvReader(env, problems);

  const production = env.NODE_ENV === "production";
  const port = read.integer("PORT", 3000, { min: 0, max: 65535 });
  const host = read.string("HOST", "localhost");
  const publicOrigin = read.origin("PUBLIC_ORIGIN", `http://localhost:${port}`);
  const publicURL = new URL(publicOrigin);
  if (production && publicURL.protocol === "http:" && !LOOPBACK_HOSTS.has(publicURL.hostname)) {
    // The session cookie is `__Host-…; Secure`: a browser drops it over plain http (RFC
    // 6265bis 4.1.2.5), so every login would end on the failure page with no clue why.
    problems.push(
      `PUBLIC_ORIGIN: "${publicOrigin}" is plain http, and browsers refuse the Secure session cookie over http, ` +
        "so every login would fail; use https:// (terminate TLS at a proxy in front, see docs/production.md)",
    );
  }
  const extraOrigins = read.list("ALLOWED_ORIGINS").flatMap((value) => {
    const origin = parseOrigin(value);
    if (origin === null) {
      problems.push(`ALLOWED_ORIGINS: "${value}" is not an origin like https://play.example.com`);
      return [];
    }
    return [origin];
  });

  const idle = read.integer("SESSION_IDLE_TIMEOUT_SECONDS", 1800, { min: 60 });
  const absolute = read.integer("SESSION_ABSOLUTE_TIMEOUT_SECONDS", 43200, { min: 60 });
  // Compared only when both are valid: a default standing in for a wrong value is not the operator's.
  const timeoutsValid = !problems.some((p) => p.startsWith("SESSION_IDLE_TIMEOUT_SECONDS") || p.startsWith("SESSION_ABSOLUTE_TIMEOUT_SECONDS"));
  if (timeoutsValid && idle > absolute) {
    problems.push(
      `SESSION_IDLE_TIMEOUT_SECONDS (${idle}) must not exceed SESSION_ABSOLUTE_TIMEOUT_SECONDS (${absolute})`,
    );
  }

  const providers = readProviders(env, read, problems);
  const demoAllowed = providers.length === 0 && !production;
  if (providers.length === 0 && production) {
    problems.push(
      "no identity provider is configured, and demo mode is refused when NODE_ENV=production " +
        "(set GOOGLE_CLIENT_ID/SECRET, DISCORD_…, GITHUB_…, TWITCH_… or OIDC_PROVIDERS)",
    );
  }

  const postgres = readPostgres(read, problems);
  // Nodes on one PostgreSQL open each other's sealed tokens and sign for one backend: keys
  // generated per node would end every session another node created (issue 13).
  const keysRequired = !demoAllowed || (production && postgres !== null);
  const shared = postgres === null ? "" : "; every node on DATABASE_URL must have the same keys";
  // "Required" only when unset: a set but malformed value already has its own message.
  const tokenEncryptionKeys = read.keys("TOKEN_ENCRYPTION_KEYS");
  if (read.optional("TOKEN_ENCRYPTION_KEYS") === null && keysRequired) {
    problems.push(`TOKEN_ENCRYPTION_KEYS is required outside demo mode (kid:base64-of-32-bytes,…)${shared}`);
  }
  const assertionSigningKeys = read.keys("ASSERTION_SIGNING_KEYS");
  if (read.optional("ASSERTION_SIGNING_KEYS") === null && keysRequired) {
    problems.push(`ASSERTION_SIGNING_KEYS is required outside demo mode (kid:base64-of-32-byte-Ed25519-seed,…)${shared}`);
  }

  const staticDir = read.optional("STATIC_DIR");
  if (staticDir !== null && statSync(staticDir, { throwIfNoEntry: false })?.isDirectory() !== true) {
    problems.push(`STATIC_DIR: "${staticDir}" is not a folder (it should hold the game's built index.html)`);
  }

  const auditLogPath = read.optional("AUDIT_LOG_PATH");
  const auditLogMaxBytes =
    read.optional("AUDIT_LOG_MAX_BYTES") === null ? null : read.integer("AUDIT_LOG_MAX_BYTES", 0, { min: 65_536 });
  if (auditLogMaxBytes !== null && auditLogPath === null) {
    problems.push("AUDIT_LOG_MAX_BYTES is set but AUDIT_LOG_PATH is not: there is no file to rotate");
  }

  const metrics = readMetrics(read, port, problems);

  const gameBackend = env.GAME_BACKEND_URL;
  let gameBackendURL: string | null = null;
  if (gameBackend !== undefined && gameBackend !== "") {
    gameBackendURL = parseHTTPBase(gameBackend);
    if (gameBackendURL === null) {
      problems.push(`GAME_BACKEND_URL: "${gameBackend}" is not an http(s):// URL`);
    }
  } else if (!demoAllowed) {
    problems.push("GAME_BACKEND_URL is required outside demo mode");
  }

  const config: Config = {
    production,
    port,
    host,
    publicOrigin,
    allowedOrigins: [...new Set([publicOrigin, ...extraOrigins])],
    databasePath: read.string("DATABASE_PATH", "db/portcullis.sqlite"),
    postgres,
    gameBackendURL,
    gameBackendAudience: read.optional("GAME_BACKEND_AUDIENCE") ?? (gameBackendURL === null ? null : new URL(gameBackendURL).origin),
    sessionIdleTimeoutSeconds: idle,
    sessionAbsoluteTimeoutSeconds: absolute,
    wsTicketTTLSeconds: read.integer("WS_TICKET_TTL_SECONDS", 30, { min: 1, max: 300 }),
    wsMaxMessageBytes: read.integer("WS_MAX_MESSAGE_BYTES", 65536, { min: 1, max: 16 * 1024 * 1024 }),
    wsMaxMessagesPerSecond: read.integer("WS_MAX_MESSAGES_PER_SECOND", 120, { min: 1 }),
    wsMaxSocketsPerSession: read.integer("WS_MAX_SOCKETS_PER_SESSION", 4, { min: 1 }),
    wsRoutes: readWebSocketRoutes(read.optional("WS_ROUTES"), problems),
    tokenEncryptionKeys,
    assertionSigningKeys,
    providers,
    demo: demoAllowed
      ? {
          idpPort: read.integer("DEMO_IDP_PORT", 3001, { min: 0, max: 65535 }),
          gamePort: read.integer("DEMO_GAME_PORT", 3002, { min: 0, max: 65535 }),
        }
      : null,
    trustProxy: read.integer("TRUST_PROXY", 0, { min: 0, max: 10 }),
    upstreamsFile: read.optional("UPSTREAMS_FILE"),
    staticDir,
    auditLogPath,
    auditLogMaxBytes,
    maxConnections: read.integer("MAX_CONNECTIONS", 10_000, { min: 1 }),
    maxConnectionsPerIP: read.integer("MAX_CONNECTIONS_PER_IP", 256, { min: 1, max: 1_000_000 }),
    metrics,
    rateLimits: {
      auth: read.rateLimit("RATE_LIMIT_AUTH", { rate: 10, burst: 100 }),
      login: read.rateLimit("RATE_LIMIT_LOGIN", { rate: 1, burst: 20 }),
      ticket: read.rateLimit("RATE_LIMIT_TICKET", { rate: 2, burst: 30 }),
      upgrade: read.rateLimit("RATE_LIMIT_UPGRADE", { rate: 2, burst: 30 }),
      api: read.rateLimit("RATE_LIMIT_API", { rate: 50, burst: 200 }),
    },
  };

  return { config, problems };
}

/**
 * The little the operator's command needs (`npm run portcullis`): the database the server
 * uses. It runs with the server's environment (or `.env`) but needs none of its secrets,
 * so an operator's shell without provider credentials can still block a cheater.
 */
export function loadOperatorConfig(env: Env): { databasePath: string; databaseURL: string | null } {
  const problems: string[] = [];
  const read = new EnvReader(env, problems);
  const databasePath = read.string("DATABASE_PATH", "db/portcullis.sqlite");
  // The cluster's database, as the nodes are given it. The command needs none of the
  // server's keys on either engine: it hands ended sessions' refresh tokens over still sealed.
  const databaseURL = read.optional("DATABASE_URL");
  if (databaseURL !== null && !isPostgresURL(databaseURL)) {
    problems.push("DATABASE_URL must be a postgres:// or postgresql:// URL (unset it for SQLite at DATABASE_PATH)");
  }
  if (problems.length > 0) {
    throw new ConfigError(problems);
  }
  return { databasePath, databaseURL };
}

function isPostgresURL(url: string): boolean {
  try {
    const { protocol } = new URL(url);
    return protocol === "postgres:" || protocol === "postgresql:";
  } catch {
    return false;
  }
}

/**
 * Reads `.env` when present. Variables already in the environment win, so a deployment can
 * always override the file.
 */
export function readEnvironment(options: { envFile?: string } = {}): Env {
  const envFile = options.envFile ?? ".env";
  const fromFile = existsSync(envFile) ? parseEnv(readFileSync(envFile, "utf8")) : {};
  return { ...fromFile, ...process.env };
}

/** `DATABASE_URL` and its pool settings; null when unset (SQLite). The URL is never echoed: it may hold a password. */
function readPostgres(read: EnvReader, problems: string[]): Config["postgres"] {
  const url = read.optional("DATABASE_URL");
  if (url === null) {
    for (const name of ["DATABASE_POOL_SIZE", "DATABASE_STATEMENT_TIMEOUT_MS"]) {
      if (read.optional(name) !== null) problems.push(`${name} is set but DATABASE_URL is not: SQLite has no pool`);
    }
    return null;
  }
  let protocol = "";
  try {
    protocol = new URL(url).protocol;
  } catch {
    // reported below
  }
  if (protocol !== "postgres:" && protocol !== "postgresql:") {
    problems.push("DATABASE_URL must be a postgres:// or postgresql:// URL (unset it for SQLite at DATABASE_PATH)");
  }
  return {
    url,
    // Two, on purpose: postgres.js pipelines statements on a busy connection, so a node's
    // short statements share a few connections' writes, reads and server wake-ups; at 10
    // the server spent 1.2-1.6x the CPU per connection setup and setups ran at 0.55-0.68x
    // SQLite, at 2 at 0.72-0.88x (bench/stores.ts, issue 13). README says when to raise it.
    poolSize: read.integer("DATABASE_POOL_SIZE", 2, { min: 1, max: 1000 }),
    statementTimeoutMs: read.integer("DATABASE_STATEMENT_TIMEOUT_MS", 5000, { min: 100, max: 600_000 }),
  };
}

/**
 * METRICS_PORT turns the Prometheus listener on; METRICS_HOST (loopback by default) is where
 * it binds. The exposition names routes, upstreams and providers, which are nobody's
 * business on the internet: it never shares the public port.
 */
function readMetrics(read: EnvReader, publicPort: number, problems: string[]): { port: number; host: string } | null {
  const host = read.optional("METRICS_HOST");
  if (read.optional("METRICS_PORT") === null) {
    if (host !== null) problems.push("METRICS_HOST is set but METRICS_PORT is not: metrics are off");
    return null;
  }
  const port = read.integer("METRICS_PORT", 0, { min: 0, max: 65535 });
  if (port !== 0 && port === publicPort) {
    problems.push(`METRICS_PORT (${port}) must not be PORT: metrics are never served on the public listener`);
  }
  return { port, host: host ?? "127.0.0.1" };
}

function readProviders(env: Env, read: EnvReader, problems: string[]): ProviderConfig[] {
  const providers: ProviderConfig[] = [];
  const presets: { kind: PresetProviderKind; prefix: string; label: string; scopes: string[] }[] = [
    { kind: "google", prefix: "GOOGLE", label: "Google", scopes: ["openid", "profile"] },
    { kind: "discord", prefix: "DISCORD", label: "Discord", scopes: ["identify"] },
    { kind: "github", prefix: "GITHUB", label: "GitHub", scopes: ["read:user"] },
    { kind: "twitch", prefix: "TWITCH", label: "Twitch", scopes: ["openid"] },
  ];
  for (const preset of presets) {
    const clientId = read.optional(`${preset.prefix}_CLIENT_ID`);
    const clientSecret = read.optional(`${preset.prefix}_CLIENT_SECRET`);
    if (clientId === null && clientSecret === null) {
      continue;
    }
    if (clientId === null || clientSecret === null) {
      problems.push(`${preset.prefix}_CLIENT_ID and ${preset.prefix}_CLIENT_SECRET must be set together`);
      continue;
    }
    providers.push({
      kind: preset.kind,
      name: preset.kind,
      label: preset.label,
      clientId,
      clientSecret,
      scopes: read.list(`${preset.prefix}_SCOPES`, preset.scopes),
    });
  }

  for (const name of read.list("OIDC_PROVIDERS")) {
    if (!PROVIDER_NAME.test(name)) {
      problems.push(`OIDC_PROVIDERS: "${name}" must be lower-case letters, digits and dashes`);
      continue;
    }
    if (providers.some((p) => p.name === name)) {
      problems.push(`OIDC_PROVIDERS: "${name}" is configured twice`);
      continue;
    }
    const prefix = `OIDC_${name.toUpperCase().replaceAll("-", "_")}`;
    const issuer = read.optional(`${prefix}_ISSUER`);
    const clientId = read.optional(`${prefix}_CLIENT_ID`);
    const clientSecret = read.optional(`${prefix}_CLIENT_SECRET`);
    if (issuer === null || parseHTTPBase(issuer) === null) {
      problems.push(`${prefix}_ISSUER must be the provider's http(s):// issuer URL`);
    }
    if (clientId === null) {
      problems.push(`${prefix}_CLIENT_ID is missing`);
    }
    if (clientSecret === null) {
      problems.push(`${prefix}_CLIENT_SECRET is missing`);
    }
    if (issuer !== null && clientId !== null && clientSecret !== null) {
      providers.push({
        kind: "oidc",
        name,
        label: read.string(`${prefix}_LABEL`, name),
        issuer,
        clientId,
        clientSecret,
        scopes: read.list(`${prefix}_SCOPES`, ["openid", "profile", "offline_access"]),
        prompt: readPrompt(read, `${prefix}_PROMPT`, problems),
        nameClaim: readClaimName(read, `${prefix}_NAME_CLAIM`, problems),
      });
    }
  }
  if (env.DEMO_PROVIDER_NAME !== undefined) {
    problems.push("DEMO_PROVIDER_NAME is not a setting: the demo provider is always called 'demo'");
  }
  return providers;
}

/** The route every deployment has: `/ws` → the game backend's `/ws`, speaking `game.v1`. */
export const DEFAULT_WS_ROUTE: WebSocketRouteConfig = {
  path: "/ws",
  target: null,
  audience: null,
  protocol: "game.v1",
  backendProtocol: "game.v1",
  maxMessageBytes: null,
  maxMessagesPerSecond: null,
};

const WS_ROUTE_KEYS = new Set(["path", "target", "audience", "protocol", "backendProtocol", "maxMessageBytes", "maxMessagesPerSecond"]);
// A path segment: no "." or ".." (it cannot start with a dot), nothing to percent-decode.
const ROUTE_SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;
// RFC 7230 3.2.6 token characters, as RFC 6455 4.1 requires of a subprotocol name.
const SUBPROTOCOL_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$/;
// Paths the BFF answers itself: a WebSocket route there would shadow them.
const RESERVED_FIRST_SEGMENTS = new Set(["auth", "api", "healthz", "readyz", "metrics"]);

/**
 * `WS_ROUTES`: a JSON list of extra WebSocket routes, data rather than code (STYLE.md 16).
 * An entry for `/ws` replaces the default one. Every problem is listed, entry by entry.
 *
 * ```json
 * [{ "path": "/socket.io/", "backendProtocol": null, "maxMessagesPerSecond": 240 }]
 * ```
 */
function readWebSocketRoutes(value: string | null, problems: string[]): WebSocketRouteConfig[] {
  if (value === null) return [DEFAULT_WS_ROUTE];
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (error) {
    problems.push(`WS_ROUTES is not JSON (${error instanceof Error ? error.message : String(error)})`);
    return [DEFAULT_WS_ROUTE];
  }
  if (!Array.isArray(parsed)) {
    problems.push('WS_ROUTES must be a JSON list of routes, like [{"path": "/socket.io/", "backendProtocol": null}]');
    return [DEFAULT_WS_ROUTE];
  }
  const routes: WebSocketRouteConfig[] = [];
  parsed.forEach((entry: unknown, index) => {
    const route = readWebSocketRoute(entry, `WS_ROUTES[${index}]`, problems);
    if (route === null) return;
    if (routes.some((r) => r.path === route.path)) {
      problems.push(`WS_ROUTES[${index}].path "${route.path}" appears twice`);
      return;
    }
    routes.push(route);
  });
  // `/ws` stays served (CONTRACT.md): by the default route unless an entry configures it.
  return routes.some((r) => r.path === DEFAULT_WS_ROUTE.path) ? routes : [DEFAULT_WS_ROUTE, ...routes];
}

function readWebSocketRoute(entry: unknown, at: string, problems: string[]): WebSocketRouteConfig | null {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    problems.push(`${at}: not an object`);
    return null;
  }
  const before = problems.length;
  const fields = new Map<string, unknown>(Object.entries(entry));
  for (const key of fields.keys()) {
    // A misspelt key ("protocols", "maxMessageSize") would otherwise silently fall back to a default.
    if (!WS_ROUTE_KEYS.has(key)) problems.push(`${at}: unknown key "${key}"`);
  }
  const path = fields.get("path");
  if (typeof path !== "string" || !isRoutePath(path)) {
    problems.push(`${at}.path must be "/name" or a prefix "/name/" (letters, digits, ".", "-", "_"; no "." or ".." segment)`);
  } else if (RESERVED_FIRST_SEGMENTS.has(path.split("/")[1] ?? "")) {
    problems.push(`${at}.path "${path}" is under one of Portcullis's own paths (/auth, /api, /healthz, /readyz, /metrics)`);
  }
  const target = fields.get("target");
  const targetURL = target === undefined ? null : typeof target === "string" ? parseWebSocketTarget(target) : null;
  if (target !== undefined && targetURL === null) {
    problems.push(`${at}.target must be an http(s):// or ws(s):// URL without query, fragment or credentials`);
  }
  const audience = fields.get("audience");
  if (audience !== undefined && (typeof audience !== "string" || audience === "")) {
    problems.push(`${at}.audience must be a non-empty string`);
  }
  const protocol = fields.has("protocol") ? fields.get("protocol") : DEFAULT_WS_ROUTE.protocol;
  if (!isSubprotocolName(protocol)) {
    problems.push(
      `${at}.protocol must be a subprotocol name (an RFC 7230 token, not "ticket.…"): browsers fail a 101 that names ` +
        'none once they offered the ticket; for a backend that takes none, set "backendProtocol": null',
    );
  }
  const backendProtocol = fields.has("backendProtocol") ? fields.get("backendProtocol") : protocol;
  if (backendProtocol !== null && !isSubprotocolName(backendProtocol)) {
    problems.push(`${at}.backendProtocol must be a subprotocol name (an RFC 7230 token, not "ticket.…") or null for none`);
  }
  const maxMessageBytes = optionalInteger(fields.get("maxMessageBytes"), 1, 16 * 1024 * 1024);
  if (maxMessageBytes === undefined) problems.push(`${at}.maxMessageBytes must be a whole number in 1…${16 * 1024 * 1024}`);
  const maxMessagesPerSecond = optionalInteger(fields.get("maxMessagesPerSecond"), 1, 100_000);
  if (maxMessagesPerSecond === undefined) problems.push(`${at}.maxMessagesPerSecond must be a whole number in 1…100000`);
  if (
    problems.length > before ||
    typeof path !== "string" ||
    typeof protocol !== "string" ||
    (backendProtocol !== null && typeof backendProtocol !== "string") ||
    maxMessageBytes === undefined ||
    maxMessagesPerSecond === undefined
  ) {
    return null;
  }
  return {
    path,
    target: targetURL,
    audience: typeof audience === "string" ? audience : null,
    protocol,
    backendProtocol,
    maxMessageBytes,
    maxMessagesPerSecond,
  };
}

function isSubprotocolName(value: unknown): value is string {
  // A subprotocol named like a ticket would be taken for one by the gate.
  return typeof value === "string" && SUBPROTOCOL_NAME.test(value) && !value.toLowerCase().startsWith("ticket.");
}

function isRoutePath(path: string): boolean {
  if (!path.startsWith("/") || path.length > 256) return false;
  const segments = path.slice(1).split("/");
  // A prefix ends in "/", so its last segment is empty; no other may be, and "/" alone is no route.
  const named = path.endsWith("/") ? segments.slice(0, -1) : segments;
  return named.length > 0 && named.every((segment) => ROUTE_SEGMENT.test(segment));
}

/** Null when absent, the number when a whole number in range, undefined when invalid. */
function optionalInteger(value: unknown, min: number, max: number): number | null | undefined {
  if (value === undefined || value === null) return null;
  return typeof value === "number" && Number.isInteger(value) && value >= min && value <= max ? value : undefined;
}

/** An http(s) URL for a WebSocket target (ws: and wss: read as http: and https:), or null. */
function parseWebSocketTarget(value: string): string | null {
  const http = value.replace(/^ws(s?):/i, "http$1:");
  let url: URL;
  try {
    url = new URL(http);
  } catch {
    return null;
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.search !== "" || url.hash !== "" || url.username !== "" || url.password !== "") {
    return null;
  }
  // A target given as a bare origin has the path "/"; as configured otherwise.
  return url.href;
}

/**
 * `OIDC_<NAME>_PROMPT`: sent only when set. `consent` at every login is what made a consent
 * screen appear each time; some providers (Google-like ones) issue a refresh token for
 * `offline_access` only with it, and then it is set here on purpose.
 */
function readPrompt(read: EnvReader, name: string, problems: string[]): string[] {
  const values = read.list(name);
  const unknown = values.filter((value) => !PROMPT_VALUES.has(value));
  if (unknown.length > 0) {
    problems.push(`${name}: "${unknown.join(" ")}" is not a prompt value (none, login, consent, select_account)`);
    return [];
  }
  if (values.includes("none") && values.length > 1) {
    problems.push(`${name}: "none" cannot be combined with other prompt values (OIDC Core 3.1.2.1)`);
    return [];
  }
  return values;
}

function readClaimName(read: EnvReader, name: string, problems: string[]): string | null {
  const value = read.optional(name);
  if (value !== null && !CLAIM_NAME.test(value)) {
    problems.push(`${name}: "${value}" is not a claim name (letters, digits, _ . : -)`);
    return null;
  }
  return value;
}

class EnvReader {
  constructor(
    private readonly env: Env,
    private readonly problems: string[],
  ) {}

  optional(name: string): string | null {
    const value = this.env[name]?.trim();
    return value === undefined || value === "" ? null : value;
  }

  string(name: string, fallback: string): string {
    return this.optional(name) ?? fallback;
  }

  list(name: string, fallback: string[] = []): string[] {
    const value = this.optional(name);
    if (value === null) {
      return fallback;
    }
    return value
      .split(/[,\s]+/)
      .map((item) => item.trim())
      .filter((item) => item !== "");
  }

  integer(name: string, fallback: number, range: { min?: number; max?: number }): number {
    const value = this.optional(name);
    if (value === null) {
      return fallback;
    }
    // A sign is read too, so "-5" is told it is too small rather than "not a whole number".
    if (!/^[+-]?\d+$/.test(value)) {
      this.problems.push(`${name}: "${value}" is not a whole number`);
      return fallback;
    }
    const parsed = Number(value);
    const { min, max } = range;
    if ((min !== undefined && parsed < min) || (max !== undefined && parsed > max)) {
      const bounds =
        min !== undefined && max !== undefined ? `between ${min} and ${max}` : min !== undefined ? `at least ${min}` : `at most ${max}`;
      this.problems.push(`${name}: ${parsed} is out of range, it must be ${bounds}`);
      return fallback;
    }
    return parsed;
  }

  origin(name: string, fallback: string): string {
    const value = this.optional(name);
    if (value === null) {
      return fallback;
    }
    const origin = parseOrigin(value);
    if (origin === null) {
      this.problems.push(`${name}: "${value}" is not an origin like https://play.example.com (no path)`);
      return fallback;
    }
    return origin;
  }

  rateLimit(name: string, fallback: RateLimitConfig): RateLimitConfig {
    const value = this.optional(name);
    if (value === null) {
      return fallback;
    }
    const match = /^(\d+(?:\.\d+)?)\/s(?:,(\d+))?$/.exec(value);
    if (match === null) {
      this.problems.push(`${name}: "${value}" must look like "5/s,20" (rate per second, burst)`);
      return fallback;
    }
    const rate = Number(match[1]);
    const burst = match[2] === undefined ? Math.max(1, Math.ceil(rate)) : Number(match[2]);
    if (rate <= 0 || burst < 1) {
      this.problems.push(`${name}: rate and burst must be positive`);
      return fallback;
    }
    return { rate, burst };
  }

  /** `kid:base64key,…` with 32-byte keys and unique ids; null when unset. */
  keys(name: string): NamedKey[] | null {
    const value = this.optional(name);
    if (value === null) {
      return null;
    }
    const keys: NamedKey[] = [];
    for (const entry of value.split(",").map((item) => item.trim())) {
      const colon = entry.indexOf(":");
      const id = colon === -1 ? "" : entry.slice(0, colon);
      if (!KEY_ID.test(id)) {
        this.problems.push(`${name}: each entry must be kid:base64key with a kid of [A-Za-z0-9_-]`);
        continue;
      }
      const key = Buffer.from(entry.slice(colon + 1), "base64");
      if (key.length !== 32) {
        this.problems.push(`${name}: key "${id}" is ${key.length} bytes, it must be 32 bytes (base64 of 32 random bytes)`);
        continue;
      }
      if (keys.some((k) => k.id === id)) {
        this.problems.push(`${name}: key id "${id}" appears twice`);
        continue;
      }
      keys.push({ id, key });
    }
    return keys.length > 0 ? keys : null;
  }
}

/** The origin of an absolute http(s) URL without path, query or credentials; else null. */
export function parseOrigin(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return null;
  }
  if (url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") {
    return null;
  }
  if (url.pathname !== "/" || value.replace(/\/$/, "") !== url.origin) {
    return null;
  }
  return url.origin;
}

/** An http(s) base URL without query or fragment, with no trailing slash; else null. */
function parseHTTPBase(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.search !== "" || url.hash !== "") {
    return null;
  }
  return url.href.replace(/\/$/, "");
}

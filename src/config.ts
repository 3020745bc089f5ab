import { existsSync, readFileSync } from "node:fs";
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

export interface Config {
  production: boolean;
  port: number;
  host: string;
  publicOrigin: string;
  /** `PUBLIC_ORIGIN` first, then `ALLOWED_ORIGINS`; compared exactly. */
  allowedOrigins: string[];
  databasePath: string;
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

/**
 * Reads the environment once and checks all of it. Every problem is collected and thrown
 * together (oauth2-proxy's pkg/validation habit) before anything listens.
 */
export function loadConfig(env: Env): Config {
  const problems: string[] = [];
  const read = new EnvReader(env, problems);

  const production = env.NODE_ENV === "production";
  const port = read.integer("PORT", 3000, { min: 0, max: 65535 });
  const host = read.string("HOST", "localhost");
  const publicOrigin = read.origin("PUBLIC_ORIGIN", `http://localhost:${port}`);
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
  if (idle > absolute) {
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

  const tokenEncryptionKeys = read.keys("TOKEN_ENCRYPTION_KEYS");
  if (tokenEncryptionKeys === null && !demoAllowed) {
    problems.push("TOKEN_ENCRYPTION_KEYS is required outside demo mode (kid:base64-of-32-bytes,…)");
  }
  const assertionSigningKeys = read.keys("ASSERTION_SIGNING_KEYS");
  if (assertionSigningKeys === null && !demoAllowed) {
    problems.push("ASSERTION_SIGNING_KEYS is required outside demo mode (kid:base64-of-32-byte-Ed25519-seed,…)");
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
    gameBackendURL,
    gameBackendAudience: read.optional("GAME_BACKEND_AUDIENCE") ?? (gameBackendURL === null ? null : new URL(gameBackendURL).origin),
    sessionIdleTimeoutSeconds: idle,
    sessionAbsoluteTimeoutSeconds: absolute,
    wsTicketTTLSeconds: read.integer("WS_TICKET_TTL_SECONDS", 30, { min: 1, max: 300 }),
    wsMaxMessageBytes: read.integer("WS_MAX_MESSAGE_BYTES", 65536, { min: 1, max: 16 * 1024 * 1024 }),
    wsMaxMessagesPerSecond: read.integer("WS_MAX_MESSAGES_PER_SECOND", 50, { min: 1 }),
    wsMaxSocketsPerSession: read.integer("WS_MAX_SOCKETS_PER_SESSION", 4, { min: 1 }),
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

  if (problems.length > 0) {
    throw new ConfigError(problems);
  }
  return config;
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
      });
    }
  }
  if (env.DEMO_PROVIDER_NAME !== undefined) {
    problems.push("DEMO_PROVIDER_NAME is not a setting: the demo provider is always called 'demo'");
  }
  return providers;
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
    if (!/^\d+$/.test(value)) {
      this.problems.push(`${name}: "${value}" is not a whole number`);
      return fallback;
    }
    const parsed = Number(value);
    if ((range.min !== undefined && parsed < range.min) || (range.max !== undefined && parsed > range.max)) {
      this.problems.push(`${name}: ${parsed} is outside ${range.min ?? "-∞"}…${range.max ?? "∞"}`);
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

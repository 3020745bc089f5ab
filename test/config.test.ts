import { afterAll, describe, expect, it } from "vitest";
import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig, loadOperatorConfig } from "../src/config";
import { checkConfiguration } from "../src/portcullis";

const KEY = Buffer.alloc(32, 7).toString("base64");

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe("#loadConfig", () => {
  it("runs demo mode with the contract's defaults when nothing is set", () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 3000,
      host: "localhost",
      publicOrigin: "http://localhost:3000",
      allowedOrigins: ["http://localhost:3000"],
      databasePath: "db/portcullis.sqlite",
      sessionIdleTimeoutSeconds: 1800,
      sessionAbsoluteTimeoutSeconds: 43200,
      wsTicketTTLSeconds: 30,
      wsMaxMessageBytes: 65536,
      // CONTRACT.md: 120/s, burst 240, so a 60 Hz game with one binary attachment per event fits.
      wsMaxMessagesPerSecond: 120,
      wsMaxSocketsPerSession: 4,
      demo: { idpPort: 3001, gamePort: 3002 },
      tokenEncryptionKeys: null,
    });
  });

  it("reads AUDIT_LOG_MAX_BYTES (null when unset) and refuses a tiny cap or one without AUDIT_LOG_PATH", () => {
    expect(loadConfig({}).auditLogMaxBytes).toBeNull();
    expect(loadConfig({ AUDIT_LOG_PATH: "/var/log/portcullis/audit.log", AUDIT_LOG_MAX_BYTES: "104857600" }).auditLogMaxBytes).toBe(104_857_600);
    expect(problemsOf({ AUDIT_LOG_PATH: "a.log", AUDIT_LOG_MAX_BYTES: "100" })).toEqual(["AUDIT_LOG_MAX_BYTES: 100 is out of range, it must be at least 65536"]);
    expect(problemsOf({ AUDIT_LOG_MAX_BYTES: "1000000" })).toEqual([
      "AUDIT_LOG_MAX_BYTES is set but AUDIT_LOG_PATH is not: there is no file to rotate",
    ]);
  });

  it("reports every problem at once, before anything listens", () => {
    const problems = problemsOf({
      PORT: "eighty",
      PUBLIC_ORIGIN: "https://play.example.com/game",
      ALLOWED_ORIGINS: "ftp://files.example.com",
      GAME_BACKEND_URL: "not a url",
      SESSION_IDLE_TIMEOUT_SECONDS: "90000",
      SESSION_ABSOLUTE_TIMEOUT_SECONDS: "3600",
      TOKEN_ENCRYPTION_KEYS: "k1:c2hvcnQ=",
      GOOGLE_CLIENT_ID: "id-without-secret",
      OIDC_PROVIDERS: "corp",
      OIDC_CORP_ISSUER: "https://id.example.com",
      RATE_LIMIT_API: "fast",
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringContaining("PORT"),
        expect.stringContaining("PUBLIC_ORIGIN"),
        expect.stringContaining("ALLOWED_ORIGINS"),
        expect.stringContaining("GAME_BACKEND_URL"),
        expect.stringContaining("must not exceed SESSION_ABSOLUTE_TIMEOUT_SECONDS"),
        expect.stringContaining("must be 32 bytes"),
        expect.stringContaining("GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET must be set together"),
        expect.stringContaining("OIDC_CORP_CLIENT_ID is missing"),
        expect.stringContaining("OIDC_CORP_CLIENT_SECRET is missing"),
        expect.stringContaining("RATE_LIMIT_API"),
      ]),
    );
    expect(problems.length).toBeGreaterThanOrEqual(10);
  });

  it("refuses demo mode in production and requires keys and a backend there", () => {
    const problems = problemsOf({ NODE_ENV: "production" });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringContaining("demo mode is refused"),
        expect.stringContaining("TOKEN_ENCRYPTION_KEYS is required"),
        expect.stringContaining("ASSERTION_SIGNING_KEYS is required"),
        expect.stringContaining("GAME_BACKEND_URL is required"),
      ]),
    );
  });

  it("accepts a complete production configuration with several providers", () => {
    const config = loadConfig({
      NODE_ENV: "production",
      PUBLIC_ORIGIN: "https://play.example.com",
      ALLOWED_ORIGINS: "https://beta.example.com",
      GAME_BACKEND_URL: "http://10.0.0.5:9000/",
      TOKEN_ENCRYPTION_KEYS: `new:${KEY},old:${KEY}`,
      ASSERTION_SIGNING_KEYS: `a1:${KEY}`,
      GOOGLE_CLIENT_ID: "g",
      GOOGLE_CLIENT_SECRET: "gs",
      GITHUB_CLIENT_ID: "h",
      GITHUB_CLIENT_SECRET: "hs",
      OIDC_PROVIDERS: "corp",
      OIDC_CORP_ISSUER: "https://id.example.com",
      OIDC_CORP_CLIENT_ID: "c",
      OIDC_CORP_CLIENT_SECRET: "cs",
    });
    expect(config.demo).toBeNull();
    expect(config.allowedOrigins).toEqual(["https://play.example.com", "https://beta.example.com"]);
    expect(config.gameBackendURL).toBe("http://10.0.0.5:9000");
    expect(config.tokenEncryptionKeys?.map((k) => k.id)).toEqual(["new", "old"]);
    expect(config.providers.map((p) => p.name)).toEqual(["google", "github", "corp"]);
  });

  describe("DATABASE_URL (issue 13: more than one node)", () => {
    it("selects PostgreSQL with a pool of 2 and a 5 s statement timeout unless told otherwise; SQLite without it", () => {
      expect(loadConfig({}).postgres).toBeNull();
      expect(loadConfig({ DATABASE_URL: "postgres://bff@db.internal/portcullis" }).postgres).toEqual({
        url: "postgres://bff@db.internal/portcullis",
        poolSize: 2,
        statementTimeoutMs: 5000,
      });
      expect(
        loadConfig({ DATABASE_URL: "postgresql://db/p", DATABASE_POOL_SIZE: "40", DATABASE_STATEMENT_TIMEOUT_MS: "2000" }).postgres,
      ).toEqual({ url: "postgresql://db/p", poolSize: 40, statementTimeoutMs: 2000 });
    });

    it("refuses other schemes without echoing the URL (it may hold a password), and pool settings without it", () => {
      for (const url of ["mysql://u:hunter2@db/p", "db.internal:5432", "file:portcullis.sqlite"]) {
        const problems = problemsOf({ DATABASE_URL: url });
        expect(problems, url).toEqual(["DATABASE_URL must be a postgres:// or postgresql:// URL (unset it for SQLite at DATABASE_PATH)"]);
      }
      expect(problemsOf({ DATABASE_URL: "postgres://db/p", DATABASE_POOL_SIZE: "0", DATABASE_STATEMENT_TIMEOUT_MS: "soon" })).toEqual([
        "DATABASE_POOL_SIZE: 0 is out of range, it must be between 1 and 1000",
        'DATABASE_STATEMENT_TIMEOUT_MS: "soon" is not a whole number',
      ]);
      expect(problemsOf({ DATABASE_POOL_SIZE: "5", DATABASE_STATEMENT_TIMEOUT_MS: "1000" })).toEqual([
        "DATABASE_POOL_SIZE is set but DATABASE_URL is not: SQLite has no pool",
        "DATABASE_STATEMENT_TIMEOUT_MS is set but DATABASE_URL is not: SQLite has no pool",
      ]);
    });

    it("refuses production on PostgreSQL without explicit keys, saying every node must share them", () => {
      const production = { NODE_ENV: "production", GAME_BACKEND_URL: "http://10.0.0.5:9000", GOOGLE_CLIENT_ID: "g", GOOGLE_CLIENT_SECRET: "s" };
      expect(problemsOf({ ...production, DATABASE_URL: "postgres://db/p" })).toEqual([
        expect.stringMatching(/^TOKEN_ENCRYPTION_KEYS is required .*every node on DATABASE_URL must have the same keys$/),
        expect.stringMatching(/^ASSERTION_SIGNING_KEYS is required .*every node on DATABASE_URL must have the same keys$/),
      ]);
      expect(problemsOf({ ...production, DATABASE_URL: "postgres://db/p", TOKEN_ENCRYPTION_KEYS: `k:${KEY}`, ASSERTION_SIGNING_KEYS: `a:${KEY}` })).toEqual([]);
    });
  });

  it("refuses duplicate key ids and malformed key entries", () => {
    const problems = problemsOf({ TOKEN_ENCRYPTION_KEYS: `a:${KEY},a:${KEY},${KEY}` });
    expect(problems).toEqual(
      expect.arrayContaining([expect.stringContaining('key id "a" appears twice'), expect.stringContaining("kid:base64key")]),
    );
  });

  it("caps connections per address at 256 unless MAX_CONNECTIONS_PER_IP says otherwise, and checks it", () => {
    expect(loadConfig({}).maxConnectionsPerIP).toBe(256);
    expect(loadConfig({ MAX_CONNECTIONS_PER_IP: "32" }).maxConnectionsPerIP).toBe(32);
    for (const value of ["0", "-1", "many", "1.5", "2000000"]) {
      expect(problemsOf({ MAX_CONNECTIONS_PER_IP: value }), value).toEqual([expect.stringContaining("MAX_CONNECTIONS_PER_IP")]);
    }
  });

  describe("WS_ROUTES (CONTRACT.md WebSocket routes)", () => {
    it("serves /ws alone by default, on the game backend, speaking game.v1", () => {
      expect(loadConfig({}).wsRoutes).toEqual([
        { path: "/ws", target: null, audience: null, protocol: "game.v1", backendProtocol: "game.v1", maxMessageBytes: null, maxMessagesPerSecond: null },
      ]);
    });

    it("adds a Socket.IO route in one entry, keeps /ws, and lets an entry for /ws replace the default", () => {
      const added = loadConfig({ WS_ROUTES: '[{"path": "/socket.io/", "backendProtocol": null, "maxMessagesPerSecond": 240}]' }).wsRoutes;
      expect(added.map((r) => r.path)).toEqual(["/ws", "/socket.io/"]);
      expect(added[1]).toEqual({
        path: "/socket.io/",
        target: null,
        audience: null,
        protocol: "game.v1",
        backendProtocol: null,
        maxMessageBytes: null,
        maxMessagesPerSecond: 240,
      });
      const replaced = loadConfig({
        WS_ROUTES: '[{"path": "/ws", "target": "wss://game.internal:8443/play", "audience": "game", "protocol": "chess.v2", "maxMessageBytes": 1024}]',
      }).wsRoutes;
      expect(replaced).toEqual([
        {
          path: "/ws",
          target: "https://game.internal:8443/play",
          audience: "game",
          protocol: "chess.v2",
          backendProtocol: "chess.v2",
          maxMessageBytes: 1024,
          maxMessagesPerSecond: null,
        },
      ]);
    });

    it("lists every problem of every entry at once", () => {
      const problems = problemsOf({
        WS_ROUTES: JSON.stringify([
          { path: "socket.io/" },
          { path: "/a/../b/" },
          { path: "/" },
          { path: "/api/ws/" },
          { path: "/game/", target: "ftp://x.example/", protocol: null, backendProtocol: "ticket.x", maxMessageBytes: 0, maxMessagesPerSecond: 1.5 },
          { path: "/x", protocols: ["a"] },
          { path: "/dup/" },
          { path: "/dup/" },
          "nope",
        ]),
        PORT: "eighty",
      });
      expect(problems).toEqual([
        "PORT: \"eighty\" is not a whole number",
        expect.stringMatching(/^WS_ROUTES\[0\]\.path must be/),
        expect.stringMatching(/^WS_ROUTES\[1\]\.path must be/),
        expect.stringMatching(/^WS_ROUTES\[2\]\.path must be/),
        expect.stringMatching(/^WS_ROUTES\[3\]\.path "\/api\/ws\/" is under one of Portcullis's own paths/),
        expect.stringMatching(/^WS_ROUTES\[4\]\.target must be an http\(s\):\/\/ or ws\(s\):\/\/ URL/),
        expect.stringMatching(/^WS_ROUTES\[4\]\.protocol must be a subprotocol name .* "backendProtocol": null$/),
        expect.stringMatching(/^WS_ROUTES\[4\]\.backendProtocol must be a subprotocol name/),
        expect.stringMatching(/^WS_ROUTES\[4\]\.maxMessageBytes must be a whole number/),
        expect.stringMatching(/^WS_ROUTES\[4\]\.maxMessagesPerSecond must be a whole number/),
        'WS_ROUTES[5]: unknown key "protocols"',
        'WS_ROUTES[7].path "/dup/" appears twice',
        "WS_ROUTES[8]: not an object",
      ]);
    });

    it("refuses a value that is not a JSON list", () => {
      expect(problemsOf({ WS_ROUTES: "/socket.io/" })).toEqual([expect.stringMatching(/^WS_ROUTES is not JSON/)]);
      expect(problemsOf({ WS_ROUTES: '{"path": "/socket.io/"}' })).toEqual([expect.stringMatching(/^WS_ROUTES must be a JSON list/)]);
    });
  });

  it("turns metrics on with METRICS_PORT, on loopback unless METRICS_HOST says otherwise, and checks both", () => {
    expect(loadConfig({}).metrics).toBeNull();
    expect(loadConfig({ METRICS_PORT: "9464" }).metrics).toEqual({ port: 9464, host: "127.0.0.1" });
    expect(loadConfig({ METRICS_PORT: "9464", METRICS_HOST: "10.0.0.5" }).metrics).toEqual({ port: 9464, host: "10.0.0.5" });
    expect(problemsOf({ METRICS_PORT: "70000" })).toEqual(["METRICS_PORT: 70000 is out of range, it must be between 0 and 65535"]);
    expect(problemsOf({ METRICS_PORT: "nine" })).toEqual(['METRICS_PORT: "nine" is not a whole number']);
    expect(problemsOf({ METRICS_HOST: "0.0.0.0" })).toEqual(["METRICS_HOST is set but METRICS_PORT is not: metrics are off"]);
    expect(problemsOf({ PORT: "8080", METRICS_PORT: "8080" })).toEqual([
      "METRICS_PORT (8080) must not be PORT: metrics are never served on the public listener",
    ]);
  });

  // Issue 18: one message per mistake, and each one true.
  const PRODUCTION = {
    NODE_ENV: "production",
    PUBLIC_ORIGIN: "https://play.example.com",
    GAME_BACKEND_URL: "http://10.0.0.5:9000",
    TOKEN_ENCRYPTION_KEYS: `k1:${KEY}`,
    ASSERTION_SIGNING_KEYS: `a1:${KEY}`,
    OIDC_PROVIDERS: "corp",
    OIDC_CORP_ISSUER: "https://id.example.com",
    OIDC_CORP_CLIENT_ID: "c",
    OIDC_CORP_CLIENT_SECRET: "cs",
  };

  it("says a malformed key is malformed, not also that the variable is required", () => {
    expect(problemsOf({ ...PRODUCTION, TOKEN_ENCRYPTION_KEYS: "k1:short" })).toEqual([
      'TOKEN_ENCRYPTION_KEYS: key "k1" is 3 bytes, it must be 32 bytes (base64 of 32 random bytes)',
    ]);
    expect(problemsOf({ ...PRODUCTION, ASSERTION_SIGNING_KEYS: "no-colon" })).toEqual([
      "ASSERTION_SIGNING_KEYS: each entry must be kid:base64key with a kid of [A-Za-z0-9_-]",
    ]);
    const { TOKEN_ENCRYPTION_KEYS: _unset, ...withoutKeys } = PRODUCTION;
    expect(problemsOf(withoutKeys)).toEqual(["TOKEN_ENCRYPTION_KEYS is required outside demo mode (kid:base64-of-32-bytes,…)"]);
  });

  it("says a negative number is too small, not that it is not a whole number, and names the bounds", () => {
    expect(problemsOf({ SESSION_IDLE_TIMEOUT_SECONDS: "-5" })).toEqual(["SESSION_IDLE_TIMEOUT_SECONDS: -5 is out of range, it must be at least 60"]);
    expect(problemsOf({ PORT: "70000" })).toEqual(["PORT: 70000 is out of range, it must be between 0 and 65535"]);
    expect(problemsOf({ PORT: "eighty" })).toEqual(['PORT: "eighty" is not a whole number']);
    expect(problemsOf({ WS_MAX_MESSAGES_PER_SECOND: "1.5" })).toEqual(['WS_MAX_MESSAGES_PER_SECOND: "1.5" is not a whole number']);
  });

  it("compares the two session timeouts only when both are valid", () => {
    // The idle default (1800) standing in for "-5" is not the operator's, so no "1800 must not exceed 600".
    expect(problemsOf({ SESSION_IDLE_TIMEOUT_SECONDS: "-5", SESSION_ABSOLUTE_TIMEOUT_SECONDS: "600" })).toEqual([
      "SESSION_IDLE_TIMEOUT_SECONDS: -5 is out of range, it must be at least 60",
    ]);
    expect(problemsOf({ SESSION_IDLE_TIMEOUT_SECONDS: "900", SESSION_ABSOLUTE_TIMEOUT_SECONDS: "600" })).toEqual([
      "SESSION_IDLE_TIMEOUT_SECONDS (900) must not exceed SESSION_ABSOLUTE_TIMEOUT_SECONDS (600)",
    ]);
  });

  it("refuses a plain-http PUBLIC_ORIGIN in production, saying why, except on this machine", () => {
    expect(problemsOf({ ...PRODUCTION, PUBLIC_ORIGIN: "http://play.example.com" })).toEqual([
      expect.stringMatching(/^PUBLIC_ORIGIN: "http:\/\/play\.example\.com" is plain http, and browsers refuse the Secure session cookie over http.*use https:\/\//),
    ]);
    for (const origin of ["http://localhost:3000", "http://127.0.0.1:8080", "http://[::1]:3000", "https://play.example.com"]) {
      expect(problemsOf({ ...PRODUCTION, PUBLIC_ORIGIN: origin }), origin).toEqual([]);
    }
    // Outside production plain http stays possible (a LAN test); the login page then explains.
    expect(problemsOf({ PUBLIC_ORIGIN: "http://play.example.com" })).toEqual([]);
  });

  it("reads OIDC_<NAME>_PROMPT (none sent by default) and OIDC_<NAME>_NAME_CLAIM, and checks them", () => {
    const corp = (env: Record<string, string>) => loadConfig({ ...PRODUCTION, ...env }).providers[0];
    expect(corp({})).toMatchObject({ prompt: [], nameClaim: null });
    expect(corp({ OIDC_CORP_PROMPT: "consent", OIDC_CORP_NAME_CLAIM: "gamer_tag" })).toMatchObject({ prompt: ["consent"], nameClaim: "gamer_tag" });
    expect(corp({ OIDC_CORP_PROMPT: "login consent" })).toMatchObject({ prompt: ["login", "consent"] });
    expect(problemsOf({ ...PRODUCTION, OIDC_CORP_PROMPT: "always" })).toEqual([
      'OIDC_CORP_PROMPT: "always" is not a prompt value (none, login, consent, select_account)',
    ]);
    expect(problemsOf({ ...PRODUCTION, OIDC_CORP_PROMPT: "none consent" })).toEqual([
      'OIDC_CORP_PROMPT: "none" cannot be combined with other prompt values (OIDC Core 3.1.2.1)',
    ]);
    expect(problemsOf({ ...PRODUCTION, OIDC_CORP_NAME_CLAIM: "the name" })).toEqual(['OIDC_CORP_NAME_CLAIM: "the name" is not a claim name (letters, digits, _ . : -)']);
  });

  describe("#checkConfiguration: the environment and the upstreams file in one list", () => {
    const dir = mkdtempSync(join(tmpdir(), "portcullis-config-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    function allProblems(env: Record<string, string>): string[] {
      try {
        checkConfiguration(env);
      } catch (error) {
        if (error instanceof ConfigError) return error.problems;
        throw error;
      }
      return [];
    }

    it("lists environment and upstreams-file problems together, each once", () => {
      const file = join(dir, "upstreams.json");
      writeFileSync(
        file,
        JSON.stringify({
          routes: [
            { prefix: "/api/game", target: "http://10.0.0.5:9000/api/game/" },
            { prefix: "/api/me/", target: "https://id.example.com/me", credential: "provider-token", provider: "nobody" },
          ],
        }),
      );
      const problems = allProblems({ ...PRODUCTION, UPSTREAMS_FILE: file, TOKEN_ENCRYPTION_KEYS: "k1:short", PORT: "-1" });
      expect(problems).toEqual([
        "PORT: -1 is out of range, it must be between 0 and 65535",
        'TOKEN_ENCRYPTION_KEYS: key "k1" is 3 bytes, it must be 32 bytes (base64 of 32 random bytes)',
        `UPSTREAMS_FILE ${file} routes[0].prefix must look like "/api/name/" (letters, digits, - and _, ending in /)`,
        `UPSTREAMS_FILE ${file} routes[1].provider must name a configured provider (corp)`,
      ]);
    });

    it("reads an unreadable upstreams file as one more problem in the same list", () => {
      const missing = join(dir, "missing.json");
      const problems = allProblems({ ...PRODUCTION, UPSTREAMS_FILE: missing, SESSION_IDLE_TIMEOUT_SECONDS: "-5" });
      expect(problems).toEqual([
        "SESSION_IDLE_TIMEOUT_SECONDS: -5 is out of range, it must be at least 60",
        expect.stringMatching(new RegExp(`^UPSTREAMS_FILE ${missing}: ENOENT`)),
      ]);
    });

    it("knows the demo provider by name in demo mode", () => {
      const file = join(dir, "demo-upstreams.json");
      writeFileSync(file, JSON.stringify({ routes: [{ prefix: "/api/me/", target: "http://127.0.0.1:3001/me", credential: "provider-token", provider: "demo" }] }));
      expect(allProblems({ UPSTREAMS_FILE: file })).toEqual([]);
    });
  });
});

describe("#loadOperatorConfig", () => {
  it("needs only DATABASE_PATH (default db/portcullis.sqlite), none of the server's secrets", () => {
    expect(loadOperatorConfig({})).toEqual({ databasePath: "db/portcullis.sqlite", databaseURL: null });
    expect(loadOperatorConfig({ NODE_ENV: "production", DATABASE_PATH: "/var/lib/portcullis/db.sqlite" })).toEqual({
      databasePath: "/var/lib/portcullis/db.sqlite",
      databaseURL: null,
    });
  });

  it("takes DATABASE_URL for a cluster on PostgreSQL, still without keys", () => {
    expect(loadOperatorConfig({ NODE_ENV: "production", DATABASE_URL: "postgres://db/portcullis" })).toMatchObject({ databaseURL: "postgres://db/portcullis" });
    expect(loadOperatorConfig({ DATABASE_URL: "postgresql://db/portcullis" })).toMatchObject({ databaseURL: "postgresql://db/portcullis" });
  });

  it("refuses a DATABASE_URL that is not PostgreSQL's, without echoing it", () => {
    let problems: string[] = [];
    try {
      loadOperatorConfig({ DATABASE_URL: "mysql://user:s3cret@db/portcullis" });
    } catch (error) {
      if (error instanceof ConfigError) problems = error.problems;
    }
    expect(problems).toEqual(["DATABASE_URL must be a postgres:// or postgresql:// URL (unset it for SQLite at DATABASE_PATH)"]);
  });
});

import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config";

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
      wsMaxMessagesPerSecond: 50,
      wsMaxSocketsPerSession: 4,
      demo: { idpPort: 3001, gamePort: 3002 },
      tokenEncryptionKeys: null,
    });
  });

  it("reads AUDIT_LOG_MAX_BYTES (null when unset) and refuses a tiny cap or one without AUDIT_LOG_PATH", () => {
    expect(loadConfig({}).auditLogMaxBytes).toBeNull();
    expect(loadConfig({ AUDIT_LOG_PATH: "/var/log/portcullis/audit.log", AUDIT_LOG_MAX_BYTES: "104857600" }).auditLogMaxBytes).toBe(104_857_600);
    expect(problemsOf({ AUDIT_LOG_PATH: "a.log", AUDIT_LOG_MAX_BYTES: "100" })).toEqual(["AUDIT_LOG_MAX_BYTES: 100 is outside 65536…∞"]);
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

  it("turns metrics on with METRICS_PORT, on loopback unless METRICS_HOST says otherwise, and checks both", () => {
    expect(loadConfig({}).metrics).toBeNull();
    expect(loadConfig({ METRICS_PORT: "9464" }).metrics).toEqual({ port: 9464, host: "127.0.0.1" });
    expect(loadConfig({ METRICS_PORT: "9464", METRICS_HOST: "10.0.0.5" }).metrics).toEqual({ port: 9464, host: "10.0.0.5" });
    expect(problemsOf({ METRICS_PORT: "70000" })).toEqual(["METRICS_PORT: 70000 is outside 0…65535"]);
    expect(problemsOf({ METRICS_PORT: "nine" })).toEqual(['METRICS_PORT: "nine" is not a whole number']);
    expect(problemsOf({ METRICS_HOST: "0.0.0.0" })).toEqual(["METRICS_HOST is set but METRICS_PORT is not: metrics are off"]);
    expect(problemsOf({ PORT: "8080", METRICS_PORT: "8080" })).toEqual([
      "METRICS_PORT (8080) must not be PORT: metrics are never served on the public listener",
    ]);
  });
});

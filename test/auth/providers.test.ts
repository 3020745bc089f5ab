import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock";
import { createProviders, validateIdTokenClaims, ProviderError } from "../../src/auth/providers";

const NOW = Date.UTC(2026, 10, 22, 12);
const expected = { issuers: ["https://id.example.com"], clientId: "client-1", nonce: "n-123", now: NOW };
const good = { iss: "https://id.example.com", aud: "client-1", exp: NOW / 1000 + 300, nonce: "n-123", sub: "user-9", name: "Nine" };

describe("#validateIdTokenClaims (OIDC Core 3.1.3.7)", () => {
  it("accepts a token issued to us by our provider for this login", () => {
    expect(validateIdTokenClaims(good, expected)).toEqual({ issuer: "https://id.example.com", subject: "user-9", displayName: "Nine" });
    expect(validateIdTokenClaims({ ...good, aud: ["client-1", "other"], azp: "client-1" }, expected).subject).toBe("user-9");
  });

  it.each([
    ["a foreign issuer", { iss: "https://evil.example.com" }],
    ["an issuer differing by a trailing slash", { iss: "https://id.example.com/" }],
    ["a wrong audience", { aud: "someone-else" }],
    ["an audience list without us", { aud: ["a", "b"] }],
    ["several audiences and another azp", { aud: ["client-1", "b"], azp: "b" }],
    ["an expired token", { exp: NOW / 1000 - 1 }],
    ["a token expiring this very second", { exp: NOW / 1000 }],
    ["no exp", { exp: undefined }],
    ["a wrong nonce", { nonce: "n-456" }],
    ["no nonce", { nonce: undefined }],
    ["no subject", { sub: "" }],
    ["a numeric subject", { sub: 42 }],
    ["a subject of 256 characters", { sub: "s".repeat(256) }],
  ])("refuses %s", (_name, change) => {
    expect(() => validateIdTokenClaims({ ...good, ...change }, expected)).toThrow(ProviderError);
  });

  it("accepts a subject of 255 characters and a token one second from expiry (the bounds themselves)", () => {
    expect(validateIdTokenClaims({ ...good, sub: "s".repeat(255) }, expected).subject).toHaveLength(255);
    expect(validateIdTokenClaims({ ...good, exp: NOW / 1000 + 1 }, expected).subject).toBe("user-9");
  });

  it.each([null, "claims", 42, []])("refuses non-object claims %j", (claims) => {
    expect(() => validateIdTokenClaims(claims, expected)).toThrow(ProviderError);
  });
});

describe("the display name (OIDC_<NAME>_NAME_CLAIM, issue 18)", () => {
  const claims = { ...good, name: undefined, preferred_username: "nine_p", nickname: "niner", email: "nine@example.com", gamer_tag: "N1N3" };
  const nameOf = (change: Record<string, unknown>, nameClaim: string | null = null): string =>
    validateIdTokenClaims({ ...claims, ...change }, { ...expected, nameClaim }).displayName;

  it("takes name, then preferred_username, nickname, email and at last the subject", () => {
    expect(nameOf({ name: "Nine" })).toBe("Nine");
    expect(nameOf({})).toBe("nine_p");
    expect(nameOf({ preferred_username: undefined })).toBe("niner");
    expect(nameOf({ preferred_username: undefined, nickname: "" })).toBe("nine@example.com");
    expect(nameOf({ preferred_username: undefined, nickname: undefined, email: undefined })).toBe("user-9");
  });

  it("tries the configured claim first, and the usual order when the token lacks it", () => {
    expect(nameOf({ name: "Nine" }, "gamer_tag")).toBe("N1N3");
    expect(nameOf({ name: "Nine", gamer_tag: undefined }, "gamer_tag")).toBe("Nine");
    expect(nameOf({ name: "Nine", gamer_tag: 7 }, "gamer_tag")).toBe("Nine");
  });
});

describe("provider presets", () => {
  const context = { publicOrigin: "https://play.example.com", clock: new ManualClock(NOW) };
  const request = { state: "st", codeVerifier: "v".repeat(43), nonce: "nn" };

  it("builds Google, Discord, GitHub and Twitch authorization URLs with their own callbacks and quirks", async () => {
    const { all: providers } = createProviders(
      [
        { kind: "google", name: "google", label: "Google", clientId: "g", clientSecret: "gs", scopes: ["openid", "profile"] },
        { kind: "discord", name: "discord", label: "Discord", clientId: "d", clientSecret: "ds", scopes: ["identify"] },
        { kind: "github", name: "github", label: "GitHub", clientId: "h", clientSecret: "hs", scopes: ["read:user"] },
        { kind: "twitch", name: "twitch", label: "Twitch", clientId: "t", clientSecret: "ts", scopes: ["openid"] },
      ],
      context,
    );
    const url = (name: string): URL => {
      const provider = providers.get(name);
      expect(provider?.unavailable()).toBeNull();
      if (provider === undefined) throw new Error(name);
      return provider.authorizationURL(request);
    };
    const google = url("google");
    expect(google.origin).toBe("https://accounts.google.com");
    expect(google.searchParams.get("code_challenge_method")).toBe("S256");
    expect(google.searchParams.get("nonce")).toBe("nn");
    expect(google.searchParams.get("redirect_uri")).toBe("https://play.example.com/auth/callback/google");
    const discord = url("discord");
    expect(discord.origin).toBe("https://discord.com");
    expect(discord.searchParams.get("code_challenge_method")).toBe("S256");
    expect(discord.searchParams.get("redirect_uri")).toBe("https://play.example.com/auth/callback/discord");
    const github = url("github");
    expect(github.origin).toBe("https://github.com");
    // GitHub: no PKCE through arctic; state alone binds the callback.
    expect(github.searchParams.get("code_challenge")).toBeNull();
    expect(github.searchParams.get("state")).toBe("st");
    expect(providers.get("github")?.revoke).toBeNull();
    const twitch = url("twitch");
    expect(twitch.origin).toBe("https://id.twitch.tv");
    expect(twitch.searchParams.get("nonce")).toBe("nn");
    expect(twitch.searchParams.get("redirect_uri")).toBe("https://play.example.com/auth/callback/twitch");
  });

  it("keeps an OIDC provider whose discovery document names another issuer unavailable, saying why", async () => {
    const { createServer } = await import("node:http");
    const server = createServer((_req, res) => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ issuer: "https://impostor.example", authorization_endpoint: "x", token_endpoint: "y" }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    const port = (server.address() as { port: number }).port;
    const reported: string[] = [];
    const scheduled: number[] = [];
    const timers = { schedule: (_callback: () => Promise<void>, ms: number) => (scheduled.push(ms), { cancel: () => undefined }) };
    try {
      const providers = createProviders(
        [{ kind: "oidc", name: "corp", label: "Corp", issuer: `http://127.0.0.1:${port}`, clientId: "c", clientSecret: "s", scopes: ["openid"], prompt: [], nameClaim: null }],
        { ...context, timers, report: (line) => reported.push(line) },
      );
      await providers.firstAttempts;
      const corp = providers.all.get("corp");
      expect(corp?.unavailable()).toMatch(/expected "http:\/\/127\.0\.0\.1/);
      expect(() => corp?.authorizationURL(request)).toThrow(ProviderError);
      expect(reported).toEqual([expect.stringMatching(/^identity provider corp: discovery says issuer "https:\/\/impostor\.example".*retrying in 1 s$/)]);
      expect(scheduled).toEqual([1_000]);
    } finally {
      server.close();
    }
  });
});

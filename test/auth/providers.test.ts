import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import { ManualClock } from "../../src/clock";
import { createProviders, validateIdTokenClaims, ProviderError, type Provider } from "../../src/auth/providers";

const NOW = Date.UTC(2026, 10, 22, 12);
const expected = { issuers: ["https://id.example.com"], clientId: "client-1", nonce: "n-123", now: NOW };
const good = { iss: "https://id.example.com", aud: "client-1", exp: NOW / 1000 + 300, nonce: "n-123", sub: "user-9", name: "Nine" };

/** The ProviderError a call throws: its code goes to the audit line, its message to the operator. */
function refusal(call: () => unknown): ProviderError {
  try {
    call();
  } catch (error) {
    expect(error).toBeInstanceOf(ProviderError);
    return error as ProviderError;
  }
  throw new Error("not refused");
}

describe("#validateIdTokenClaims (OIDC Core 3.1.3.7)", () => {
  it("accepts a token issued to us by our provider for this login", () => {
    expect(validateIdTokenClaims(good, expected)).toEqual({ issuer: "https://id.example.com", subject: "user-9", displayName: "Nine" });
    expect(validateIdTokenClaims({ ...good, aud: ["client-1", "other"], azp: "client-1" }, expected).subject).toBe("user-9");
  });

  const ISSUER = "the ID token's issuer is not the provider's";
  const AUDIENCE = "the ID token was not issued to us (aud)";
  const EXPIRED = "the ID token has expired";
  const NONCE = "the ID token's nonce does not match this login";
  const SUBJECT = "the ID token has no usable subject";

  it.each([
    ["a foreign issuer", { iss: "https://evil.example.com" }, ISSUER],
    ["an issuer differing by a trailing slash", { iss: "https://id.example.com/" }, ISSUER],
    ["a wrong audience", { aud: "someone-else" }, AUDIENCE],
    ["an audience list without us", { aud: ["a", "b"] }, AUDIENCE],
    ["several audiences and another azp", { aud: ["client-1", "b"], azp: "b" }, "the ID token's authorized party is not us (azp)"],
    ["an expired token", { exp: NOW / 1000 - 1 }, EXPIRED],
    ["a token expiring this very second", { exp: NOW / 1000 }, EXPIRED],
    ["no exp", { exp: undefined }, EXPIRED],
    ["a wrong nonce", { nonce: "n-456" }, NONCE],
    ["no nonce", { nonce: undefined }, NONCE],
    ["no subject", { sub: "" }, SUBJECT],
    ["a numeric subject", { sub: 42 }, SUBJECT],
    ["a subject of 256 characters", { sub: "s".repeat(256) }, SUBJECT],
  ])("refuses %s, saying why", (_name, change, message) => {
    expect(refusal(() => validateIdTokenClaims({ ...good, ...change }, expected))).toMatchObject({ code: "invalid_id_token", message });
  });

  it("accepts a subject of 255 characters and a token one second from expiry (the bounds themselves)", () => {
    expect(validateIdTokenClaims({ ...good, sub: "s".repeat(255) }, expected).subject).toHaveLength(255);
    expect(validateIdTokenClaims({ ...good, exp: NOW / 1000 + 1 }, expected).subject).toBe("user-9");
  });

  it.each([null, "claims", 42, []])("refuses non-object claims %j", (claims) => {
    expect(refusal(() => validateIdTokenClaims(claims, expected)).code).toBe("invalid_id_token");
  });

  it.each([null, "claims", 42])("says a token whose claims are %j has none", (claims) => {
    expect(refusal(() => validateIdTokenClaims(claims, expected)).message).toBe("the ID token has no claims");
  });

  it("cuts a display name to 64 characters", () => {
    expect(validateIdTokenClaims({ ...good, name: "n".repeat(65) }, expected).displayName).toBe("n".repeat(64));
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

describe("OIDC discovery (SECURITY.md C11, C12)", () => {
  // A discovery server on loopback; each test chooses what it answers.
  let server: Server;
  let issuer = "";
  let answer: { status: number; body: unknown } = { status: 200, body: {} };
  beforeAll(async () => {
    server = createServer((_req, res) => {
      res.statusCode = answer.status;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(answer.body));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    issuer = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => {
    server.close();
  });

  const request = { state: "st", codeVerifier: "v".repeat(43), nonce: "nn" };
  const endpoints = (): Record<string, unknown> => ({ issuer, authorization_endpoint: `${issuer}/authorize`, token_endpoint: `${issuer}/token` });
  async function discovered(status: number, body: unknown, prompt: string[] = []): Promise<Provider> {
    answer = { status, body };
    const timers = { schedule: () => ({ cancel: () => undefined }) };
    const providers = createProviders(
      [{ kind: "oidc", name: "corp", label: "Corp", issuer, clientId: "c", clientSecret: "s", scopes: ["openid"], prompt, nameClaim: null }],
      { publicOrigin: "https://play.example.com", clock: new ManualClock(NOW), timers, report: () => undefined },
    );
    await providers.firstAttempts;
    const provider = providers.all.get("corp");
    if (provider === undefined) throw new Error("no provider");
    return provider;
  }

  it.each([
    ["an error status", 500, () => ({}), /failed: HTTP 500$/],
    ["a JSON string", 200, () => "hello", /did not answer a JSON object$/],
    ["no token endpoint", 200, () => ({ issuer, authorization_endpoint: `${issuer}/authorize` }), /^discovery lacks authorization_endpoint or token_endpoint$/],
    ["PKCE without S256", 200, () => ({ ...endpoints(), code_challenge_methods_supported: ["plain"] }), /^the provider does not support PKCE S256$/],
  ])("keeps the provider unavailable on %s, saying why, and builds no login URL", async (_name, status, body, why) => {
    const provider = await discovered(status, body());
    expect(provider.unavailable()).toMatch(why);
    const refused = refusal(() => provider.authorizationURL(request));
    expect(refused.code).toBe("unreachable");
    expect(refused.message).toBe(`the identity provider has not been discovered yet: ${provider.unavailable()}`);
  });

  it("takes the endpoints, keys, logout support and RFC 9207 promise from a good document, and asks for S256 PKCE and the nonce", async () => {
    const provider = await discovered(200, {
      ...endpoints(),
      code_challenge_methods_supported: ["S256"],
      revocation_endpoint: `${issuer}/revoke`,
      jwks_uri: `${issuer}/jwks`,
      end_session_endpoint: `${issuer}/logout`,
      backchannel_logout_supported: true,
      authorization_response_iss_parameter_supported: true,
    });
    expect(provider.unavailable()).toBeNull();
    expect(provider.jwksURI).toBe(`${issuer}/jwks`);
    expect(provider.endSessionEndpoint).toBe(`${issuer}/logout`);
    expect(provider.backchannelLogoutSupported).toBe(true);
    expect(provider.sendsIssuerInCallback).toBe(true);
    expect(provider.revoke).not.toBeNull();
    const url = provider.authorizationURL(request);
    expect(url.searchParams.get("code_challenge_method")).toBe("S256");
    expect(url.searchParams.get("nonce")).toBe("nn");
    // No prompt unless OIDC_<NAME>_PROMPT asks for one.
    expect(url.searchParams.has("prompt")).toBe(false);
  });

  it("has no revocation and no back-channel logout when the document names no endpoint and no keys", async () => {
    const provider = await discovered(200, { ...endpoints(), backchannel_logout_supported: true });
    expect(provider.unavailable()).toBeNull();
    expect(provider.revoke).toBeNull();
    expect(provider.jwksURI).toBeNull();
    expect(provider.backchannelLogoutSupported).toBe(false);
    expect(provider.sendsIssuerInCallback).toBe(false);
  });

  it("asks for the configured prompt values, space-separated (OIDC_<NAME>_PROMPT)", async () => {
    const provider = await discovered(200, endpoints(), ["login", "consent"]);
    expect(provider.authorizationURL(request).searchParams.get("prompt")).toBe("login consent");
  });

  it("has no back-channel logout when the provider publishes keys but does not advertise it", async () => {
    const provider = await discovered(200, { ...endpoints(), jwks_uri: `${issuer}/jwks` });
    expect(provider.jwksURI).toBe(`${issuer}/jwks`);
    expect(provider.backchannelLogoutSupported).toBe(false);
  });
});

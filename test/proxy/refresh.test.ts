import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { SessionEnded } from "../../src/auth/session-events";
import { CLIENT_ID, startHarness, type Harness } from "../fixtures/harness";
import { startRecordingUpstream, type RecordingUpstream } from "../fixtures/http-upstream";

/**
 * Two provider-token routes: `/api/me` is the provider's own userinfo endpoint (a real
 * token checked by the real provider), `/api/echo/` an upstream that records what it got.
 */
async function providerTokenHarness(echo: RecordingUpstream): Promise<Harness> {
  return startHarness({
    upstreams: ({ issuer }) => ({
      routes: [
        { prefix: "/api/me/", target: `${issuer}/me`, credential: "provider-token", provider: "demo", methods: ["GET"] },
        { prefix: "/api/echo/", target: `${echo.url}/echo/`, credential: "provider-token", provider: "demo" },
      ],
    }),
  });
}

describe("provider-token upstreams and refresh (SECURITY.md C16, A5, D17)", () => {
  let echo: RecordingUpstream;
  let h: Harness;
  let token: string;
  let sessionId: string;
  let ended: SessionEnded[];
  const call = (path: string): Promise<Response> => fetch(`${h.origin}${path}`, { headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } });
  const me = (): Promise<Response> => call("/api/me");
  const accessExpiry = (): number =>
    (h.bff.db.sqlite.prepare("SELECT access_token_expires_at AS t FROM sessions WHERE id = ?").get(sessionId) as { t: number }).t;
  const sessionRow = (): unknown => h.bff.db.sqlite.prepare("SELECT 1 FROM sessions WHERE id = ?").get(sessionId);

  beforeAll(async () => {
    echo = await startRecordingUpstream();
  });
  afterAll(async () => {
    await echo.close();
  });
  beforeEach(async () => {
    h = await providerTokenHarness(echo);
    token = (await h.login("token-user")).token;
    sessionId = token.split(".")[0] ?? "";
    ended = [];
    h.bff.events.onEnded((event) => ended.push(event));
  });
  afterEach(async () => {
    await h.close();
  });

  it("relays to the provider's userinfo endpoint with the user's real access token", async () => {
    const response = await me();
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ sub: "token-user" });
    expect(h.idp.tokenRequests.refresh_token).toBe(0);
  });

  it("sends the provider's access token, and never the cookie, to a provider-token upstream", async () => {
    const before = echo.requests.length;
    expect((await call("/api/echo/whoami")).status).toBe(200);
    const seen = echo.requests.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.url).toBe("/echo/whoami");
    expect(seen[0]?.headers.authorization).toBe(`Bearer ${h.idp.issued.accessTokens.at(-1)}`);
    expect(seen[0]?.headers.cookie).toBeUndefined();
  });

  it("refreshes once for 20 parallel requests at expiry, and all 20 succeed", async () => {
    h.clock.advance(accessExpiry() - h.clock.now() - 30_000);
    const before = h.idp.tokenRequests.refresh_token;
    const responses = await Promise.all(Array.from({ length: 20 }, () => me()));
    expect(responses.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(h.idp.tokenRequests.refresh_token - before).toBe(1);
    // The rotated refresh token is stored encrypted, and the new access token is the one used.
    const row = h.bff.db.sqlite.prepare("SELECT refresh_token, version FROM sessions WHERE id = ?").get(sessionId) as { refresh_token: string; version: number };
    expect(row.version).toBe(1);
    expect(row.refresh_token.startsWith("v1.k1.")).toBe(true);
    expect(row.refresh_token).not.toContain(h.idp.issued.refreshTokens.at(-1));
    expect(h.bff.sessions.readTokens(sessionId)?.refreshToken).toBe(h.idp.issued.refreshTokens.at(-1));
    expect(h.audit.named("token.refresh.succeeded")).toHaveLength(1);
    expect(h.audit.named("session.refreshed")).toHaveLength(1);
    // The next request carries the fresh token and needs no further refresh.
    const echoed = echo.requests.length;
    expect((await call("/api/echo/after")).status).toBe(200);
    expect(echo.requests[echoed]?.headers.authorization).toBe(`Bearer ${h.idp.issued.accessTokens.at(-1)}`);
    expect(h.idp.tokenRequests.refresh_token - before).toBe(1);
    expect(ended).toEqual([]);
  });

  it("does not refresh while the access token has more than 60 s left", async () => {
    h.clock.advance(accessExpiry() - h.clock.now() - 61_000);
    expect((await me()).status).toBe(200);
    expect(h.idp.tokenRequests.refresh_token).toBe(0);
  });

  it("ends the session when the provider refuses the refresh (grant revoked): 401, row gone, sockets told", async () => {
    const refreshToken = h.idp.issued.refreshTokens.at(-1) ?? "";
    const revoked = await fetch(`${h.idp.issuer}/token/revocation`, {
      method: "POST",
      headers: { authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${h.clientSecret}`).toString("base64")}`, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token: refreshToken, token_type_hint: "refresh_token" }),
    });
    expect(revoked.status).toBe(200);
    h.clock.advance(accessExpiry() - h.clock.now());
    const before = echo.requests.length;
    const response = await call("/api/echo/x");
    expect(response.status).toBe(401);
    expect(echo.requests.length).toBe(before);
    expect(sessionRow()).toBeUndefined();
    expect(ended).toEqual([expect.objectContaining({ sessionId, reason: "refresh_refused" })]);
    expect((await fetch(`${h.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${token}` } })).status).toBe(401);
    expect(h.audit.named("token.refresh.failed").some((e) => e.reason === "invalid_grant")).toBe(true);
  });

  it("answers 502 and keeps the session when the provider is unreachable at refresh", async () => {
    h.clock.advance(accessExpiry() - h.clock.now());
    h.idp.setUnreachable(true);
    try {
      expect((await me()).status).toBe(502);
    } finally {
      h.idp.setUnreachable(false);
    }
    expect(sessionRow()).toBeDefined();
    expect(ended).toEqual([]);
    expect(h.audit.named("token.refresh.failed").some((e) => e.reason === "unreachable")).toBe(true);
    expect((await me()).status).toBe(200);
    expect(h.audit.named("token.refresh.succeeded")).toHaveLength(1);
  });

  it("refuses the session, and calls nothing upstream, when its token ciphertext was tampered with", async () => {
    const { access_token: sealed } = h.bff.db.sqlite.prepare("SELECT access_token FROM sessions WHERE id = ?").get(sessionId) as { access_token: string };
    const flipped = sealed.slice(0, -3) + (sealed.at(-3) === "A" ? "B" : "A") + sealed.slice(-2);
    h.bff.db.sqlite.prepare("UPDATE sessions SET access_token = ? WHERE id = ?").run(flipped, sessionId);
    const before = echo.requests.length;
    const response = await call("/api/echo/x");
    expect(response.status).toBe(401);
    expect(echo.requests.length).toBe(before);
    expect(h.audit.named("crypto.decrypt.failed")).toHaveLength(1);
    expect(sessionRow()).toBeUndefined();
    expect(ended).toEqual([expect.objectContaining({ sessionId, reason: "decrypt_failed" })]);
    expect(h.idp.tokenRequests.refresh_token).toBe(0);
  });

  it("refuses a token swapped in from another session", async () => {
    const other = await h.login("other-user");
    const otherId = other.token.split(".")[0];
    const { access_token: theirs } = h.bff.db.sqlite.prepare("SELECT access_token FROM sessions WHERE id = ?").get(otherId) as { access_token: string };
    h.bff.db.sqlite.prepare("UPDATE sessions SET access_token = ? WHERE id = ?").run(theirs, sessionId);
    const before = echo.requests.length;
    expect((await call("/api/echo/x")).status).toBe(401);
    expect(echo.requests.length).toBe(before);
  });
});

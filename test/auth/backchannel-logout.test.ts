import { generateKeyPairSync, randomUUID } from "node:crypto";
import { SignJWT, importJWK, type JWTPayload } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Agent } from "../fixtures/agent";
import { startRecordingBackend, type RecordingBackend } from "../fixtures/backend";
import { CLIENT_ID, startHarness, type Harness } from "../fixtures/harness";
import { closeOf, mintTicket, openSocket } from "../fixtures/ws-client";

const EVENT = "http://schemas.openid.net/event/backchannel-logout";

function rsaJWK(kid: string): Record<string, unknown> {
  return { ...generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" }), kid, use: "sig", alg: "RS256" };
}

/**
 * OIDC Back-Channel Logout 1.0 against the real oidc-provider: signing out at its
 * end-session page reaches Portcullis, and every logout token that section 2.6 refuses is
 * refused with 400 and ends nothing (SECURITY.md I40).
 */
describe("POST /auth/backchannel-logout/:provider (SECURITY.md I40)", () => {
  // The provider's own signing key, kept so the tests can sign tokens the provider could have.
  const providerKey = rsaJWK("demo-rs256");
  // Another key under the same kid: what a forger without the provider's key has.
  const forgerKey = rsaJWK("demo-rs256");
  let backend: RecordingBackend;
  let h: Harness;
  beforeAll(async () => {
    backend = await startRecordingBackend();
    h = await startHarness({ env: { GAME_BACKEND_URL: backend.url }, idp: { signingKey: providerKey } });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
  });

  const idOf = (token: string): string => token.split(".")[0] ?? "";
  const me = (token: string): Promise<number> => fetch(`${h.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${token}` } }).then((r) => r.status);
  const sidOf = (token: string): string =>
    (h.bff.db.sqlite.prepare("SELECT provider_sid AS sid FROM sessions WHERE id = ?").get(idOf(token)) as { sid: string }).sid;
  const now = (): number => Math.floor(h.clock.now() / 1000);

  async function sign(claims: JWTPayload, options: { key?: Record<string, unknown>; typ?: string } = {}): Promise<string> {
    const key = await importJWK(options.key ?? providerKey, "RS256");
    return new SignJWT(claims).setProtectedHeader({ alg: "RS256", kid: "demo-rs256", typ: options.typ ?? "logout+jwt" }).sign(key);
  }

  function claims(extra: JWTPayload): JWTPayload {
    return { iss: h.idp.issuer, aud: CLIENT_ID, iat: now(), jti: randomUUID(), events: { [EVENT]: {} }, ...extra };
  }

  function post(body: string, contentType = "application/x-www-form-urlencoded", provider = "demo"): Promise<Response> {
    return fetch(`${h.origin}/auth/backchannel-logout/${provider}`, { method: "POST", headers: { "content-type": contentType }, body });
  }

  const postToken = (token: string): Promise<Response> => post(new URLSearchParams({ logout_token: token }).toString());

  async function openPlayerSocket(token: string): Promise<Awaited<ReturnType<typeof openSocket>>> {
    return openSocket(h, await mintTicket(h, token), { token });
  }

  /** Resolves with the close code, or rejects if the socket is still open after 1 s (CONTRACT.md). */
  function closedWithinOneSecond(ws: Awaited<ReturnType<typeof openSocket>>): Promise<number> {
    return Promise.race([
      closeOf(ws).then((c) => c.code),
      new Promise<number>((_, reject) => setTimeout(() => reject(new Error("socket still open after 1 s")), 1_000)),
    ]);
  }

  /** The end-session page and its confirmation, as a browser signed in at the provider walks them. */
  async function signOutAtProvider(agent: Agent): Promise<Response> {
    const page = await agent.fetch(`${h.idp.issuer}/session/end`);
    expect(page.status).toBe(200);
    const html = await page.text();
    const action = /<form id="op.logoutForm" method="post" action="([^"]+)"/.exec(html)?.[1];
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(html)?.[1];
    expect(action).toBeDefined();
    return agent.fetch(new URL(action ?? "", h.idp.issuer), {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ xsrf: xsrf ?? "", logout: "yes" }).toString(),
    });
  }

  it("ends the session and closes its socket with 4401 within 1 s when the player signs out at the provider", async () => {
    const { agent, token } = await h.login("idp-signout");
    expect(sidOf(token)).toMatch(/.+/);
    const ws = await openPlayerSocket(token);
    const closed = closedWithinOneSecond(ws);
    const confirmed = await signOutAtProvider(agent);
    expect(confirmed.status).toBe(303);
    expect(await closed).toBe(4401);
    expect(await me(token)).toBe(401);
    const accepted = h.audit.named("logout.backchannel.accepted").at(-1);
    expect(accepted).toMatchObject({ provider: "demo", reason: "sid+sub", count: 1, accountId: expect.any(String) });
    expect(h.audit.named("session.revoked").some((e) => e.reason === "backchannel_logout" && e.session === h.bff.audit.sessionRef(idOf(token)))).toBe(true);
  });

  it("answers 200 with Cache-Control: no-store and an empty body", async () => {
    const { token } = await h.login("no-store");
    const response = await postToken(await sign(claims({ sid: sidOf(token) })));
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(await response.text()).toBe("");
    expect(await me(token)).toBe(401);
  });

  it("ends only the session a sid names, not the same player's other session", async () => {
    const laptop = await h.login("two-devices");
    const phone = await h.login("two-devices");
    expect(sidOf(laptop.token)).not.toBe(sidOf(phone.token));
    const phoneSocket = await openPlayerSocket(phone.token);
    const response = await postToken(await sign(claims({ sid: sidOf(laptop.token), sub: "two-devices" })));
    expect(response.status).toBe(200);
    expect(await me(laptop.token)).toBe(401);
    expect(await me(phone.token)).toBe(200);
    expect(phoneSocket.readyState).toBe(phoneSocket.OPEN);
    phoneSocket.close();
  });

  it.each([
    ["a subject nobody here has", "never-logged-in-here"],
    ["another player's subject", "sid-bystander"],
  ])("ends nothing when a session's sid comes with %s (sid and sub must both match, 2.7)", async (_name, sub) => {
    await h.login("sid-bystander");
    const { token } = await h.login("sid-owner");
    const ended: string[] = [];
    const stop = h.bff.events.onEnded((event) => ended.push(event.sessionId));
    const response = await postToken(await sign(claims({ sid: sidOf(token), sub })));
    stop();
    expect(response.status).toBe(200);
    expect(ended).toEqual([]);
    expect(await me(token)).toBe(200);
    expect(h.audit.named("logout.backchannel.accepted").at(-1)).toMatchObject({ reason: "sid+sub", count: 0 });
  });

  it("ends every session of the subject at this provider for a sub-only token", async () => {
    const sessions = [await h.login("sub-only"), await h.login("sub-only"), await h.login("sub-only")];
    const bystander = await h.login("sub-only-bystander");
    const sockets = await Promise.all(sessions.map((s) => openPlayerSocket(s.token)));
    const closes = sockets.map((ws) => closedWithinOneSecond(ws));
    const response = await postToken(await sign(claims({ sub: "sub-only" })));
    expect(response.status).toBe(200);
    expect(await Promise.all(closes)).toEqual([4401, 4401, 4401]);
    for (const s of sessions) expect(await me(s.token)).toBe(401);
    expect(await me(bystander.token)).toBe(200);
    expect(h.audit.named("logout.backchannel.accepted").at(-1)).toMatchObject({ reason: "sub", count: 3 });
  });

  it("refuses a replayed token (same jti) with 400 and ends nothing, across a restart of the route's memory", async () => {
    const first = await h.login("replayed");
    const token = await sign(claims({ sub: "replayed" }));
    expect((await postToken(token)).status).toBe(200);
    expect(await me(first.token)).toBe(401);
    const again = await h.login("replayed");
    expect((await postToken(token)).status).toBe(400);
    expect(await me(again.token)).toBe(200);
    // The jti is in the database, not only in memory.
    const row = h.bff.db.sqlite.prepare("SELECT COUNT(*) AS n FROM logout_token_jtis WHERE issuer = ?").get(h.idp.issuer) as { n: number };
    expect(row.n).toBeGreaterThan(0);
  });

  describe("refuses with 400 and ends nothing", () => {
    const unsigned = (payload: JWTPayload): string =>
      `${Buffer.from(JSON.stringify({ alg: "none", typ: "logout+jwt" })).toString("base64url")}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}.`;
    // Each with the reason its audit line gives (the first line of each reason is written in
    // full; later ones of the same reason are counted into a summary, SECURITY.md I38).
    const cases: [string, (sub: string, sid: string) => Promise<string>, string][] = [
      ["forged (signed with another key under the provider's kid)", (sub, sid) => sign(claims({ sub, sid }), { key: forgerKey }), "signature does not verify"],
      ["unsigned (alg none)", async (sub, sid) => unsigned(claims({ sub, sid })), "algorithm not allowed"],
      [
        "signed with HS256 and the client secret (algorithm confusion)",
        async (sub, sid) =>
          new SignJWT(claims({ sub, sid })).setProtectedHeader({ alg: "HS256", typ: "logout+jwt" }).sign(new TextEncoder().encode(h.clientSecret)),
        "algorithm not allowed",
      ],
      ["expired (iat older than the window)", (sub, sid) => sign(claims({ sub, sid, iat: now() - 301 - 30 })), "iat too old"],
      ["expired (exp in the past)", (sub, sid) => sign(claims({ sub, sid, iat: now() - 120, exp: now() - 60 })), "expired"],
      ["issued in the future", (sub, sid) => sign(claims({ sub, sid, iat: now() + 600 })), "claim iat: check_failed"],
      ["wrongly addressed (another audience)", (sub, sid) => sign(claims({ sub, sid, aud: "another-client" })), "claim aud: check_failed"],
      ["from another issuer", (sub, sid) => sign(claims({ sub, sid, iss: "https://evil.example" })), "claim iss: check_failed"],
      ["with a nonce", (sub, sid) => sign(claims({ sub, sid, nonce: "n-0S6_WzA2Mj" })), "nonce present (an ID token, not a logout token)"],
      ["without events", (sub, sid) => sign({ ...claims({ sub, sid }), events: undefined }), "no events claim"],
      ["with events lacking the back-channel logout event", (sub, sid) => sign(claims({ sub, sid, events: { "http://example.com/other": {} } })), "events claim lacks the back-channel logout event"],
      ["with events null", (sub, sid) => sign(claims({ sub, sid, events: null })), "no events claim"],
      ["with the back-channel logout event null", (sub, sid) => sign(claims({ sub, sid, events: { [EVENT]: null } })), "events claim lacks the back-channel logout event"],
      ["with the back-channel logout event an array", (sub, sid) => sign(claims({ sub, sid, events: { [EVENT]: [] } })), "events claim lacks the back-channel logout event"],
      ["with neither sid nor sub", () => sign(claims({})), "neither sid nor sub"],
      ["without jti", (sub, sid) => sign({ ...claims({ sub, sid }), jti: undefined }), "claim jti: missing"],
      ["typed as something else", (sub, sid) => sign(claims({ sub, sid }), { typ: "JWT" }), "typ JWT is not logout+jwt"],
      ["an ID token", async () => h.idp.issued.idTokens.at(-1) ?? "", "typ JWT is not logout+jwt"],
      ["with an empty sub", (_sub, sid) => sign(claims({ sub: "", sid })), "sub is not a usable string"],
      ["with a sid of 256 characters", (sub) => sign(claims({ sub, sid: "s".repeat(256) })), "sid is not a usable string"],
      ["with a numeric jti", (sub, sid) => sign(claims({ sub, sid, jti: 42 as unknown as string })), "jti is not a usable string"],
      [
        "signed with a key the provider does not publish",
        (sub, sid) => importJWK(forgerKey, "RS256").then((key) => new SignJWT(claims({ sub, sid })).setProtectedHeader({ alg: "RS256", kid: "not-published", typ: "logout+jwt" }).sign(key)),
        "no provider key matches",
      ],
    ];
    it.each(cases)("%s", async (_name, make, reason) => {
      const { token } = await h.login("hostile-target");
      const ws = await openPlayerSocket(token);
      const ended: string[] = [];
      const stop = h.bff.events.onEnded((event) => ended.push(event.sessionId));
      const response = await postToken(await make("hostile-target", sidOf(token)));
      stop();
      expect(response.status).toBe(400);
      expect(await response.json()).toEqual({ error: "invalid_request", message: "The logout token is missing or invalid." });
      expect(h.audit.named("logout.backchannel.refused").map((e) => e.reason)).toContain(reason);
      expect(response.headers.get("cache-control")).toBe("no-store");
      expect(ended).toEqual([]);
      expect(await me(token)).toBe(200);
      expect(ws.readyState).toBe(ws.OPEN);
      ws.close();
    });

    it("a body that is not a form, or carries no or two logout_token", async () => {
      const { token } = await h.login("hostile-body");
      const good = await sign(claims({ sub: "hostile-body" }));
      for (const [body, type, reason] of [
        [JSON.stringify({ logout_token: good }), "application/json", "not a form-encoded body"],
        ["", "application/x-www-form-urlencoded", "no logout_token"],
        [`logout_token=${good}&logout_token=${good}`, "application/x-www-form-urlencoded", "logout_token repeated"],
        [`logout_token=${"a".repeat(16 * 1024 + 1)}`, "application/x-www-form-urlencoded", "logout_token too long"],
      ] as const) {
        expect((await post(body, type)).status).toBe(400);
        expect(h.audit.named("logout.backchannel.refused").map((e) => e.reason)).toContain(reason);
      }
      expect(await me(token)).toBe(200);
    });
  });

  it("takes a sub and a sid of 255 characters (the bound itself)", async () => {
    const response = await postToken(await sign(claims({ sub: "u".repeat(255), sid: "s".repeat(255) })));
    expect(response.status).toBe(200);
    expect(h.audit.named("logout.backchannel.accepted").at(-1)).toMatchObject({ reason: "sid+sub", count: 0 });
  });

  it("is a 404 for a provider that does not exist", async () => {
    const response = await post("logout_token=x", undefined, "nope");
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({ error: "unknown_provider", message: "No back-channel logout for this provider." });
  });

  it("needs no cookie, Origin or X-CSRF (server to server) but is rate limited like every /auth route", async () => {
    const limited = await startHarness({ env: { GAME_BACKEND_URL: backend.url, RATE_LIMIT_AUTH: "1/s,2" }, idp: { signingKey: providerKey } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 3; i += 1) {
        const response = await fetch(`${limited.origin}/auth/backchannel-logout/demo`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: "logout_token=not-a-token",
        });
        statuses.push(response.status);
      }
      expect(statuses).toEqual([400, 400, 429]);
    } finally {
      await limited.close();
    }
  });

  it("takes the explicit types logout+jwt and application/logout+jwt in any case (2.4)", async () => {
    for (const typ of ["application/logout+jwt", "Logout+JWT"]) {
      const { token } = await h.login("typed");
      expect((await postToken(await sign(claims({ sid: sidOf(token) }), { typ }))).status).toBe(200);
      expect(await me(token)).toBe(401);
      const accepted = h.audit.named("logout.backchannel.accepted").at(-1);
      expect(accepted).toMatchObject({ reason: "sid", count: 1 });
      expect(accepted).not.toHaveProperty("accountId");
    }
  });

  // Last in the file: it moves the clock.
  it("remembers an accepted jti for as long as its token could be accepted, through the sweeper (replay, 2.6 item 9)", async () => {
    await h.login("late-replay");
    const token = await sign(claims({ sub: "late-replay" }));
    expect((await postToken(token)).status).toBe(200);
    // 329 s on the token is still inside the 300 s window plus 30 s of skew: only the
    // remembered jti can refuse it now, and the sweeper must not have forgotten it.
    h.clock.advance(329_000);
    await h.bff.store.logoutTokenJTIs.sweep();
    const again = await h.login("late-replay");
    expect((await postToken(token)).status).toBe(400);
    expect(h.audit.named("logout.backchannel.refused").at(-1)).toMatchObject({ reason: "jti already used (replay)" });
    expect(await me(again.token)).toBe(200);
  });
});

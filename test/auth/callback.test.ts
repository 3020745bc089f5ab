import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../fixtures/agent";
import { startHarness, type Harness } from "../fixtures/harness";

function sessionCount(h: Harness): number {
  return (h.bff.db.sqlite.prepare("SELECT count(*) AS n FROM sessions").get() as { n: number }).n;
}

describe("GET /auth/callback/:provider", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ secondProvider: true });
  });
  afterAll(async () => {
    await h.close();
  });

  it("sends code + PKCE S256 + state + nonce of 32 random bytes, and a Lax login-state cookie", async () => {
    const agent = new Agent();
    const url = await agent.startLogin(h.origin);
    expect(url.searchParams.get("code_challenge_method")).toBe("S256");
    for (const name of ["state", "nonce", "code_challenge"]) {
      expect(Buffer.from(url.searchParams.get(name) ?? "", "base64url")).toHaveLength(32);
    }
    expect(agent.setCookies.at(-1)).toMatch(/^__Host-Http-login=[\w-]{43}; HttpOnly; Secure; SameSite=Lax; Path=\/; Max-Age=600$/);
  });

  it("refuses a callback without state, and makes no token request", async () => {
    const agent = new Agent();
    const callback = await agent.authorize(await agent.startLogin(h.origin), "mallory", h.origin);
    callback.searchParams.delete("state");
    const before = h.idp.tokenRequests.authorization_code;
    const response = await agent.fetch(callback);
    expect(response.status).toBe(400);
    expect(h.idp.tokenRequests.authorization_code).toBe(before);
    expect(agent.cookie(h.origin, "__Host-Http-session")).toBeNull();
  });

  it("refuses a wrong state, and makes no token request", async () => {
    const agent = new Agent();
    const callback = await agent.authorize(await agent.startLogin(h.origin), "mallory", h.origin);
    callback.searchParams.set("state", "x".repeat(43));
    const before = h.idp.tokenRequests.authorization_code;
    const sessions = sessionCount(h);
    expect((await agent.fetch(callback)).status).toBe(400);
    expect(h.idp.tokenRequests.authorization_code).toBe(before);
    expect(sessionCount(h)).toBe(sessions);
  });

  it("refuses a callback without the login-state cookie (login CSRF), and makes no token request", async () => {
    const victim = new Agent();
    const attacker = new Agent();
    const callback = await attacker.authorize(await attacker.startLogin(h.origin), "attacker", h.origin);
    const before = h.idp.tokenRequests.authorization_code;
    expect((await victim.fetch(callback)).status).toBe(400);
    expect(h.idp.tokenRequests.authorization_code).toBe(before);
  });

  it("refuses a replayed callback (state is single use), and makes no second token request", async () => {
    const agent = new Agent();
    const callback = await agent.authorize(await agent.startLogin(h.origin), "carol", h.origin);
    const cookie = agent.cookie(h.origin, "__Host-Http-login");
    expect((await agent.fetch(callback)).status).toBe(200);
    const before = h.idp.tokenRequests.authorization_code;
    const replay = await agent.fetch(callback, { headers: { cookie: `__Host-Http-login=${cookie}` } });
    expect(replay.status).toBe(400);
    expect(h.idp.tokenRequests.authorization_code).toBe(before);
  });

  it("expires the login-state cookie on success and on failure", async () => {
    const agent = new Agent();
    const callback = await agent.authorize(await agent.startLogin(h.origin), "dave", h.origin);
    const response = await agent.fetch(callback);
    expect(response.headers.getSetCookie()).toContain("__Host-Http-login=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0");
    const failed = await agent.fetch(`${h.origin}/auth/callback/demo?state=x&code=y`);
    expect(failed.status).toBe(400);
    expect(failed.headers.getSetCookie()).toContain("__Host-Http-login=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0");
  });

  it("refuses an ID token whose nonce is not this login's", async () => {
    const agent = new Agent();
    const url = await agent.startLogin(h.origin);
    url.searchParams.set("nonce", "attacker-chosen-nonce-attacker-chosen-nonce");
    const callback = await agent.authorize(url, "eve", h.origin);
    const sessions = sessionCount(h);
    expect((await agent.fetch(callback)).status).toBe(400);
    expect(sessionCount(h)).toBe(sessions);
    expect(h.audit.named("login.failure").some((e) => String(e.detail).includes("nonce"))).toBe(true);
  });

  it("refuses an `iss` callback parameter that is not the provider's (RFC 9207)", async () => {
    const agent = new Agent();
    const callback = await agent.authorize(await agent.startLogin(h.origin), "frank", h.origin);
    expect(callback.searchParams.get("iss")).toBe(h.idp.issuer);
    callback.searchParams.set("iss", h.other?.issuer ?? "http://127.0.0.2:1");
    const before = h.idp.tokenRequests.authorization_code;
    expect((await agent.fetch(callback)).status).toBe(400);
    expect(h.idp.tokenRequests.authorization_code).toBe(before);
  });

  it("refuses a callback without `iss` from a provider that promises it", async () => {
    const agent = new Agent();
    const callback = await agent.authorize(await agent.startLogin(h.origin), "gina", h.origin);
    callback.searchParams.delete("iss");
    expect((await agent.fetch(callback)).status).toBe(400);
  });

  it("refuses provider B's code at provider A's callback (mix-up, RFC 9700 4.4)", async () => {
    const agent = new Agent();
    const callback = await agent.authorize(await agent.startLogin(h.origin, "other"), "hank", h.origin);
    expect(callback.pathname).toBe("/auth/callback/other");
    const atA = new URL(`/auth/callback/demo${callback.search}`, h.origin);
    const before = h.idp.tokenRequests.authorization_code;
    const beforeOther = h.other?.tokenRequests.authorization_code;
    expect((await agent.fetch(atA)).status).toBe(400);
    expect(h.idp.tokenRequests.authorization_code).toBe(before);
    expect(h.other?.tokenRequests.authorization_code).toBe(beforeOther);
  });

  it("logs in at the second provider through its own callback, as a different identity", async () => {
    const agent = new Agent();
    const atOther = await agent.login(h.origin, "ivy", { provider: "other" });
    expect(atOther.status).toBe(200);
    const me = (await (await agent.fetch(`${h.origin}/auth/me`)).json()) as { user: { provider: string } };
    expect(me.user.provider).toBe("other");
    const identities = h.bff.db.sqlite.prepare("SELECT issuer FROM identities WHERE subject = 'ivy'").all() as { issuer: string }[];
    expect(identities.map((i) => i.issuer)).toEqual([h.other?.issuer]);
  });

  it("answers 404 for an unknown provider", async () => {
    expect((await new Agent().fetch(`${h.origin}/auth/login/myspace`)).status).toBe(404);
  });

  it.each([
    ["//evil.example/x", "/"],
    ["/\\evil.example", "/"],
    ["https://evil.example/", "/"],
    ["/arena", "/arena"],
  ])("carries returnTo %j through the login as %j", async (returnTo, expected) => {
    const agent = new Agent();
    const response = await agent.login(h.origin, "jack", { returnTo });
    const html = await response.text();
    expect(html).toContain(`content="0;url=${expected}"`);
  });
});

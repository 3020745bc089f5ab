import { createHash } from "node:crypto";
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

  describe("several logins in one browser (issue 11 item 7)", () => {
    it("completes two logins started in parallel, each with its own state, and refuses each replay", async () => {
      const agent = new Agent();
      const first = await agent.startLogin(h.origin);
      const second = await agent.startLogin(h.origin);
      expect(first.searchParams.get("state")).not.toBe(second.searchParams.get("state"));
      const callbackA = await agent.authorize(first, "tab-a", h.origin);
      const callbackB = await agent.authorize(second, "tab-a", h.origin);
      const a = await agent.fetch(callbackA);
      expect(a.status).toBe(200);
      // The other login still waits for its callback: the login-state cookie stays.
      expect(a.headers.getSetCookie().some((c) => c.startsWith("__Host-Http-login="))).toBe(false);
      const b = await agent.fetch(callbackB);
      expect(b.status).toBe(200);
      expect(b.headers.getSetCookie()).toContain("__Host-Http-login=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0");
      const before = h.idp.tokenRequests.authorization_code;
      for (const replay of [callbackA, callbackB]) {
        const cookie = agent.setCookies.find((c) => c.startsWith("__Host-Http-login=") && !c.startsWith("__Host-Http-login=;"))?.split(";")[0] ?? "";
        expect((await agent.fetch(replay, { headers: { cookie } })).status).toBe(400);
      }
      expect(h.idp.tokenRequests.authorization_code).toBe(before);
    });

    it("answers a callback with a wrong state 400, deletes nothing, and the real login completes afterwards", async () => {
      const agent = new Agent();
      const callback = await agent.authorize(await agent.startLogin(h.origin), "patient", h.origin);
      const before = h.idp.tokenRequests.authorization_code;
      // A top-level navigation an attacker's page starts while the player is at the provider.
      const stray = await agent.fetch(`${h.origin}/auth/callback/demo?state=attacker&code=attacker&iss=${encodeURIComponent(h.idp.issuer)}`);
      expect(stray.status).toBe(400);
      expect(stray.headers.getSetCookie()).toEqual([]);
      expect(h.idp.tokenRequests.authorization_code).toBe(before);
      const real = await agent.fetch(callback);
      expect(real.status).toBe(200);
      expect(agent.cookie(h.origin, "__Host-Http-session")).not.toBeNull();
    });

    it("keeps at most three logins per browser, dropping the oldest", async () => {
      const agent = new Agent();
      const urls = [];
      for (let i = 0; i < 4; i += 1) urls.push(await agent.startLogin(h.origin));
      const handle = agent.cookie(h.origin, "__Host-Http-login") ?? "";
      const browser = createHash("sha256").update(handle).digest("hex");
      const rows = h.bff.db.sqlite.prepare("SELECT count(*) AS n FROM login_attempts WHERE browser = ?").get(browser) as { n: number };
      expect(rows.n).toBe(3);
      const oldest = await agent.authorize(urls[0] as URL, "many-tabs", h.origin);
      expect((await agent.fetch(oldest)).status).toBe(400);
      const newest = await agent.authorize(urls[3] as URL, "many-tabs", h.origin);
      expect((await agent.fetch(newest)).status).toBe(200);
    });
  });

  // RFC 6749 3.1: response parameters must not be included more than once (issue 11 item 12).
  it.each(["iss", "state", "code"])("refuses a callback with two `%s` parameters, makes no token request, and leaves the login alive", async (name) => {
    const agent = new Agent();
    const callback = await agent.authorize(await agent.startLogin(h.origin), `twice-${name}`, h.origin);
    const polluted = new URL(callback);
    const value = callback.searchParams.get(name) ?? "";
    // The same value twice as well as a different second one: either way the answer is 400.
    for (const second of [value, name === "iss" ? (h.other?.issuer ?? "http://127.0.0.2:1") : `${value}x`]) {
      polluted.search = callback.search;
      polluted.searchParams.append(name, second);
      const before = h.idp.tokenRequests.authorization_code;
      expect((await agent.fetch(polluted)).status).toBe(400);
      expect(h.idp.tokenRequests.authorization_code).toBe(before);
    }
    expect(h.audit.named("login.failure").some((e) => e.reason === "repeated callback parameter" && e.detail === name)).toBe(true);
    expect((await agent.fetch(callback)).status).toBe(200);
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

  it.each([
    ["an empty code", ""],
    ["a code of 2,049 characters", "c".repeat(2049)],
  ])("refuses %s with a live state, and makes no token request", async (_name, code) => {
    const agent = new Agent();
    const callback = await agent.authorize(await agent.startLogin(h.origin), "kim", h.origin);
    callback.searchParams.set("code", code);
    const before = h.idp.tokenRequests.authorization_code;
    expect((await agent.fetch(callback)).status).toBe(400);
    expect(h.idp.tokenRequests.authorization_code).toBe(before);
    expect(h.audit.named("login.failure").at(-1)).toMatchObject({ reason: "no code" });
  });

  it("sends a code of 2,048 characters on to the provider (the cap is not lower)", async () => {
    const agent = new Agent();
    const callback = await agent.authorize(await agent.startLogin(h.origin), "lee", h.origin);
    callback.searchParams.set("code", "c".repeat(2048));
    const before = h.idp.tokenRequests.authorization_code;
    // The provider refuses a code it never issued; what matters is that it was asked.
    expect((await agent.fetch(callback)).status).toBe(400);
    expect(h.idp.tokenRequests.authorization_code).toBe(before + 1);
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

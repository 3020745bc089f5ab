import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../fixtures/agent";
import { startHarness, type Harness } from "../fixtures/harness";

const SESSION = "__Host-Http-session";

function sessionCount(h: Harness): number {
  return (h.bff.db.sqlite.prepare("SELECT count(*) AS n FROM sessions").get() as { n: number }).n;
}

/**
 * What the callback does besides its checks of the authorization response: the account
 * block, the login attempt's lifetime and sealing, the audit line of a success, and the
 * session routes that end the caller's own session (SECURITY.md A6, C11, D17, G32).
 */
describe("callback outcomes", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("answers 404 at the callback of a provider that does not exist", async () => {
    expect((await new Agent().fetch(`${h.origin}/auth/callback/myspace?state=x&code=y`)).status).toBe(404);
  });

  it("audits a successful login with the provider, the account and the session's keyed reference (SECURITY.md G32)", async () => {
    const { agent, token } = await h.login("audited");
    const me = (await (await agent.fetch(`${h.origin}/auth/me`)).json()) as { user: { id: string } };
    expect(h.audit.named("login.success").at(-1)).toMatchObject({
      provider: "demo",
      accountId: me.user.id,
      session: h.bff.audit.sessionRef(token.split(".")[0] ?? ""),
      detail: "account created",
    });
    expect(h.audit.named("login.started").at(-1)).toMatchObject({ provider: "demo", ip: "127.0.0.1", requestId: expect.any(String) });
    // The account exists now: a second login says nothing of creating one.
    await h.login("audited");
    expect(h.audit.named("login.success").at(-1)).not.toHaveProperty("detail");
  });

  it("answers an unknown provider's login and callback with the contract's 404", async () => {
    for (const path of ["/auth/login/myspace", "/auth/callback/myspace?state=x&code=y"]) {
      const response = await new Agent().fetch(`${h.origin}${path}`);
      expect(response.status).toBe(404);
      expect(await response.json()).toEqual({ error: "unknown_provider", message: "No such identity provider." });
    }
  });

  it("sends the player on with a page that links to where the login started", async () => {
    const agent = new Agent();
    const response = await agent.login(h.origin, "continued", { returnTo: "/arena?room=2" });
    const page = await response.text();
    expect(page).toContain("<title>Signed in");
    expect(page).toContain('<a id="continue" href="/arena?room=2">Continue to the game</a>');
  });

  it("lets no blocked account in: 403, no session, the failure audited", async () => {
    const { agent } = await h.login("blocked-player");
    const me = (await (await agent.fetch(`${h.origin}/auth/me`)).json()) as { user: { id: string } };
    h.bff.db.sqlite
      .prepare("INSERT INTO account_blocks (account_id, blocked_at, blocked_by, reason) VALUES (?, ?, 'test', 'test')")
      .run(me.user.id, h.clock.now());
    const again = new Agent();
    const sessions = sessionCount(h);
    const response = await again.login(h.origin, "blocked-player");
    expect(response.status).toBe(403);
    expect(again.cookie(h.origin, SESSION)).toBeNull();
    expect(sessionCount(h)).toBe(sessions);
    expect(h.audit.named("login.failure").at(-1)).toMatchObject({ accountId: me.user.id, reason: "account blocked" });
  });

  // Each refusal's audit reason (SECURITY.md G32: a reviewer reads why a login failed) and
  // what the page tells the player (its data-reason).
  it.each([
    ["without the login-state cookie", (url: URL) => url, false, { reason: "no login-state cookie" }, "cookies"],
    ["without state", (url: URL) => (url.searchParams.delete("state"), url), true, { reason: "no state" }, "expired"],
    ["with an unknown state", (url: URL) => (url.searchParams.set("state", "x".repeat(43)), url), true, { reason: "unknown, expired, replayed or mismatched state" }, "expired"],
    ["with state twice", (url: URL) => (url.searchParams.append("state", "x"), url), true, { reason: "repeated callback parameter", detail: "state" }, "expired"],
    [
      "with the provider's error",
      (url: URL) => (url.searchParams.delete("code"), url.searchParams.set("error", "access_denied"), url),
      true,
      { reason: "provider returned an error", detail: "access_denied" },
      "denied",
    ],
    ["with another issuer", (url: URL) => (url.searchParams.set("iss", "https://evil.example"), url), true, { reason: "issuer mismatch in callback (RFC 9207)" }, "provider_refused"],
    ["without a code", (url: URL) => (url.searchParams.delete("code"), url), true, { reason: "no code" }, "expired"],
  ])("audits why a callback %s failed, and tells the player what to do", async (_name, change, withCookie, audited, shown) => {
    const agent = new Agent();
    const callback = change(await agent.authorize(await agent.startLogin(h.origin), "refused-callback", h.origin));
    const response = await (withCookie ? agent : new Agent()).fetch(callback);
    expect(response.status).toBe(400);
    expect(await response.text()).toContain(`data-reason="${shown}"`);
    expect(h.audit.named("login.failure").at(-1)).toMatchObject({ provider: "demo", ...audited });
  });

  it("refuses a login attempt whose sealed verifier was tampered with, before any token request (SECURITY.md D17)", async () => {
    const agent = new Agent();
    const callback = await agent.authorize(await agent.startLogin(h.origin), "tampered", h.origin);
    h.bff.db.sqlite.prepare("UPDATE login_attempts SET code_verifier = 'v1.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAA'").run();
    const before = h.idp.tokenRequests.authorization_code;
    expect((await agent.fetch(callback)).status).toBe(400);
    expect(h.idp.tokenRequests.authorization_code).toBe(before);
    expect(h.audit.named("crypto.decrypt.failed").at(-1)).toMatchObject({ reason: "login attempt" });
    expect(h.audit.named("login.failure").at(-1)).toMatchObject({ reason: "login attempt unreadable" });
    expect(agent.cookie(h.origin, SESSION)).toBeNull();
  });

  it("expires the caller's cookie when it revokes its own session from the list (SECURITY.md A6)", async () => {
    const { agent, token } = await h.login("self-revoker");
    const response = await agent.fetch(`${h.origin}/auth/sessions/${token.split(".")[0]}`, { method: "DELETE", headers: h.csrf() });
    expect(response.status).toBe(204);
    expect(response.headers.getSetCookie()).toEqual([`${SESSION}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0`]);
    const other = await h.login("self-revoker");
    const elsewhere = await other.agent.fetch(`${h.origin}/auth/sessions/${(await h.login("self-revoker")).token.split(".")[0]}`, {
      method: "DELETE",
      headers: h.csrf(),
    });
    expect(elsewhere.status).toBe(204);
    expect(elsewhere.headers.getSetCookie()).toEqual([]);
  });

  // Last: it moves the clock.
  it("honours a login attempt for 600 s and not a millisecond longer (SECURITY.md C11)", async () => {
    const late = new Agent();
    const lateCallback = await late.authorize(await late.startLogin(h.origin), "late", h.origin);
    const onTime = new Agent();
    const onTimeCallback = await onTime.authorize(await onTime.startLogin(h.origin), "on-time", h.origin);
    h.clock.advance(600_000 - 1);
    expect((await onTime.fetch(onTimeCallback)).status).toBe(200);
    h.clock.advance(1);
    const before = h.idp.tokenRequests.authorization_code;
    expect((await late.fetch(lateCallback)).status).toBe(400);
    expect(h.idp.tokenRequests.authorization_code).toBe(before);
    expect(late.cookie(h.origin, SESSION)).toBeNull();
  });
});

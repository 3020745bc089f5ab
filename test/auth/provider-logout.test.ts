import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Agent } from "../fixtures/agent";
import { CLIENT_ID, startHarness, type Harness } from "../fixtures/harness";

/**
 * POST /auth/logout, asked to leave the provider too (OIDC RP-Initiated Logout 1.0), against
 * the real oidc-provider: the answer names its end-session URL, and following it (the
 * confirmation included) lands back on PUBLIC_ORIGIN signed out of both.
 */
describe("provider logout on request (POST /auth/logout?provider=1)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  const me = (token: string): Promise<number> => fetch(`${h.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${token}` } }).then((r) => r.status);

  /**
   * Whether a new login from this browser is shown the provider's sign-in form (true), or
   * goes straight back to the callback because the provider still knows the player (false).
   */
  async function providerAsksWhoYouAre(agent: Agent): Promise<boolean> {
    let next: URL = await agent.startLogin(h.origin);
    for (let hop = 0; hop < 20; hop += 1) {
      if (next.origin === h.origin) return false;
      const response = await agent.fetch(next);
      if (response.status >= 300 && response.status < 400) {
        next = new URL(response.headers.get("location") ?? "", next);
        continue;
      }
      return /name="login"/.test(await response.text());
    }
    throw new Error("too many redirects");
  }

  it("answers 200 {providerLogoutURL}, and following it lands on PUBLIC_ORIGIN signed out at both ends", async () => {
    const { agent, token } = await h.login("leaver");
    // Control: the provider remembers the player, so a second login needs no form.
    expect(await providerAsksWhoYouAre(agent)).toBe(false);

    const response = await agent.fetch(`${h.origin}/auth/logout?provider=1`, { method: "POST", headers: h.csrf() });
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(response.headers.get("clear-site-data")).toBe('"cookies"');
    expect(agent.cookie(h.origin, "__Host-Http-session")).toBeNull();
    const body = (await response.json()) as { providerLogoutURL: string };
    const url = new URL(body.providerLogoutURL);
    expect(`${url.origin}${url.pathname}`).toBe(`${h.idp.issuer}/session/end`);
    expect(url.searchParams.get("client_id")).toBe(CLIENT_ID);
    expect(url.searchParams.get("post_logout_redirect_uri")).toBe(`${h.origin}/`);
    expect(url.searchParams.get("id_token_hint")).toBe(h.idp.issued.idTokens.at(-1));
    expect(await me(token)).toBe(401);

    // The provider's confirmation page, then back to the game.
    const page = await agent.fetch(url);
    expect(page.status).toBe(200);
    const html = await page.text();
    const action = /<form id="op.logoutForm" method="post" action="([^"]+)"/.exec(html)?.[1] ?? "";
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(html)?.[1] ?? "";
    const confirmed = await agent.fetch(new URL(action, h.idp.issuer), {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ xsrf, logout: "yes" }).toString(),
    });
    expect(confirmed.status).toBe(303);
    expect(confirmed.headers.get("location")).toBe(`${h.origin}/`);

    // Signed out of the provider too: the next login asks who the player is again.
    expect(await providerAsksWhoYouAre(agent)).toBe(true);
    expect(h.audit.named("logout.provider.requested").at(-1)).toMatchObject({ provider: "demo" });
    expect(h.audit.text()).not.toContain(url.searchParams.get("id_token_hint"));
  });

  it("takes the request as a JSON body {\"provider\": true} too", async () => {
    const { agent, token } = await h.login("json-leaver");
    const response = await agent.fetch(`${h.origin}/auth/logout`, {
      method: "POST",
      headers: { ...h.csrf(), "content-type": "application/json" },
      body: JSON.stringify({ provider: true }),
    });
    expect(response.status).toBe(200);
    expect(((await response.json()) as { providerLogoutURL: string }).providerLogoutURL).toContain("/session/end?");
    expect(await me(token)).toBe(401);
  });

  it("leaves the default logout as it was: 204, no body, the provider session kept", async () => {
    const { agent, token } = await h.login("stayer");
    for (const init of [
      { method: "POST", headers: h.csrf() },
      { method: "POST", headers: { ...h.csrf(), "content-type": "application/json" }, body: JSON.stringify({ provider: false }) },
    ]) {
      const again = init.body === undefined ? { agent, token } : await h.login("stayer");
      const response = await again.agent.fetch(`${h.origin}/auth/logout`, init);
      expect(response.status).toBe(204);
      expect(await response.text()).toBe("");
      expect(await me(again.token)).toBe(401);
    }
    expect(await providerAsksWhoYouAre(agent)).toBe(false);
  });

  it("takes any other body as the default logout: JSON that is not {\"provider\": true}, malformed JSON, JSON sent as text", async () => {
    for (const [type, body] of [
      ["application/json", "null"],
      ["application/json", "{"],
      ["application/json", "[true]"],
      ["text/plain", JSON.stringify({ provider: true })],
      [undefined, JSON.stringify({ provider: true })],
    ] as const) {
      const { agent, token } = await h.login("body-leaver");
      const response = await agent.fetch(`${h.origin}/auth/logout`, {
        method: "POST",
        headers: { ...h.csrf(), ...(type === undefined ? {} : { "content-type": type }) },
        body,
      });
      expect(response.status).toBe(204);
      expect(await me(token)).toBe(401);
    }
  });

  it("still ends the session, without id_token_hint, when the stored ID token no longer opens", async () => {
    const { agent, token } = await h.login("tampered-leaver");
    const [id] = token.split(".");
    h.bff.db.sqlite.prepare("UPDATE sessions SET id_token = 'v1.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAA' WHERE id = ?").run(id);
    const response = await agent.fetch(`${h.origin}/auth/logout?provider=1`, { method: "POST", headers: h.csrf() });
    expect(response.status).toBe(200);
    const url = new URL(((await response.json()) as { providerLogoutURL: string }).providerLogoutURL);
    expect(url.searchParams.has("id_token_hint")).toBe(false);
    expect(url.searchParams.get("client_id")).not.toBeNull();
    expect(await me(token)).toBe(401);
    expect(h.audit.named("crypto.decrypt.failed").at(-1)).toMatchObject({ reason: "id token for provider logout" });
  });

  it("is still a CSRF-checked POST", async () => {
    const { token } = await h.login("csrf-leaver");
    const response = await fetch(`${h.origin}/auth/logout?provider=1`, {
      method: "POST",
      headers: { cookie: `__Host-Http-session=${token}`, origin: "https://evil.example", "x-csrf": "1" },
    });
    expect(response.status).toBe(403);
    expect(await me(token)).toBe(200);
  });
});

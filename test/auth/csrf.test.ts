import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";

describe("CSRF and Origin (SECURITY.md B)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { ALLOWED_ORIGINS: "https://beta.play.example" } });
  });
  afterAll(async () => {
    await h.close();
  });

  const NO_CSRF = "missing X-CSRF: 1";
  const FOREIGN = "origin not allowed";
  const NO_ORIGIN = "no usable Origin and not Sec-Fetch-Site: same-origin";
  // Each refusal with the reason its audit line gives (SECURITY.md G32: a reviewer reads why).
  const refusals: [string, (origin: string) => Record<string, string>, string][] = [
    ["Origin: https://evil.example", () => ({ "x-csrf": "1", origin: "https://evil.example" }), FOREIGN],
    ["Origin: null", () => ({ "x-csrf": "1", origin: "null" }), NO_ORIGIN],
    ["no Origin", () => ({ "x-csrf": "1" }), NO_ORIGIN],
    ["a lookalike Origin (suffix)", (origin) => ({ "x-csrf": "1", origin: `${origin}.evil.com` }), FOREIGN],
    ["a lookalike Origin (other port)", (origin) => ({ "x-csrf": "1", origin: origin.replace(/:\d+$/, ":1") }), FOREIGN],
    ["a lookalike Origin (https)", (origin) => ({ "x-csrf": "1", origin: origin.replace("http:", "https:") }), FOREIGN],
    ["Sec-Fetch-Site: same-site", () => ({ "x-csrf": "1", "sec-fetch-site": "same-site" }), NO_ORIGIN],
    ["Sec-Fetch-Site: cross-site with no Origin", () => ({ "x-csrf": "1", "sec-fetch-site": "cross-site" }), NO_ORIGIN],
    ["a foreign Origin even with Sec-Fetch-Site: same-origin", () => ({ "x-csrf": "1", origin: "https://evil.example", "sec-fetch-site": "same-origin" }), FOREIGN],
    ["missing X-CSRF", (origin) => ({ origin }), NO_CSRF],
    ["X-CSRF: 0", (origin) => ({ "x-csrf": "0", origin }), NO_CSRF],
    ["a text/plain form post", (origin) => ({ origin, "content-type": "text/plain" }), NO_CSRF],
    ["a urlencoded form post from another site", () => ({ origin: "https://evil.example", "content-type": "application/x-www-form-urlencoded" }), NO_CSRF],
  ];

  it.each(refusals)("refuses POST /auth/logout with %s: 403, session untouched, one audit event saying why", async (_name, headers, reason) => {
    const { token } = await h.login("csrf-target");
    const before = h.audit.named("csrf.refused").length;
    const response = await fetch(`${h.origin}/auth/logout`, {
      method: "POST",
      headers: { cookie: `__Host-Http-session=${token}`, ...headers(h.origin) },
      body: headers(h.origin)["content-type"] ? "a=b" : null,
    });
    expect(response.status).toBe(403);
    expect(await response.json()).toEqual({ error: "csrf", message: "This request must come from the game's own page." });
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    const events = h.audit.named("csrf.refused");
    expect(events.length).toBe(before + 1);
    expect(events.at(-1)).toMatchObject({ reason, method: "POST", path: "/auth/logout", origin: headers(h.origin).origin ?? "(none)" });
    const me = await fetch(`${h.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${token}` } });
    expect(me.status).toBe(200);
  });

  it.each(refusals)("refuses DELETE /auth/sessions with %s", async (_name, headers) => {
    const victim = await h.login("csrf-multi");
    const other = await h.login("csrf-multi");
    const response = await fetch(`${h.origin}/auth/sessions`, {
      method: "DELETE",
      headers: { cookie: `__Host-Http-session=${victim.token}`, ...headers(h.origin) },
    });
    expect(response.status).toBe(403);
    const me = await fetch(`${h.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${other.token}` } });
    expect(me.status).toBe(200);
  });

  it.each([
    ["the public origin", (origin: string) => ({ "x-csrf": "1", origin })],
    ["an ALLOWED_ORIGINS entry", () => ({ "x-csrf": "1", origin: "https://beta.play.example" })],
    ["no Origin but Sec-Fetch-Site: same-origin", () => ({ "x-csrf": "1", "sec-fetch-site": "same-origin" })],
    ["Origin: null with Sec-Fetch-Site: same-origin", () => ({ "x-csrf": "1", origin: "null", "sec-fetch-site": "same-origin" })],
  ])("accepts %s", async (_name, headers) => {
    const { token } = await h.login("csrf-ok");
    const response = await fetch(`${h.origin}/auth/logout`, {
      method: "POST",
      headers: { cookie: `__Host-Http-session=${token}`, ...headers(h.origin) },
    });
    expect(response.status).toBe(204);
  });

  it("never answers with CORS headers, whatever the Origin (SECURITY.md B10)", async () => {
    const { token } = await h.login("cors");
    for (const [method, path] of [["GET", "/auth/me"], ["OPTIONS", "/auth/me"], ["GET", "/.well-known/jwks.json"], ["OPTIONS", "/auth/logout"]] as const) {
      const response = await fetch(`${h.origin}${path}`, {
        method,
        headers: { cookie: `__Host-Http-session=${token}`, origin: "https://evil.example", "access-control-request-method": "POST" },
      });
      expect(response.headers.get("access-control-allow-origin")).toBeNull();
      expect(response.headers.get("access-control-allow-credentials")).toBeNull();
    }
  });

  it.each([
    ["GET /api/* without X-CSRF", "GET", (origin: string) => ({ origin })],
    ["GET /api/* from a foreign Origin", "GET", () => ({ "x-csrf": "1", origin: "https://evil.example" })],
    ["HEAD /api/* without X-CSRF", "HEAD", (origin: string) => ({ origin })],
  ])("refuses %s: every /api request is checked, whatever its method (SECURITY.md B9)", async (_name, method, headers) => {
    const { token } = await h.login("csrf-api");
    const response = await fetch(`${h.origin}/api/game/profile`, { method, headers: { cookie: `__Host-Http-session=${token}`, ...headers(h.origin) } });
    expect(response.status).toBe(403);
    expect(response.headers.get("content-type") ?? "").toContain("application/json");
  });

  it("exempts only POST on the back-channel logout path (server to server), no other method", async () => {
    const response = await fetch(`${h.origin}/auth/backchannel-logout/demo`, { method: "PUT", body: "logout_token=x" });
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ error: "csrf" });
  });

  it("changes nothing on GET: no route with a side effect answers a GET (SECURITY.md B8)", async () => {
    const { token } = await h.login("getter");
    const [id] = token.split(".");
    const cookie = { cookie: `__Host-Http-session=${token}` };
    for (const path of ["/auth/logout", `/auth/sessions/${id}`, "/auth/ws-ticket"]) {
      const response = await fetch(`${h.origin}${path}`, { headers: cookie });
      expect(response.status).toBe(405);
    }
    expect((await fetch(`${h.origin}/auth/me`, { headers: cookie })).status).toBe(200);
  });
});

describe("CSRF refusals under a flood (SECURITY.md H34, I38)", () => {
  it("answers 1,000 CSRF-less POSTs from one IP with 429 once the /auth burst is spent, in a handful of audit lines", async () => {
    const h = await startHarness({ env: { RATE_LIMIT_AUTH: "1/s,20" } });
    try {
      const statuses = new Map<number, number>();
      for (let i = 0; i < 1_000; i += 1) {
        const response = await fetch(`${h.origin}/auth/logout`, { method: "POST" });
        await response.body?.cancel();
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      }
      expect([...statuses]).toEqual([
        [403, 20],
        [429, 980],
      ]);
      await h.bff.audit.flush();
      const refusals = h.audit.events().filter((e) => e.event === "csrf.refused" || e.event === "ratelimit.hit");
      expect(refusals.map((e) => [e.event, e.count])).toEqual([
        ["csrf.refused", undefined],
        ["ratelimit.hit", undefined],
        ["csrf.refused", 19],
        ["ratelimit.hit", 979],
      ]);
    } finally {
      await h.close();
    }
  }, 60_000);
});

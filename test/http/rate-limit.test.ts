import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";
import { clientIP } from "../../src/http/client-ip";

describe("rate limits (SECURITY.md H34)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { RATE_LIMIT_LOGIN: "1/s,3" } });
  });
  afterAll(async () => {
    await h.close();
  });

  it("answers 429 with Retry-After once an IP spends its login burst, audits it, and refills with time", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i += 1) {
      statuses.push((await fetch(`${h.origin}/auth/login/demo`, { redirect: "manual" })).status);
    }
    expect(statuses).toEqual([302, 302, 302, 429]);
    const refused = await fetch(`${h.origin}/auth/login/demo`, { redirect: "manual" });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(await refused.json()).toEqual({ error: "rate_limited", message: expect.stringMatching(/too many requests/i) });
    // Refusals without a session are audited in aggregate: the first at once, the rest counted.
    await h.bff.audit.flush();
    expect(h.audit.named("ratelimit.hit").map((e) => [e.reason, e.count])).toEqual([
      ["login", undefined],
      ["login", 1],
    ]);
    h.clock.advance(1_000);
    expect((await fetch(`${h.origin}/auth/login/demo`, { redirect: "manual" })).status).toBe(302);
  });

  it("is not fooled by a rotating spoofed X-Forwarded-For when no proxy is trusted", async () => {
    h.clock.advance(10_000);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      const response = await fetch(`${h.origin}/auth/callback/demo?state=x`, { headers: { "x-forwarded-for": `203.0.113.${i}` } });
      statuses.push(response.status);
    }
    expect(statuses.slice(0, 3)).toEqual([400, 400, 400]);
    expect(statuses.slice(3)).toEqual([429, 429]);
  });
});

describe("rate limits on every /auth/* route and on upgrades", () => {
  it("limits /auth/me per IP and per session with RATE_LIMIT_AUTH", async () => {
    const h = await startHarness({ env: { RATE_LIMIT_AUTH: "1/s,3" } });
    try {
      const { token } = await h.login("auth-limited");
      const statuses: number[] = [];
      for (let i = 0; i < 4; i += 1) {
        statuses.push((await fetch(`${h.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${token}` } })).status);
      }
      // The login itself spent one token of the IP's bucket (its callback is under /auth/*).
      expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(1);
      expect(statuses[0]).toBe(200);
    } finally {
      await h.close();
    }
  });

  it("limits upgrades per IP with RATE_LIMIT_UPGRADE, before any session or ticket work", async () => {
    const { startRecordingBackend } = await import("../fixtures/backend");
    const { mintTicket, upgradeStatus } = await import("../fixtures/ws-client");
    const backend = await startRecordingBackend();
    const h = await startHarness({ env: { GAME_BACKEND_URL: backend.url, RATE_LIMIT_UPGRADE: "1/s,2" } });
    try {
      const { token } = await h.login("upgrade-limited");
      const statuses: number[] = [];
      for (let i = 0; i < 3; i += 1) statuses.push(await upgradeStatus(h, await mintTicket(h, token), { token }));
      expect(statuses).toEqual([101, 101, 429]);
      expect(h.audit.named("ratelimit.hit").some((e) => e.reason === "upgrade")).toBe(true);
    } finally {
      await h.close();
      await backend.close();
    }
  });
});

describe("rate limits come before CSRF (SECURITY.md H34, I38)", () => {
  it("limits CSRF-less requests to /api/* and /auth/ws-ticket, so a flood of them meets 429", async () => {
    const h = await startHarness({ env: { RATE_LIMIT_API: "1/s,3", RATE_LIMIT_TICKET: "1/s,3" } });
    try {
      const { token } = await h.login("csrf-less-flood");
      const cookie = { cookie: `__Host-Http-session=${token}` };
      for (const [method, path] of [
        ["GET", "/api/game/state"],
        ["POST", "/auth/ws-ticket"],
      ] as const) {
        const statuses: number[] = [];
        for (let i = 0; i < 5; i += 1) statuses.push((await fetch(`${h.origin}${path}`, { method, headers: cookie })).status);
        expect(statuses).toEqual([403, 403, 403, 429, 429]);
      }
    } finally {
      await h.close();
    }
  });
});

describe("#clientIP", () => {
  it.each([
    ["10.0.0.1", "1.2.3.4", 0, "10.0.0.1"],
    ["10.0.0.1", "spoofed, 1.2.3.4", 1, "1.2.3.4"],
    ["10.0.0.1", "spoofed, 1.2.3.4, 10.0.0.9", 2, "1.2.3.4"],
    ["10.0.0.1", "1.2.3.4", 3, "1.2.3.4"],
    ["10.0.0.1", undefined, 1, "10.0.0.1"],
    ["10.0.0.1", " , ", 1, "10.0.0.1"],
  ] as const)("socket %s, X-Forwarded-For %j, %i trusted hops → %s", (socket, xff, hops, expected) => {
    expect(clientIP(socket, xff, hops)).toBe(expected);
  });
});

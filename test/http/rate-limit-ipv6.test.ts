import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";
import { rawUpgrade, upgradeLines } from "../fixtures/ws-client";

/**
 * An IPv6 host usually owns a whole /64. Keyed on the full address, every request from a
 * new address of that /64 would find a fresh rate-limit bucket and a fresh "first line" in
 * the audit log (the independent review's F1): the limits and the aggregation key on the
 * /64 instead (SECURITY.md H34, I38). The addresses come through a trusted proxy, the one
 * way a test on loopback can speak from many IPv6 addresses.
 */
describe("one IPv6 /64 is one client (SECURITY.md H34, I38)", () => {
  let h: Harness;
  let n = 0;
  /** A new address in 2001:db8:1:2::/64 on every call. */
  const rotating = (): Record<string, string> => ({ "x-forwarded-for": `2001:db8:1:2:${(n += 1).toString(16)}::${n.toString(16)}` });

  beforeAll(async () => {
    h = await startHarness({ env: { TRUST_PROXY: "1", RATE_LIMIT_AUTH: "1/s,5", RATE_LIMIT_UPGRADE: "1/s,3" } });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("limits /auth/* for a client rotating through its /64", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 8; i += 1) statuses.push((await fetch(`${h.origin}/auth/me`, { headers: rotating() })).status);
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429, 429, 429]);
    // Another /64 has its own bucket.
    expect((await fetch(`${h.origin}/auth/me`, { headers: { "x-forwarded-for": "2001:db8:9::1" } })).status).toBe(401);
  });

  it("limits /ws upgrades for a client rotating through its /64", async () => {
    const statuses: string[] = [];
    for (let i = 0; i < 5; i += 1) {
      const [, forwarded = ""] = Object.entries(rotating())[0] ?? [];
      const answer = await rawUpgrade(h, [...upgradeLines(h, { protocols: "game.v1, ticket.x", origin: "https://evil.example" }), `X-Forwarded-For: ${forwarded}`]);
      statuses.push((answer.split("\r\n")[0] ?? "").slice(9, 12));
    }
    expect(statuses).toEqual(["403", "403", "403", "429", "429"]);
  });

  it("audits CSRF refusals from rotating addresses of one /64 in aggregate", async () => {
    const before = h.audit.named("csrf.refused").length;
    for (let i = 0; i < 4; i += 1) {
      // Fresh limiter buckets are not the point here: advance the clock so none runs dry.
      h.clock.advance(10_000);
      await fetch(`${h.origin}/auth/logout`, { method: "POST", headers: { ...rotating(), origin: h.origin } });
    }
    expect(h.audit.named("csrf.refused").length - before).toBe(1);
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";

describe("POST /auth/ws-ticket (CONTRACT.md, SECURITY.md A7, E23, H34)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { GAME_BACKEND_URL: "http://127.0.0.1:9", RATE_LIMIT_TICKET: "1/s,3" } });
  });
  afterAll(async () => {
    await h.close();
  });

  function post(token: string | null, headers: Record<string, string> = h.csrf()): Promise<Response> {
    return fetch(`${h.origin}/auth/ws-ticket`, {
      method: "POST",
      headers: { ...(token === null ? {} : { cookie: `__Host-Http-session=${token}` }), ...headers },
    });
  }

  it("answers 200 {ticket, expiresIn} with no-store, and audits the issue without the ticket", async () => {
    const { token } = await h.login("ticketed");
    const response = await post(token);
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-control")).toContain("no-store");
    const body: unknown = await response.json();
    expect(body).toEqual({ ticket: expect.stringMatching(/^[a-z2-7]{32}$/), expiresIn: 30 });
    const ticket = String(Reflect.get(Object(body), "ticket"));
    expect(h.audit.named("ws.ticket.issued").length).toBeGreaterThan(0);
    expect(h.audit.text()).not.toContain(ticket);
  });

  it("refuses without a session → 401", async () => {
    expect((await post(null)).status).toBe(401);
  });

  it.each([
    ["no X-CSRF", (origin: string): Record<string, string> => ({ origin })],
    ["a foreign Origin", (): Record<string, string> => ({ "x-csrf": "1", origin: "https://evil.example" })],
    ["a lookalike Origin", (origin: string): Record<string, string> => ({ "x-csrf": "1", origin: `${origin}.evil.com` })],
    ["no Origin and no Sec-Fetch-Site", (): Record<string, string> => ({ "x-csrf": "1" })],
  ])("refuses %s → 403, issuing nothing", async (_name, headers) => {
    const { token } = await h.login("csrf-target");
    // The ticket limit is taken before CSRF (a refusal costs a token too): start with a full bucket.
    h.clock.advance(10_000);
    const before = Number(Reflect.get(Object(h.bff.db.sqlite.prepare("SELECT count(*) AS n FROM ws_tickets").get()), "n"));
    expect((await post(token, headers(h.origin))).status).toBe(403);
    const after = Number(Reflect.get(Object(h.bff.db.sqlite.prepare("SELECT count(*) AS n FROM ws_tickets").get()), "n"));
    expect(after).toBe(before);
  });

  it("does not issue tickets on GET", async () => {
    const { token } = await h.login("getter");
    const response = await fetch(`${h.origin}/auth/ws-ticket`, { headers: { cookie: `__Host-Http-session=${token}` } });
    expect([404, 405]).toContain(response.status);
  });

  it("rate-limits a session → 429 with Retry-After", async () => {
    const { token } = await h.login("hoarder");
    const statuses: number[] = [];
    for (let i = 0; i < 5; i += 1) statuses.push((await post(token)).status);
    expect(statuses).toContain(429);
    const limited = await post(token);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(h.audit.named("ratelimit.hit").some((e) => e.reason === "ticket")).toBe(true);
  });
});

import { describe, expect, it } from "vitest";
import { startRecordingBackend } from "../fixtures/backend";
import { startHarness, type Harness } from "../fixtures/harness";
import { mintTicket, rawUpgrade, upgradeLines } from "../fixtures/ws-client";

/**
 * SECURITY.md H34: limits per session as well as per IP. Behind a trusted proxy every
 * request below comes from a new address, so the IP buckets never run dry: only the
 * session's bucket can refuse. Dropping the session key (issue 17) must fail these.
 */
describe("per-session rate limits hold against rotating addresses (SECURITY.md H34)", () => {
  let address = 0;
  /** A new client address for every request, as a trusted proxy would report it. */
  const rotating = (): Record<string, string> => ({ "x-forwarded-for": `198.51.100.${(address += 1) % 250}` });

  const cases: [string, Record<string, string>, (h: Harness, token: string) => Promise<Response>][] = [
    [
      "GET /auth/me (RATE_LIMIT_AUTH)",
      { RATE_LIMIT_AUTH: "1/s,4" },
      (h, token) => fetch(`${h.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${token}`, ...rotating() } }),
    ],
    [
      "POST /auth/ws-ticket (RATE_LIMIT_TICKET)",
      { RATE_LIMIT_TICKET: "1/s,4" },
      (h, token) =>
        fetch(`${h.origin}/auth/ws-ticket`, { method: "POST", headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf(), ...rotating() } }),
    ],
    [
      "GET /api/* (RATE_LIMIT_API)",
      { RATE_LIMIT_API: "1/s,4" },
      (h, token) => fetch(`${h.origin}/api/nowhere/x`, { headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf(), ...rotating() } }),
    ],
  ];

  it.each(cases)("%s: one session from a new address each time → 429 once its burst is spent", async (_name, limits, call) => {
    const h = await startHarness({ env: { TRUST_PROXY: "1", ...limits } });
    try {
      // Two logins take 4 tokens of the proxy-less 127.0.0.1 bucket: the burst is 4.
      const { token } = await h.login("many-addresses");
      const other = await h.login("many-addresses");
      const statuses: number[] = [];
      for (let i = 0; i < 6; i += 1) statuses.push((await call(h, token)).status);
      expect(statuses.slice(0, 4)).not.toContain(429);
      expect(statuses.slice(4)).toEqual([429, 429]);
      const [sessionId = ""] = token.split(".");
      const hits = h.audit.named("ratelimit.hit");
      expect(hits.length).toBeGreaterThanOrEqual(2);
      expect(hits.every((e) => e.session === h.bff.audit.sessionRef(sessionId))).toBe(true);
      // Another session from the same rotating addresses has its own bucket.
      expect((await call(h, other.token)).status).not.toBe(429);
    } finally {
      await h.close();
    }
  });

  it("/ws: one session upgrading from a new address each time → 429 once RATE_LIMIT_UPGRADE's burst is spent, ticket unspent", async () => {
    const backend = await startRecordingBackend();
    const h = await startHarness({ env: { GAME_BACKEND_URL: backend.url, TRUST_PROXY: "1", RATE_LIMIT_UPGRADE: "1/s,2", WS_MAX_SOCKETS_PER_SESSION: "10" } });
    let last = "";
    const upgrade = async (token: string, ticket: string): Promise<string> => {
      const [, forwarded = ""] = Object.entries(rotating())[0] ?? [];
      last = await rawUpgrade(h, [...upgradeLines(h, { protocols: `game.v1, ticket.${ticket}`, token }), `X-Forwarded-For: ${forwarded}`]);
      return last.slice(0, 12);
    };
    try {
      const { token } = await h.login("upgrades-everywhere");
      const statuses: string[] = [];
      for (let i = 0; i < 3; i += 1) statuses.push(await upgrade(token, await mintTicket(h, token)));
      expect(statuses).toEqual(["HTTP/1.1 101", "HTTP/1.1 101", "HTTP/1.1 429"]);
      // CONTRACT.md's refusal: its error code and Retry-After, and the reason in the audit line.
      expect(last).toMatch(/\r\nRetry-After: \d+\r\n/);
      expect(last).toContain('{"error":"rate_limited"');
      const [sessionId = ""] = token.split(".");
      expect(h.audit.named("ws.upgrade.refused").at(-1)).toMatchObject({ status: 429, reason: "upgrade rate limit", session: h.bff.audit.sessionRef(sessionId) });
      expect(h.audit.named("ratelimit.hit").some((e) => e.reason === "upgrade" && e.session === h.bff.audit.sessionRef(sessionId))).toBe(true);
      // The refused upgrade did not spend its ticket: a second later it opens a socket.
      const ticket = await mintTicket(h, token);
      expect(await upgrade(token, ticket)).toBe("HTTP/1.1 429");
      h.clock.advance(1_000);
      expect(await upgrade(token, ticket)).toBe("HTTP/1.1 101");
      // Another session from the same rotating addresses has its own bucket.
      const other = await h.login("upgrades-everywhere");
      expect(await upgrade(other.token, await mintTicket(h, other.token))).toBe("HTTP/1.1 101");
      expect(backend.upgrades).toBe(4);
    } finally {
      await h.close();
      await backend.close();
    }
  });
});

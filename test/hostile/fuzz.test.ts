import { describe, expect, it } from "vitest";
import { readCookie } from "../../src/auth/cookies";
import { sanitizeReturnTo } from "../../src/auth/return-to";
import { clientIP } from "../../src/http/client-ip";
import { parseUpstreams, resolveUpstream } from "../../src/proxy/upstreams";
import { startHarness } from "../fixtures/harness";
import { FUZZ_SEED, prng } from "../fixtures/prng";

const ALPHABET = ["a", "z", "2", "7", ".", "/", "\\", "%", "2f", "2e", "5c", ";", "=", " ", "\t", "\r", "\n", "\u0000", "é", "😀", "..", "//", "http:", "@", ":", "?", "#", "__Host-Http-session", "\u202e"];

function randomString(next: () => number, maxLength: number): string {
  let out = "";
  const length = Math.floor(next() * maxLength);
  for (let i = 0; i < length; i += 1) {
    out += ALPHABET[Math.floor(next() * ALPHABET.length)];
  }
  return out;
}

const SEED = FUZZ_SEED;
const CASES = 3000;

describe(`seeded fuzzing (seed ${SEED}, ${CASES} cases each; FUZZ_SEED replays)`, () => {
  it("#sanitizeReturnTo only ever yields a same-origin path", () => {
    const next = prng(SEED);
    for (let i = 0; i < CASES; i += 1) {
      const input = randomString(next, 40);
      const output = sanitizeReturnTo(input);
      const resolved = new URL(output, "https://play.example.com");
      expect(resolved.origin, JSON.stringify(input)).toBe("https://play.example.com");
      expect(output.startsWith("/"), JSON.stringify(input)).toBe(true);
      expect(output.startsWith("//") || output.includes("\\") || /[\u0000-\u001f]/.test(output), JSON.stringify(input)).toBe(false);
    }
  });

  it("#readCookie never throws and never returns a value containing a separator", () => {
    const next = prng(SEED + 1);
    for (let i = 0; i < CASES; i += 1) {
      const header = randomString(next, 60);
      const value = readCookie(header, "__Host-Http-session");
      if (value !== null) {
        expect(value.includes(";"), JSON.stringify(header)).toBe(false);
      }
    }
  });

  it("#clientIP never returns a client-chosen address when no proxy is trusted", () => {
    const next = prng(SEED + 2);
    for (let i = 0; i < CASES; i += 1) {
      expect(clientIP("192.0.2.1", randomString(next, 30), 0)).toBe("192.0.2.1");
    }
  });

  it("#resolveUpstream never yields a URL outside the route's target", () => {
    const routes = parseUpstreams({ routes: [{ prefix: "/api/game/", target: "http://10.0.0.1:9000/v1/game/" }] }, [], "fuzz");
    const next = prng(SEED + 4);
    for (let i = 0; i < CASES; i += 1) {
      const raw = `/api/game/${randomString(next, 30)}`;
      const resolved = resolveUpstream(routes, raw);
      if ("url" in resolved) {
        expect(resolved.url.href.startsWith("http://10.0.0.1:9000/v1/game"), JSON.stringify(raw)).toBe(true);
        // Still inside after the one extra decode a careless upstream might do.
        const decodedOnce = new URL(decodeURIComponent(resolved.url.pathname), "http://10.0.0.1:9000");
        expect(decodedOnce.pathname.startsWith("/v1/game"), JSON.stringify(raw)).toBe(true);
      }
    }
  });

  it("ticket redemption refuses every fuzzed ticket without consuming the real one", async () => {
    const h = await startHarness();
    try {
      const { token } = await h.login("ticket-owner");
      const [sessionId] = token.split(".");
      const { ticket } = h.bff.tickets.issue(sessionId ?? "");
      const next = prng(SEED + 5);
      for (let i = 0; i < 500; i += 1) {
        const candidate = next() < 0.5 ? randomString(next, 40) : ticket.slice(0, 31) + "abcdefghijklmnopqrstuvwxyz234567"[Math.floor(next() * 32)];
        if (candidate === ticket) continue;
        expect(h.bff.tickets.redeem(candidate).status, JSON.stringify(candidate)).toBe("unknown");
      }
      expect(h.bff.tickets.redeem(ticket)).toEqual({ status: "valid", sessionId });
    } finally {
      await h.close();
    }
  });

  it("session validation refuses every fuzzed cookie, and the server keeps serving", async () => {
    const h = await startHarness();
    try {
      const { token } = await h.login("fuzz-owner");
      const next = prng(SEED + 3);
      const mutations: ((t: string) => string)[] = [
        (t) => t.slice(0, Math.floor(next() * t.length)),
        (t) => t + randomString(next, 5),
        (t) => {
          const i = Math.floor(next() * t.length);
          return t.slice(0, i) + (t[i] === "a" ? "b" : "a") + t.slice(i + 1);
        },
        (t) => t.replace(".", randomString(next, 3)),
        (t) => t.toUpperCase(),
        () => randomString(next, 80),
      ];
      const rows = h.bff.db.sqlite.prepare("SELECT count(*) AS n FROM sessions");
      const before = (rows.get() as { n: number }).n;
      for (let i = 0; i < 200; i += 1) {
        const mutate = mutations[Math.floor(next() * mutations.length)] ?? ((t: string) => t);
        const candidate = mutate(token);
        if (candidate === token) continue;
        expect(h.bff.sessions.validate(candidate, { slide: true }), JSON.stringify(candidate)).toBeNull();
      }
      expect((rows.get() as { n: number }).n).toBe(before);
      expect(h.bff.sessions.validate(token, { slide: false })).not.toBeNull();
    } finally {
      await h.close();
    }
  });
});

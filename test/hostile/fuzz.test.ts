import { describe, expect, it } from "vitest";
import { readCookie } from "../../src/auth/cookies";
import { sanitizeReturnTo } from "../../src/auth/return-to";
import { clientIP } from "../../src/http/client-ip";
import { startHarness } from "../fixtures/harness";

/** Mulberry32: a small seeded PRNG, so a failing case can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = ["a", "z", "2", "7", ".", "/", "\\", "%", "2f", "2e", "5c", ";", "=", " ", "\t", "\r", "\n", "\u0000", "é", "😀", "..", "//", "http:", "@", ":", "?", "#", "__Host-Http-session", "\u202e"];

function randomString(next: () => number, maxLength: number): string {
  let out = "";
  const length = Math.floor(next() * maxLength);
  for (let i = 0; i < length; i += 1) {
    out += ALPHABET[Math.floor(next() * ALPHABET.length)];
  }
  return out;
}

const SEED = Number(process.env.FUZZ_SEED ?? 20261122);
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

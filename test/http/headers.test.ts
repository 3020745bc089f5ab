import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";

const EXPECTED: Record<string, RegExp> = {
  "content-security-policy":
    /^default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self' http:\/\/127\.0\.0\.1:\d+; connect-src 'self' ws:\/\/localhost:\d+$/,
  "x-content-type-options": /^nosniff$/,
  "cross-origin-opener-policy": /^same-origin$/,
  "cross-origin-resource-policy": /^same-origin$/,
  "referrer-policy": /^strict-origin-when-cross-origin$/,
};

describe("security headers (SECURITY.md F)", () => {
  let h: Harness;
  let token: string;
  beforeAll(async () => {
    h = await startHarness();
    token = (await h.login("headers")).token;
  });
  afterAll(async () => {
    await h.close();
  });

  it.each([
    ["GET", "/auth/me", true],
    ["GET", "/auth/me", false],
    ["GET", "/no/such/page", false],
    ["GET", "/auth/login/demo", false],
    ["GET", "/auth/login/nope", false],
    ["GET", "/auth/callback/demo?state=x", false],
    ["POST", "/auth/logout", true],
    ["GET", "/healthz", false],
    ["GET", "/readyz", false],
    ["GET", "/.well-known/jwks.json", false],
    ["DELETE", "/auth/sessions", true],
    ["GET", "/style.css", false],
  ])("%s %s (with session: %s) carries every header, a charset, and no X-Powered-By", async (method, path, withSession) => {
    const response = await fetch(`${h.origin}${path}`, {
      method,
      headers: withSession ? { cookie: `__Host-Http-session=${token}` } : {},
      redirect: "manual",
    });
    for (const [name, pattern] of Object.entries(EXPECTED)) {
      expect(response.headers.get(name), name).toMatch(pattern);
    }
    expect(response.headers.get("x-powered-by")).toBeNull();
    const type = response.headers.get("content-type");
    if (type !== null && /^(text\/|application\/json)/.test(type)) {
      expect(type).toMatch(/charset=utf-8/i);
    }
    // Plain http here: HSTS only when served over TLS.
    expect(response.headers.get("strict-transport-security")).toBeNull();
  });

  it("refuses TRACE with 405 and the same headers (fetch cannot send TRACE: raw node:http)", async () => {
    const { request } = await import("node:http");
    const answer = await new Promise<{ status: number; headers: Record<string, unknown> }>((resolve, reject) => {
      const req = request(`${h.origin}/`, { method: "TRACE" }, (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, headers: res.headers });
      });
      req.on("error", reject);
      req.end();
    });
    expect(answer.status).toBe(405);
    expect(String(answer.headers["content-security-policy"])).toMatch(EXPECTED["content-security-policy"] as RegExp);
    expect(answer.headers["x-content-type-options"]).toBe("nosniff");
  });

  it("sends HSTS when the public origin is https", async () => {
    const tls = await startHarness({ env: { PUBLIC_ORIGIN: "https://play.example.com" } });
    try {
      const response = await fetch(`${tls.bff.url}/healthz`);
      expect(response.headers.get("strict-transport-security")).toBe("max-age=31536000; includeSubDomains");
    } finally {
      await tls.close();
    }
  });

  it("answers a 16 KiB+ header block with 431", async () => {
    const response = await fetch(`${h.origin}/healthz`, { headers: { "x-big": "a".repeat(17 * 1024) } });
    expect(response.status).toBe(431);
  });

  it("answers /readyz 503 while the game backend does not answer, and 200 /healthz", async () => {
    expect((await fetch(`${h.origin}/healthz`)).status).toBe(200);
    const ready = await fetch(`${h.origin}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ database: true, backend: false });
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AssertionVerifier } from "../../src/demo/verify-assertion";
import { startHarness, type Harness } from "../fixtures/harness";
import { startRecordingUpstream, type RecordingUpstream } from "../fixtures/http-upstream";

describe("/api relay (CONTRACT.md Identity for upstreams, SECURITY.md D20–D21, H36)", () => {
  let upstream: RecordingUpstream;
  let h: Harness;
  let token: string;
  const api = (path: string, init: RequestInit & { headers?: Record<string, string> } = {}): Promise<Response> =>
    fetch(`${h.origin}${path}`, { redirect: "manual", ...init, headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf(), ...init.headers } });

  beforeAll(async () => {
    upstream = await startRecordingUpstream();
    h = await startHarness({ env: { GAME_BACKEND_URL: upstream.url }, portcullis: { upstreamTimeoutMs: 300 } });
    token = (await h.login("api-user")).token;
  });
  afterAll(async () => {
    await h.close();
    await upstream.close();
  });

  it("sends a verifiable assertion and none of the browser's credentials or forwarding headers", async () => {
    const response = await api("/api/game/profile?x=1", {
      headers: { authorization: "Bearer stolen", "x-forwarded-for": "6.6.6.6", forwarded: "for=6.6.6.6", "x-forwarded-host": "evil.example", "x-custom": "kept" },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-upstream")).toBe("yes");
    const seen = upstream.requests.at(-1);
    expect(seen?.url).toBe("/api/game/profile?x=1");
    expect(seen?.headers.cookie).toBeUndefined();
    expect(seen?.headers.forwarded).toBeUndefined();
    expect(seen?.headers["x-forwarded-host"]).toBeUndefined();
    expect(seen?.headers["x-csrf"]).toBeUndefined();
    expect(seen?.headers["x-forwarded-for"]).toMatch(/^(127\.0\.0\.1|::1|::ffff:127\.0\.0\.1)$/);
    expect(seen?.headers["x-forwarded-proto"]).toBe("http");
    expect(seen?.headers["x-custom"]).toBe("kept");
    expect(seen?.headers.authorization).not.toBe("Bearer stolen");
    const verifier = new AssertionVerifier({ jwksURL: `${h.origin}/.well-known/jwks.json`, issuer: h.origin, audience: upstream.url });
    const identity = await verifier.verifyAuthorization(seen?.headers.authorization);
    expect(identity.sid).toBe(token.split(".")[0]);
    expect(identity.name).toBe("api-user");
  });

  it("relays POST bodies and the upstream's status", async () => {
    const response = await api("/api/game/score", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ score: 5 }) });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ method: "POST", length: 11 });
  });

  it("never follows an upstream redirect, and rewrites Location only when it points into the upstream", async () => {
    const away = await api("/api/game/redirect");
    expect(away.status).toBe(302);
    expect(away.headers.get("location")).toBe("https://evil.example/phish");
    expect(upstream.requests.filter((r) => r.url.includes("phish"))).toHaveLength(0);
    const self = await api("/api/game/redirect-self");
    expect(self.status).toBe(302);
    expect(self.headers.get("location")).toBe("/api/game/profile?from=redirect");
  });

  it("strips Set-Cookie from upstream answers", async () => {
    const response = await api("/api/game/cookie");
    expect(response.status).toBe(200);
    expect(response.headers.getSetCookie()).toEqual([]);
  });

  it("refuses a 2 MiB chunked body with 413, and the upstream sees nothing", async () => {
    const before = upstream.requests.length;
    const chunk = new Uint8Array(64 * 1024).fill(97);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 32; i += 1) controller.enqueue(chunk);
        controller.close();
      },
    });
    const response = await api("/api/game/score", { method: "POST", body, duplex: "half" } as RequestInit & { headers?: Record<string, string> });
    expect(response.status).toBe(413);
    expect(upstream.requests.length).toBe(before);
  });

  it("answers 504 when the upstream is too slow, and 502 when it is unreachable", async () => {
    expect((await api("/api/game/slow")).status).toBe(504);
    const down = await startHarness({ env: { GAME_BACKEND_URL: "http://127.0.0.1:9" } });
    try {
      const { token: t } = await down.login("down");
      const response = await fetch(`${down.origin}/api/game/profile`, { headers: { cookie: `__Host-Http-session=${t}`, ...down.csrf() } });
      expect(response.status).toBe(502);
      expect(down.audit.named("upstream.failed").length).toBe(1);
    } finally {
      await down.close();
    }
  });

  it("answers 401 without a session and 404 for an unknown /api path, calling nothing", async () => {
    const before = upstream.requests.length;
    expect((await fetch(`${h.origin}/api/game/profile`, { headers: h.csrf() })).status).toBe(401);
    expect((await api("/api/other/x")).status).toBe(404);
    expect((await api("/api/gamex/profile")).status).toBe(404);
    expect(upstream.requests.length).toBe(before);
  });

  const csrfRefusals: [string, string, Record<string, string>][] = [
    ["GET without X-CSRF", "GET", { origin: "" }],
    ["POST without X-CSRF", "POST", { origin: "" }],
    ["GET from a foreign Origin", "GET", { "x-csrf": "1", origin: "https://evil.example" }],
    ["POST from a foreign Origin", "POST", { "x-csrf": "1", origin: "https://evil.example" }],
    ["GET with Origin: null", "GET", { "x-csrf": "1", origin: "null" }],
    ["GET with Sec-Fetch-Site: same-site", "GET", { "x-csrf": "1", "sec-fetch-site": "same-site" }],
    ["POST text/plain form", "POST", { "content-type": "text/plain" }],
  ];
  it.each(csrfRefusals)("refuses %s with 403 and calls nothing upstream", async (_name, method, headers) => {
    const before = upstream.requests.length;
    const clean: Record<string, string> = { cookie: `__Host-Http-session=${token}` };
    for (const [name, value] of Object.entries(headers)) if (value !== "") clean[name] = value;
    if (headers.origin === "") clean.origin = h.origin;
    const response = await fetch(`${h.origin}/api/game/profile`, { method, headers: clean, body: method === "POST" ? "x=1" : null });
    expect(response.status).toBe(403);
    expect(upstream.requests.length).toBe(before);
  });

  // Each hostile raw path either is refused or reaches the upstream under /api/game/.
  const hostilePaths = [
    "/api/game/../admin",
    "/api/game/%2e%2e/admin",
    "/api/game/%2E%2E/admin",
    "/api/game/.%2e/admin",
    "/api/game/..%2fadmin",
    "/api/game/..%2Fadmin",
    "/api/game/%2fadmin",
    "/api/game//evil.com/x",
    "/api//evil.com/x",
    "/api/game/..\\admin",
    "/api/game/%5c..%5cadmin",
    "/api/game/./profile",
    "/api/game/profile%00.json",
    "/api/game/%",
    "/api/game/@evil.com",
    "/api/game/http://evil.com/",
    "/api/game/%252e%252e/admin",
    "/api/game/profile/..",
    "/api/game/;/../admin",
    "/api/game/\u0000",
  ];
  it.each(hostilePaths)("keeps %j inside the route's target or refuses it", async (path) => {
    const before = upstream.requests.length;
    const { request } = await import("node:http");
    const url = new URL(h.origin);
    const status = await new Promise<number>((resolve) => {
      const req = request({ host: url.hostname, port: url.port, method: "GET", path: path.replace("\u0000", "%00"), headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", () => resolve(0));
      req.end();
    });
    const reached = upstream.requests.slice(before);
    if (reached.length === 0) {
      expect([400, 404]).toContain(status);
    } else {
      expect(status).toBe(200);
      for (const r of reached) {
        // Inside the target as sent, and still inside after one more round of decoding.
        expect(r.url.startsWith("/api/game/")).toBe(true);
        expect(new URL(decodeURIComponent(r.url), "http://upstream").pathname.startsWith("/api/game/")).toBe(true);
        expect(r.url).not.toMatch(/\/\.\.?(\/|$)|\/\/|\\/);
      }
    }
  });
});

import type { IncomingMessage, ServerResponse } from "node:http";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AssertionVerifier } from "../../src/demo/verify-assertion";
import { startHarness, type Harness } from "../fixtures/harness";
import { startRecordingUpstream, type RecordingUpstream } from "../fixtures/http-upstream";

/**
 * Sends `rawPath` byte for byte (latin1), as no HTTP client library would, and returns the
 * status code the server answered (0 when it only closed the connection).
 */
function rawGet(origin: string, rawPath: string, headers: Record<string, string>): Promise<number> {
  const url = new URL(origin);
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname);
    let received = "";
    socket.setEncoding("latin1");
    socket.on("connect", () => {
      const lines = [`GET ${rawPath} HTTP/1.1`, `Host: ${url.host}`, ...Object.entries(headers).map(([n, v]) => `${n}: ${v}`), "Connection: close", "", ""];
      socket.write(Buffer.from(lines.join("\r\n"), "latin1"));
    });
    socket.on("data", (chunk: string) => {
      received += chunk;
    });
    socket.on("error", () => resolve(0));
    socket.on("close", () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1] ?? 0)));
  });
}

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

  it("strips hop-by-hop headers, those named in Connection, Expect and client-address headers", async () => {
    const { request } = await import("node:http");
    const url = new URL(h.origin);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: url.hostname,
          port: url.port,
          method: "POST",
          path: "/api/game/score",
          headers: {
            cookie: `__Host-Http-session=${token}`,
            ...h.csrf(),
            connection: "keep-alive, x-private-hop",
            "x-private-hop": "secret",
            "keep-alive": "timeout=5",
            "proxy-authorization": "Basic c2VjcmV0",
            te: "trailers",
            expect: "100-continue",
            "x-real-ip": "6.6.6.6",
            "true-client-ip": "6.6.6.6",
            "x-forwarded-proto": "https",
            "content-type": "application/json",
          },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      req.end(JSON.stringify({ score: 1 }));
    });
    expect(status).toBe(200);
    const seen = upstream.requests.at(-1);
    for (const name of ["x-private-hop", "keep-alive", "proxy-authorization", "te", "expect", "x-real-ip", "true-client-ip", "cookie", "x-csrf"]) {
      expect(seen?.headers[name], name).toBeUndefined();
    }
    expect(seen?.headers["x-forwarded-proto"]).toBe("http");
    expect(seen?.body.toString()).toBe(JSON.stringify({ score: 1 }));
  });

  // SECURITY.md I42: the method, the URL and the client's address are the BFF's to state.
  const overrideHeaders: [string, string][] = [
    ["x-http-method-override", "DELETE"],
    ["x-http-method", "DELETE"],
    ["x-method-override", "DELETE"],
    ["x-original-url", "/admin"],
    ["x-original-uri", "/admin"],
    ["x-rewrite-url", "/admin"],
    ["x-override-url", "/admin"],
    ["x-original-host", "evil.example"],
    ["x-host", "evil.example"],
    ["client-ip", "6.6.6.6"],
    ["true-client-ip", "6.6.6.6"],
    ["x-client-ip", "6.6.6.6"],
    ["x-real-ip", "6.6.6.6"],
    ["x-originating-ip", "6.6.6.6"],
    ["x-remote-ip", "6.6.6.6"],
    ["x-remote-addr", "6.6.6.6"],
    ["fastly-client-ip", "6.6.6.6"],
    ["cf-connecting-ip", "6.6.6.6"],
    ["cf-connecting-ipv6", "::6"],
    ["x-cluster-client-ip", "6.6.6.6"],
    ["x-proxyuser-ip", "6.6.6.6"],
    ["x-azure-clientip", "6.6.6.6"],
    ["X-Forwarded-Host", "evil.example"],
    // The independent review's F3: X-Forwarded-For's cousins and scheme overrides.
    ["x-forwarded", "for=6.6.6.6"],
    ["forwarded-for", "6.6.6.6"],
    ["x-original-forwarded-for", "6.6.6.6"],
    ["x-envoy-external-address", "6.6.6.6"],
    ["x-vendor-client-address", "6.6.6.6"],
    ["x-something-for", "6.6.6.6"],
    ["front-end-https", "on"],
    ["x-url-scheme", "https"],
  ];
  it.each(overrideHeaders)("never sends the browser's %s upstream", async (name, value) => {
    const before = upstream.requests.length;
    const response = await api("/api/game/profile", { headers: { [name]: value, "x-game-version": "7" } });
    expect(response.status).toBe(200);
    // Still a GET to the path asked for, with the game's own headers intact.
    expect(await response.json()).toMatchObject({ method: "GET", url: "/api/game/profile" });
    const seen = upstream.requests.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.headers[name.toLowerCase()]).toBeUndefined();
    expect(seen[0]?.headers["x-game-version"]).toBe("7");
  });

  // What an upstream answers must not make the browser navigate, move our origin's traffic
  // elsewhere, fetch for us, or report to someone else.
  const answerHeaders: [string, string][] = [
    ["refresh", "0; url=https://evil.example/"],
    ["alt-svc", 'h2="evil.example:443"; ma=86400'],
    ["link", "<https://evil.example/x.css>; rel=preload; as=style"],
    ["service-worker-allowed", "/"],
    ["report-to", '{"group":"g","max_age":1,"endpoints":[{"url":"https://evil.example/r"}]}'],
    ["reporting-endpoints", 'g="https://evil.example/r"'],
    ["nel", '{"report_to":"g","max_age":1}'],
    ["accept-ch", "Sec-CH-UA-Platform-Version"],
    ["timing-allow-origin", "*"],
    ["content-security-policy-report-only", "default-src 'none'; report-uri https://evil.example/r"],
  ];
  it.each(answerHeaders)("never lets the upstream's %s reach the browser", async (name, value) => {
    const path = `/api/game/answer-${name}`;
    const setHeader = (req: IncomingMessage, res: ServerResponse): void => {
      // The echo upstream answers with writeHead, which keeps headers set before it.
      if (req.url === path) res.setHeader(name, value);
    };
    upstream.server.prependListener("request", setHeader);
    try {
      const response = await api(path);
      expect(response.status).toBe(200);
      expect(response.headers.get("x-upstream")).toBe("yes");
      expect(response.headers.get(name)).toBeNull();
    } finally {
      upstream.server.off("request", setHeader);
    }
  });

  it("passes a 204 through, and keeps the answer out of shared caches unless the upstream chose a policy", async () => {
    const empty = await api("/api/game/empty", { method: "DELETE" });
    expect(empty.status).toBe(204);
    expect(empty.headers.get("x-upstream")).toBe("yes");
    expect(empty.headers.get("cache-control")).toBe("no-store");
    const policy = await api("/api/game/policy");
    expect(policy.headers.get("cache-control")).toBe("private, max-age=5");
  });

  it("drops the upstream's CORS, Clear-Site-Data and Connection-listed headers; our security headers win", async () => {
    const response = await api("/api/game/policy");
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("policy");
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    expect(response.headers.get("access-control-allow-credentials")).toBeNull();
    expect(response.headers.get("clear-site-data")).toBeNull();
    expect(response.headers.get("x-hop")).toBeNull();
    expect(response.headers.get("content-security-policy")).toContain("default-src 'self'");
    expect(response.headers.get("x-content-type-options")).toBe("nosniff");
  });

  it("answers 405 for a method the route does not take, calling nothing", async () => {
    const down = await startHarness({
      upstreams: () => ({ routes: [{ prefix: "/api/game/", target: `${upstream.url}/api/game/`, methods: ["GET", "DELETE"] }] }),
    });
    try {
      const { token: t } = await down.login("methods");
      const before = upstream.requests.length;
      const response = await fetch(`${down.origin}/api/game/score`, { method: "POST", headers: { cookie: `__Host-Http-session=${t}`, ...down.csrf() }, body: "{}" });
      expect(response.status).toBe(405);
      expect(response.headers.get("allow")).toBe("GET, DELETE");
      expect(await response.json()).toEqual({ error: "method_not_allowed", message: "This API route does not take that method." });
      expect(upstream.requests.length).toBe(before);
    } finally {
      await down.close();
    }
  });

  it("rate-limits /api per session and per IP with 429 and Retry-After, calling nothing past the limit", async () => {
    const limited = await startHarness({ env: { GAME_BACKEND_URL: upstream.url, RATE_LIMIT_API: "1/s,3" } });
    try {
      const { token: t } = await limited.login("busy");
      const before = upstream.requests.length;
      const call = (): Promise<Response> => fetch(`${limited.origin}/api/game/profile`, { headers: { cookie: `__Host-Http-session=${t}`, ...limited.csrf() } });
      const statuses = [];
      for (let i = 0; i < 5; i += 1) statuses.push((await call()).status);
      expect(statuses).toEqual([200, 200, 200, 429, 429]);
      expect(upstream.requests.length - before).toBe(3);
      const refused = await call();
      expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(limited.audit.named("ratelimit.hit").some((e) => e.reason === "api")).toBe(true);
      // The buckets refill on the injected clock, not on the wall clock.
      limited.clock.advance(1_000);
      expect((await call()).status).toBe(200);
    } finally {
      await limited.close();
    }
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

  it("refuses a session whose token ciphertext was tampered with, even on an assertion route, calling nothing", async () => {
    const victim = await h.login("tampered");
    const sessionId = victim.token.split(".")[0];
    const { access_token: sealed } = h.bff.db.sqlite.prepare("SELECT access_token FROM sessions WHERE id = ?").get(sessionId) as { access_token: string };
    const flipped = sealed.slice(0, -3) + (sealed.at(-3) === "A" ? "B" : "A") + sealed.slice(-2);
    h.bff.db.sqlite.prepare("UPDATE sessions SET access_token = ? WHERE id = ?").run(flipped, sessionId);
    const before = upstream.requests.length;
    const response = await fetch(`${h.origin}/api/game/profile`, { headers: { cookie: `__Host-Http-session=${victim.token}`, ...h.csrf() } });
    expect(response.status).toBe(401);
    expect(upstream.requests.length).toBe(before);
    expect(h.bff.db.sqlite.prepare("SELECT 1 FROM sessions WHERE id = ?").get(sessionId)).toBeUndefined();
    expect(h.audit.named("crypto.decrypt.failed").length).toBeGreaterThanOrEqual(1);
  });

  it("refuses a session tampered with after its tokens passed the check once (the remembered ciphertexts are compared, issue 14)", async () => {
    const victim = await h.login("tampered-later");
    const sessionId = victim.token.split(".")[0];
    const call = (): Promise<Response> => fetch(`${h.origin}/api/game/profile`, { headers: { cookie: `__Host-Http-session=${victim.token}`, ...h.csrf() } });
    expect((await call()).status).toBe(200);
    expect((await call()).status).toBe(200);
    const { sealed } = h.bff.db.sqlite.prepare("SELECT access_token AS sealed FROM sessions WHERE id = ?").get(sessionId) as { sealed: string };
    h.bff.db.sqlite.prepare("UPDATE sessions SET access_token = ? WHERE id = ?").run(sealed.slice(0, -3) + (sealed.at(-3) === "A" ? "B" : "A") + sealed.slice(-2), sessionId);
    const before = upstream.requests.length;
    expect((await call()).status).toBe(401);
    expect(upstream.requests.length).toBe(before);
    expect(h.bff.db.sqlite.prepare("SELECT 1 FROM sessions WHERE id = ?").get(sessionId)).toBeUndefined();
  });

  it("refuses a session whose ID token alone was tampered with after a first check", async () => {
    const victim = await h.login("id-token-later");
    const sessionId = victim.token.split(".")[0];
    const call = (): Promise<Response> => fetch(`${h.origin}/api/game/profile`, { headers: { cookie: `__Host-Http-session=${victim.token}`, ...h.csrf() } });
    expect((await call()).status).toBe(200);
    const { sealed } = h.bff.db.sqlite.prepare("SELECT id_token AS sealed FROM sessions WHERE id = ?").get(sessionId) as { sealed: string };
    h.bff.db.sqlite.prepare("UPDATE sessions SET id_token = ? WHERE id = ?").run(sealed.slice(0, -3) + (sealed.at(-3) === "A" ? "B" : "A") + sealed.slice(-2), sessionId);
    expect((await call()).status).toBe(401);
  });

  it("answers 401 without a session and 404 for an unknown /api path, calling nothing", async () => {
    const before = upstream.requests.length;
    expect((await fetch(`${h.origin}/api/game/profile`, { headers: h.csrf() })).status).toBe(401);
    const unknown = await api("/api/other/x");
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ error: "not_found", message: "No such API route." });
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
    ["POST with Sec-Fetch-Site: same-site", "POST", { "x-csrf": "1", "sec-fetch-site": "same-site" }],
    ["POST with Origin: null", "POST", { "x-csrf": "1", origin: "null" }],
    ["GET from a look-alike Origin", "GET", { "x-csrf": "1", origin: "SUFFIX" }],
    ["POST text/plain form", "POST", { "content-type": "text/plain" }],
  ];
  it.each(csrfRefusals)("refuses %s with 403 and calls nothing upstream", async (_name, method, headers) => {
    const before = upstream.requests.length;
    const clean: Record<string, string> = { cookie: `__Host-Http-session=${token}` };
    for (const [name, value] of Object.entries(headers)) if (value !== "") clean[name] = value;
    if (headers.origin === "") clean.origin = h.origin;
    if (headers.origin === "SUFFIX") clean.origin = `${h.origin}.evil.example`;
    const response = await fetch(`${h.origin}/api/game/profile`, { method, headers: clean, body: method === "POST" ? "x=1" : null });
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ error: "csrf" });
    expect(upstream.requests.length).toBe(before);
  });

  // Each hostile raw path, sent byte for byte, either is refused or reaches the upstream
  // under /api/game/ and stays there however the upstream decodes it.
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
    "//api/game/profile",
    "/api/game/..\\admin",
    "/api/game/%5c..%5cadmin",
    "/api/game/%5C%5Cevil.com",
    "/api/game/./profile",
    "/api/game/profile%00.json",
    "/api/game/profile\u0000",
    "/api/game/%",
    "/api/game/%zz",
    "/api/game/@evil.com",
    "/api/game/http://evil.com/",
    "/api/game/%252e%252e/admin",
    "/api/game/profile/..",
    "/api/game/;/../admin",
    "/api/game/..;/admin",
    "/api/game/%2e%2e;x=1/admin",
    "/api/game/%EF%BC%8E%EF%BC%8E/admin",
    "/api/game/%E2%80%A5/admin",
    "/api/game/%c0%ae%c0%ae/admin",
    "/api/game/\u00e9vil",
    "/api/game/x#/../../admin",
    "/api/game/ /admin",
    "/api/game/\t/admin",
    "http://evil.com/api/game/profile",
    "/api/game/profile?next=/../admin",
  ];
  it.each(hostilePaths)("keeps %j inside the route's target or refuses it", async (path) => {
    const before = upstream.requests.length;
    const status = await rawGet(h.origin, path, { cookie: `__Host-Http-session=${token}`, ...h.csrf() });
    const reached = upstream.requests.slice(before);
    if (reached.length === 0) {
      expect([400, 404]).toContain(status);
    } else {
      expect(status).toBe(200);
      for (const r of reached) {
        // Inside the target as sent, and still inside after one more round of decoding.
        const pathname = r.url.split("?")[0] ?? "";
        expect(pathname.startsWith("/api/game/")).toBe(true);
        expect(new URL(decodeURIComponent(pathname), "http://upstream").pathname.startsWith("/api/game/")).toBe(true);
        expect(pathname).not.toMatch(/\/\.\.?(\/|;|$)|\/\/|\\|%2f|%5c|%2e/i);
      }
    }
  });

  it("relays ordinary paths, encoded names and query strings unchanged", async () => {
    for (const path of ["/api/game/profile", "/api/game/players/J%C3%BCrgen", "/api/game/a/b.json?x=1&y=%2F..%2F", "/api/game"]) {
      const before = upstream.requests.length;
      expect(await rawGet(h.origin, path, { cookie: `__Host-Http-session=${token}`, ...h.csrf() })).toBe(200);
      expect(upstream.requests.slice(before).map((r) => r.url)).toEqual([path]);
    }
  });
});

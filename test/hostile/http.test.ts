import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";

function rawRequest(port: number, chunks: string[], options: { gapMs?: number } = {}): Promise<{ response: string; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = connect(port, "localhost");
    let response = "";
    socket.on("data", (data) => {
      response += data.toString("latin1");
    });
    socket.on("close", () => resolve({ response, closed: true }));
    socket.on("error", () => undefined);
    let index = 0;
    const sendNext = (): void => {
      if (socket.destroyed || index >= chunks.length) return;
      socket.write(chunks[index] ?? "");
      index += 1;
      setTimeout(sendNext, options.gapMs ?? 0);
    };
    socket.on("connect", sendNext);
  });
}

describe("hostile HTTP clients (SECURITY.md H35, H36)", () => {
  let h: Harness;
  let port: number;
  beforeAll(async () => {
    h = await startHarness({ server: { headersTimeoutMs: 1_000, requestTimeoutMs: 2_000 } });
    port = Number(new URL(h.origin).port);
  });
  afterAll(async () => {
    await h.close();
  });

  it("cuts off a slowloris client that never finishes its headers, and keeps serving others", async () => {
    const slow = rawRequest(port, ["GET /healthz HTTP/1.1\r\n", "Host: localhost\r\n", ...Array.from({ length: 40 }, (_, i) => `X-Slow-${i}: a\r\n`)], { gapMs: 100 });
    const meanwhile = await fetch(`${h.origin}/healthz`);
    expect(meanwhile.status).toBe(200);
    const { response, closed } = await slow;
    expect(closed).toBe(true);
    // Node answers 408 when the header timeout hits before the headers are complete.
    expect(response === "" || response.startsWith("HTTP/1.1 408")).toBe(true);
  });

  it("refuses a chunked body over 1 MiB on /auth/* with 413", async () => {
    const { token } = await h.login("big-body");
    const chunk = "a".repeat(64 * 1024);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 20; i += 1) controller.enqueue(new TextEncoder().encode(chunk));
        controller.close();
      },
    });
    const response = await fetch(`${h.origin}/auth/logout`, {
      method: "POST",
      headers: { ...h.csrf(), cookie: `__Host-Http-session=${token}`, "content-type": "application/octet-stream" },
      body,
      duplex: "half",
    } as RequestInit);
    expect(response.status).toBe(413);
    expect((await fetch(`${h.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${token}` } })).status).toBe(200);
  });

  it("refuses a declared Content-Length over 1 MiB with 413 before reading it", async () => {
    const { response } = await rawRequest(port, [
      `POST /auth/logout HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${2 * 1024 * 1024}\r\nX-CSRF: 1\r\nOrigin: ${h.origin}\r\nConnection: close\r\n\r\n`,
    ]);
    expect(response.startsWith("HTTP/1.1 413")).toBe(true);
  });

  // Requests refused before Hono runs: by @hono/node-server (it cannot build a Request) or
  // by Node's parser. SECURITY.md F31: every refusal carries the headers and the JSON shape.
  const refusedBeforeApp: [string, string, number][] = [
    ["a Host with a space", "GET /healthz HTTP/1.1\r\nHost: exa mple.com\r\n\r\n", 400],
    ["a Host with userinfo", "GET /healthz HTTP/1.1\r\nHost: localhost@evil.example\r\n\r\n", 400],
    ["no Host in HTTP/1.1", "GET /healthz HTTP/1.1\r\n\r\n", 400],
    ["no Host in HTTP/1.0", "GET /healthz HTTP/1.0\r\n\r\n", 400],
    ["an absolute-form target and no Host in HTTP/1.1", "GET http://localhost/healthz HTTP/1.1\r\n\r\n", 400],
    ["a backslash in the path", "GET /auth\\..\\healthz HTTP/1.1\r\nHost: localhost\r\n\r\n", 400],
    ["a broken absolute-form target", "GET http://[::1/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n", 400],
    ["an absolute-form target with a backslash", "GET http://localhost\\evil/ HTTP/1.1\r\nHost: localhost\r\n\r\n", 400],
    ["a header line without a colon", "GET /healthz HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n", 400],
    ["a control character in the target", "GET /\u0001 HTTP/1.1\r\nHost: localhost\r\n\r\n", 400],
    ["headers over 16 KiB", `GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: ${"a".repeat(20 * 1024)}\r\n\r\n`, 431],
  ];
  it.each(refusedBeforeApp)("answers %s with the JSON error and every security header", async (_name, request, status) => {
    const expected = await fetch(`${h.origin}/healthz`);
    const { response } = await rawRequest(port, [request]);
    const [head = "", body = ""] = response.split("\r\n\r\n");
    const [statusLine, ...lines] = head.split("\r\n");
    expect(statusLine).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    const headers = new Headers(lines.map((line): [string, string] => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 1).trim()]));
    for (const name of ["content-security-policy", "x-content-type-options", "cross-origin-opener-policy", "cross-origin-resource-policy", "referrer-policy", "x-frame-options"]) {
      expect(headers.get(name), name).toBe(expected.headers.get(name));
      expect(headers.get(name), name).not.toBeNull();
    }
    expect(headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(headers.get("cache-control")).toBe("no-store");
    expect(headers.get("x-powered-by")).toBeNull();
    const parsed: unknown = JSON.parse(body);
    expect(parsed).toMatchObject({ error: expect.any(String), message: expect.any(String) });
    expect((await fetch(`${h.origin}/healthz`)).status).toBe(200);
  });

  it.each([
    ["a cookie header of 12 KiB", { cookie: `a=${"x".repeat(12 * 1024)}` }, "401"],
    ["300 cookies", { cookie: Array.from({ length: 300 }, (_, i) => `c${i}=v`).join("; ") }, "401"],
    ["a session cookie with bad encoding", { cookie: "__Host-Http-session=%ZZ%00.%FF" }, "401"],
    ["a session cookie with NUL bytes", { cookie: "__Host-Http-session=aaaaaaaaaaaaaaaaaaaaaaaaaa\u0000.bbbb" }, "401"],
    ["an empty session cookie", { cookie: "__Host-Http-session=" }, "401"],
    ["a session cookie without the dot", { cookie: `__Host-Http-session=${"a".repeat(67)}` }, "401"],
    ["a session cookie with two dots", { cookie: `__Host-Http-session=${"a".repeat(26)}.${"b".repeat(20)}.${"c".repeat(19)}` }, "401"],
    ["an upper-case session cookie", { cookie: `__Host-Http-session=${"A".repeat(26)}.${"B".repeat(40)}` }, "401"],
    ["a non-prefixed look-alike cookie", { cookie: `session=${"a".repeat(26)}.${"b".repeat(40)}` }, "401"],
  ])("answers %s (expecting %s) and keeps serving", async (_name, headers, status) => {
    const response = await fetch(`${h.origin}/auth/me`, { headers: headers as Record<string, string> }).catch(() => null);
    if (response !== null) {
      expect([Number(status), 431]).toContain(response.status);
    }
    expect((await fetch(`${h.origin}/healthz`)).status).toBe(200);
  });

  it.each([
    "/auth/callback/demo?state=&code=",
    "/auth/callback/demo?state=%00&code=%00",
    `/auth/callback/demo?state=${"s".repeat(4000)}&code=${"c".repeat(3000)}`,
    "/auth/callback/demo?state=a&state=b&code=c",
    "/auth/callback/demo?error=access_denied&error_description=%0d%0aInjected: yes",
    "/auth/callback/demo?iss=%0d%0a&code=x&state=y",
    "/auth/callback/..%2fdemo?state=x",
    "/auth/login/demo?returnTo=%0d%0aSet-Cookie:%20x=y",
    "/auth/login/%00",
  ])("refuses hostile callback input %s without writing anything", async (path) => {
    const sessions = (h.bff.db.sqlite.prepare("SELECT count(*) AS n FROM sessions").get() as { n: number }).n;
    const response = await fetch(`${h.origin}${path}`, { headers: { cookie: "__Host-Http-login=forged" }, redirect: "manual" });
    expect([302, 400, 404]).toContain(response.status);
    expect(response.headers.get("set-cookie") ?? "").not.toMatch(/x=y/);
    expect((h.bff.db.sqlite.prepare("SELECT count(*) AS n FROM sessions").get() as { n: number }).n).toBe(sessions);
    const log = h.audit.text();
    expect(log).not.toMatch(/\r\nInjected/);
  });
});

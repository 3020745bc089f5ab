import type { IncomingMessage, ServerResponse } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";
import { startRecordingUpstream, type RecordingUpstream } from "../fixtures/http-upstream";

/**
 * SECURITY.md I42: the request-line and client-address headers an upstream framework would
 * obey never reach it — the listed names that no pattern covers, and vendor variants of the
 * client-address family that no list names.
 */
describe("/api relay: headers a browser must not choose (SECURITY.md I42)", () => {
  let upstream: RecordingUpstream;
  let h: Harness;
  let token: string;
  beforeAll(async () => {
    upstream = await startRecordingUpstream();
    h = await startHarness({ env: { GAME_BACKEND_URL: upstream.url } });
    token = (await h.login("header-picker")).token;
  });
  afterAll(async () => {
    await h.close();
    await upstream.close();
  });

  it("strips path and host overrides, and client-address headers by their last word", async () => {
    const hostile = {
      "x-original-path": "/admin",
      "x-envoy-original-path": "/admin",
      "x-http-host-override": "evil.example",
      "x-acme-socketip": "6.6.6.6",
      "x-azure-clientip": "6.6.6.6",
      "x-edge-client-ipv6": "::6",
      ip: "6.6.6.6",
      "x-game-ip-note": "kept: ip is not its last word",
    };
    const response = await fetch(`${h.origin}/api/game/profile`, { headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf(), ...hostile } });
    expect(response.status).toBe(200);
    const seen = upstream.requests.at(-1)?.headers ?? {};
    for (const name of ["x-original-path", "x-envoy-original-path", "x-http-host-override", "x-acme-socketip", "x-azure-clientip", "x-edge-client-ipv6", "ip"]) {
      expect(seen[name], name).toBeUndefined();
    }
    expect(seen["x-game-ip-note"]).toBe("kept: ip is not its last word");
  });

  it("strips every hop-by-hop and framing header, those named in Connection whatever their case, and Accept-Encoding", async () => {
    const { request } = await import("node:http");
    const url = new URL(h.origin);
    const before = upstream.requests.length;
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
            connection: "keep-alive, X-Private-Hop",
            "x-private-hop": "secret",
            "proxy-authenticate": "Basic realm=x",
            "proxy-connection": "keep-alive",
            trailer: "x-checksum",
            upgrade: "h2c",
            "accept-encoding": "gzip, br",
            "transfer-encoding": "chunked",
            "content-type": "application/json",
          },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      // Two chunks: the browser's body arrives chunked, with no Content-Length.
      req.write('{"score":');
      req.end("1}");
    });
    expect(status).toBe(200);
    const seen = upstream.requests.slice(before);
    expect(seen).toHaveLength(1);
    const headers = seen[0]?.headers ?? {};
    for (const name of ["x-private-hop", "proxy-authenticate", "proxy-connection", "trailer", "upgrade", "accept-encoding", "transfer-encoding"]) {
      expect(headers[name], name).toBeUndefined();
    }
    expect(headers.connection ?? "").not.toMatch(/private-hop/i);
    // The body was read whole: the upstream gets it with its length, not the browser's framing.
    expect(headers["content-length"]).toBe("11");
    expect(seen[0]?.body.toString()).toBe('{"score":1}');
  });

  it("never passes a bodiless request's Content-Length on: a GET's body is not relayed, so its length must not be", async () => {
    const { connect } = await import("node:net");
    const url = new URL(h.origin);
    const before = upstream.requests.length;
    const answer = await new Promise<string>((resolve) => {
      const socket = connect(Number(url.port), url.hostname);
      let received = "";
      socket.setEncoding("latin1");
      socket.on("connect", () => {
        const csrf = Object.entries(h.csrf()).map(([n, v]) => `${n}: ${v}\r\n`).join("");
        socket.write(`GET /api/game/profile HTTP/1.1\r\nHost: ${url.host}\r\nCookie: __Host-Http-session=${token}\r\n${csrf}Content-Length: 5\r\nConnection: close\r\n\r\nhello`);
      });
      socket.on("data", (chunk: string) => {
        received += chunk;
      });
      socket.on("error", () => resolve(received));
      socket.on("close", () => resolve(received));
    });
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    const seen = upstream.requests.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.headers["content-length"]).toBeUndefined();
    expect(seen[0]?.body.length).toBe(0);
  });

  // What only the upstream's own connection may carry, and what would act on our origin.
  const answerHeaders: [string, string][] = [
    ["proxy-authenticate", "Basic realm=upstream"],
    ["proxy-connection", "keep-alive"],
    ["trailer", "x-checksum"],
    ["upgrade", "h2c"],
    ["te", "trailers"],
    ["set-cookie2", "upstream=1"],
    ["strict-transport-security", "max-age=0"],
    ["critical-ch", "Sec-CH-UA-Platform-Version"],
  ];
  it.each(answerHeaders)("never lets the upstream's %s reach the browser", async (name, value) => {
    const path = `/api/game/answer-${name}`;
    const setHeader = (req: IncomingMessage, res: ServerResponse): void => {
      if (req.url === path) res.setHeader(name, value);
    };
    upstream.server.prependListener("request", setHeader);
    try {
      const { request } = await import("node:http");
      const url = new URL(h.origin);
      const raw = await new Promise<string[]>((resolve, reject) => {
        const req = request({ host: url.hostname, port: url.port, path, headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } }, (res) => {
          res.resume();
          expect(res.statusCode).toBe(200);
          resolve(res.rawHeaders);
        });
        req.on("error", reject);
        req.end();
      });
      const names = raw.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      expect(names).toContain("x-upstream");
      expect(names).not.toContain(name);
    } finally {
      upstream.server.off("request", setHeader);
    }
  });
});

/**
 * A provider token is only ever the one the player logged in with: a session from the demo
 * provider calling a route that needs the "other" provider's token is refused, and nothing
 * is sent (the CONTRACT.md credential rule).
 */
describe("/api relay: a provider-token route of another provider", () => {
  let echo: RecordingUpstream;
  let h: Harness;
  beforeAll(async () => {
    echo = await startRecordingUpstream();
    h = await startHarness({
      secondProvider: true,
      upstreams: () => ({ routes: [{ prefix: "/api/other/", target: `${echo.url}/echo/`, credential: "provider-token", provider: "other" }] }),
    });
  });
  afterAll(async () => {
    await h.close();
    await echo.close();
  });

  it("→ 403 wrong_provider, calling nothing", async () => {
    const { token } = await h.login("demo-player");
    const response = await fetch(`${h.origin}/api/other/x`, { headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } });
    expect(response.status).toBe(403);
    expect(await response.json()).toEqual({ error: "wrong_provider", message: expect.stringContaining("other") });
    expect(echo.requests).toHaveLength(0);
  });
});

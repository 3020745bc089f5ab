import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";

/**
 * The /api relay's connections to its upstream (issue 14): a keep-alive pool, a request
 * sent again only when it cannot have reached the upstream, and answers passed through
 * byte for byte.
 */
describe("/api relay: the upstream connection pool", () => {
  /** Each arrival: its method, path and the relay's source port (one port, one connection). */
  const arrivals: { method: string; path: string; port: number }[] = [];
  /** Sockets to drop, unanswered, as soon as their next request arrives. */
  const dropNext = new WeakSet<Socket>();
  let upstream: Server;
  let h: Harness;
  let token: string;
  const api = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${h.origin}${path}`, { ...init, headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf(), "content-type": "application/json" } });

  beforeAll(async () => {
    upstream = createServer((req, res) => {
      arrivals.push({ method: req.method ?? "", path: req.url ?? "", port: req.socket.remotePort ?? 0 });
      if (dropNext.has(req.socket)) {
        // What an upstream whose keep-alive timeout just ran out does to a request that
        // crossed it on the wire: closes the connection without an answer.
        req.socket.destroy();
        return;
      }
      req.resume();
      req.on("end", () => {
        if (req.url === "/api/game/drop-next") dropNext.add(req.socket);
        if (req.url === "/api/game/gzip") {
          const body = gzipSync(JSON.stringify({ packed: "x".repeat(2_000) }));
          res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip", "content-length": body.length });
          res.end(body);
          return;
        }
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ path: req.url }));
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", () => resolve()));
    h = await startHarness({ env: { GAME_BACKEND_URL: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` } });
    token = (await h.login("pool-user")).token;
  });
  afterAll(async () => {
    await h.close();
    upstream.closeAllConnections();
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
  });

  it("sends one request after another over one kept-alive connection", async () => {
    const before = arrivals.length;
    for (let i = 0; i < 3; i += 1) expect((await api(`/api/game/seq-${i}`)).status).toBe(200);
    const ports = new Set(arrivals.slice(before).map((a) => a.port));
    expect(arrivals.slice(before)).toHaveLength(3);
    expect(ports.size).toBe(1);
  });

  it("sends a GET once more on a fresh connection when the pooled one was closed under it, and never a POST", async () => {
    expect((await api("/api/game/drop-next")).status).toBe(200);
    let before = arrivals.length;
    const get = await api("/api/game/after-drop");
    expect(get.status).toBe(200);
    expect(await get.json()).toEqual({ path: "/api/game/after-drop" });
    const tries = arrivals.slice(before);
    expect(tries.map((a) => a.path)).toEqual(["/api/game/after-drop", "/api/game/after-drop"]);
    expect(tries[0]?.port).not.toBe(tries[1]?.port);

    // A POST may have been acted on before the connection went: it is not sent twice.
    expect((await api("/api/game/drop-next")).status).toBe(200);
    before = arrivals.length;
    const post = await api("/api/game/score", { method: "POST", body: "{}" });
    expect(post.status).toBe(502);
    expect(arrivals.slice(before).filter((a) => a.method === "POST")).toHaveLength(1);
  });

  it("passes a compressed answer through untouched, with its own length and encoding", async () => {
    const response = await api("/api/game/gzip");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-encoding")).toBe("gzip");
    expect(Number(response.headers.get("content-length"))).toBe(gzipSync(JSON.stringify({ packed: "x".repeat(2_000) })).length);
    // fetch decodes it, as a browser does.
    expect(await response.json()).toEqual({ packed: "x".repeat(2_000) });
  });
});

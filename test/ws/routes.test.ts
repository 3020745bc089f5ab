import { createServer as createHTTPServer, type IncomingHttpHeaders } from "node:http";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { loadConfig } from "../../src/config";
import { buildWebSocketRoutes, resolveWebSocketRoute } from "../../src/ws/routes";
import { startHarness, type Harness } from "../fixtures/harness";
import { freePort } from "../fixtures/stack";
import { closeOf, mintTicket, nextMessage, UpgradeRefused } from "../fixtures/ws-client";

describe("#resolveWebSocketRoute", () => {
  const routes = buildWebSocketRoutes(
    loadConfig({
      GAME_BACKEND_URL: "http://game.internal:9000",
      WS_ROUTES: JSON.stringify([{ path: "/socket.io/" }, { path: "/play/", target: "ws://other.internal/inner/", audience: "play" }]),
    }),
  );
  it.each([
    ["/ws", "http://game.internal:9000/ws"],
    ["/ws?room=7&name=a%20b", "http://game.internal:9000/ws?room=7&name=a%20b"],
    ["/socket.io/?EIO=4&transport=websocket", "http://game.internal:9000/socket.io/?EIO=4&transport=websocket"],
    ["/socket.io", "http://game.internal:9000/socket.io"],
    ["/socket.io/admin/x?y", "http://game.internal:9000/socket.io/admin/x?y"],
    ["/play/table/3?seat=n", "http://other.internal/inner/table/3?seat=n"],
  ])("%s → %s", (target, url) => {
    const resolved = resolveWebSocketRoute(routes, target);
    expect("url" in resolved ? resolved.url.href : resolved.refusal).toBe(url);
  });
  it.each([
    ["/", "no_route"],
    ["/wss", "no_route"],
    ["/ws/", "no_route"],
    ["/ws/extra", "no_route"],
    ["/socket.iox/", "no_route"],
    ["/socket.io/../admin", "bad_path"],
    ["/socket.io/%2e%2e/admin", "bad_path"],
    ["/socket.io/..%2fadmin", "bad_path"],
    ["/socket.io//evil.example/", "bad_path"],
    ["/socket.io/a\\b", "bad_path"],
    ["/ws?x=1#frag", "bad_path"],
    ["/ws?x=\u00e9", "bad_path"],
  ])("%s → %s", (target, refusal) => {
    const resolved = resolveWebSocketRoute(routes, target);
    expect("refusal" in resolved ? resolved.refusal : resolved.url.href).toBe(refusal);
  });
  it("takes audience, subprotocols and limits from the route, else from the game backend and WS_MAX_*", () => {
    expect(routes.map((r) => [r.path, r.audience, r.protocol, r.backendProtocol, r.limits])).toEqual([
      ["/ws", "http://game.internal:9000", "game.v1", "game.v1", { maxMessageBytes: 65536, messagesPerSecond: 120 }],
      ["/socket.io/", "http://game.internal:9000", "game.v1", "game.v1", { maxMessageBytes: 65536, messagesPerSecond: 120 }],
      ["/play/", "play", "game.v1", "game.v1", { maxMessageBytes: 65536, messagesPerSecond: 120 }],
    ]);
  });
});

/**
 * A backend that records the URL and headers of every upgrade and echoes messages. It
 * answers an upgrade with the status in its `answer` query parameter when there is one, and
 * under `/plain…` it names no subprotocol, as Socket.IO or a bare `ws` server configured
 * without one does.
 */
interface URLBackend {
  url: string;
  upgrades: { url: string; headers: IncomingHttpHeaders }[];
  received: Buffer[];
  close(): Promise<void>;
}

async function startURLBackend(): Promise<URLBackend> {
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    handleProtocols: (protocols, req) => (req.url?.startsWith("/plain") ? false : ([...protocols][0] ?? false)),
  });
  const server = createHTTPServer();
  const backend: URLBackend = {
    url: "",
    upgrades: [],
    received: [],
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  server.on("upgrade", (req, socket, head) => {
    backend.upgrades.push({ url: req.url ?? "", headers: req.headers });
    const answer = new URL(req.url ?? "/", "http://x").searchParams.get("answer");
    if (answer !== null) {
      socket.end(`HTTP/1.1 ${answer} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on("message", (data, isBinary) => {
        backend.received.push(Buffer.from(data as Buffer));
        ws.send(data as Buffer, { binary: isBinary });
      });
      ws.on("error", () => undefined);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  backend.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return backend;
}

describe("WebSocket routes through the gate (CONTRACT.md: every check applies to every route)", () => {
  let backend: URLBackend;
  let stalling: Server;
  const stalled: Socket[] = [];
  let h: Harness;
  beforeAll(async () => {
    backend = await startURLBackend();
    stalling = createServer((socket) => {
      stalled.push(socket);
      socket.on("error", () => undefined);
      socket.resume();
    });
    await new Promise<void>((resolve) => stalling.listen(0, "127.0.0.1", () => resolve()));
    const closedPort = await freePort();
    h = await startHarness({
      env: {
        GAME_BACKEND_URL: backend.url,
        WS_ROUTES: JSON.stringify([
          { path: "/socket.io/" },
          { path: "/play/", target: `${backend.url}/internal/play/`, audience: "play", protocol: "chess.v2", maxMessageBytes: 16, maxMessagesPerSecond: 1 },
          { path: "/plain/", backendProtocol: null },
          { path: "/plain-strict/" },
          { path: "/down", target: `http://127.0.0.1:${closedPort}/ws` },
          { path: "/slow", target: `http://127.0.0.1:${(stalling.address() as AddressInfo).port}/ws` },
        ]),
      },
      portcullis: { ws: { backendHandshakeTimeoutMs: 200 } },
    });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
    for (const socket of stalled) socket.destroy();
    await new Promise<void>((resolve) => stalling.close(() => resolve()));
  });

  /** A browser-like upgrade to `path`; resolves with the open socket, rejects with {@link UpgradeRefused}. */
  function open(path: string, protocols: string[], token: string): Promise<WebSocket> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${h.origin.replace("http", "ws")}${path}`, protocols, {
        headers: { origin: h.origin, cookie: `__Host-Http-session=${token}` },
        perMessageDeflate: false,
      });
      ws.once("open", () => resolve(ws));
      ws.once("unexpected-response", (_req, res) => {
        res.resume();
        reject(new UpgradeRefused(res.statusCode ?? 0, ""));
      });
      ws.once("error", reject);
    });
  }

  async function statusOf(path: string, protocols: (ticket: string) => string[], token: string): Promise<number> {
    try {
      const ws = await open(path, protocols(await mintTicket(h, token)), token);
      ws.terminate();
      return 101;
    } catch (error) {
      if (error instanceof UpgradeRefused) return error.status;
      throw error;
    }
  }

  it("relays the rest of the path and the query unchanged, and never the ticket", async () => {
    const { token } = await h.login("router");
    const cases: [string, string, string][] = [
      ["/ws?room=7&name=a%20b", "/ws?room=7&name=a%20b", "game.v1"],
      ["/socket.io/?EIO=4&transport=websocket&token=mine", "/socket.io/?EIO=4&transport=websocket&token=mine", "game.v1"],
      ["/play/table/3?seat=north", "/internal/play/table/3?seat=north", "chess.v2"],
    ];
    for (const [path, backendPath, protocol] of cases) {
      const ticket = await mintTicket(h, token);
      const ws = await open(path, [protocol, `ticket.${ticket}`], token);
      expect(ws.protocol).toBe(protocol);
      const upgrade = backend.upgrades.at(-1);
      expect(upgrade?.url).toBe(backendPath);
      expect(upgrade?.headers["sec-websocket-protocol"]).toBe(protocol);
      expect(JSON.stringify(upgrade)).not.toContain(ticket);
      ws.close();
    }
    // Each route's assertion names its own audience.
    const audience = (authorization: unknown): unknown =>
      JSON.parse(Buffer.from(String(authorization).split(".")[1] ?? "", "base64url").toString()).aud;
    expect(audience(backend.upgrades.at(-1)?.headers.authorization)).toBe("play");
    expect(audience(backend.upgrades.at(-2)?.headers.authorization)).toBe(new URL(backend.url).origin);
  });

  it("requires the route's own subprotocol beside the ticket (400 before anything else)", async () => {
    const { token } = await h.login("protocols");
    const before = backend.upgrades.length;
    expect(await statusOf("/play/", (t) => ["game.v1", `ticket.${t}`], token)).toBe(400);
    // Only the ticket: the 101 would have to name the ticket or nothing, and a browser that
    // offered a subprotocol fails a 101 that names none (WHATWG WebSockets).
    expect(await statusOf("/ws", (t) => [`ticket.${t}`], token)).toBe(400);
    expect(await statusOf("/plain/", (t) => [`ticket.${t}`], token)).toBe(400);
    expect(backend.upgrades.length).toBe(before);
  });

  it("offers a backend that takes no subprotocol none, and still names the route's in its own 101", async () => {
    const { token } = await h.login("plain");
    const ws = await open("/plain/?v=1", ["game.v1", `ticket.${await mintTicket(h, token)}`], token);
    expect(ws.protocol).toBe("game.v1");
    expect(backend.upgrades.at(-1)?.url).toBe("/plain/?v=1");
    expect(backend.upgrades.at(-1)?.headers["sec-websocket-protocol"]).toBeUndefined();
    ws.send("over");
    expect((await nextMessage(ws)).data.toString()).toBe("over");
    ws.close();
    // The same backend behind a route that offers game.v1: its 101 names none, so 502.
    expect(await statusOf("/plain-strict/", (t) => ["game.v1", `ticket.${t}`], token)).toBe(502);
    expect(h.audit.named("ws.upgrade.refused").at(-1)).toMatchObject({ status: 502, reason: "backend chose another subprotocol" });
  });

  it("applies the route's own size and rate limits, and WS_MAX_* elsewhere", async () => {
    const { token } = await h.login("limits");
    const big = await open("/play/", ["chess.v2", `ticket.${await mintTicket(h, token)}`], token);
    const received = backend.received.length;
    big.send("x".repeat(17));
    expect((await closeOf(big)).code).toBe(1009);
    expect(backend.received.length).toBe(received);

    // 1 message/s, burst 2; the manual clock does not move, so the third is one too many.
    const chatty = await open("/play/", ["chess.v2", `ticket.${await mintTicket(h, token)}`], token);
    chatty.send("a");
    chatty.send("b");
    chatty.send("c");
    expect((await closeOf(chatty)).code).toBe(1008);

    const roomy = await open("/ws", ["game.v1", `ticket.${await mintTicket(h, token)}`], token);
    for (const text of ["x".repeat(17), "a", "b", "c"]) {
      roomy.send(text);
      expect((await nextMessage(roomy)).data.toString()).toBe(text);
    }
    roomy.close();
  });

  it.each([
    ["its status", "/ws?answer=400", "backend answered 400"],
    ["a refused connection", "/down", "backend refused the connection (ECONNREFUSED)"],
    ["a timeout", "/slow", "backend handshake timed out after 200 ms"],
  ])("audits a backend that refuses its handshake with what happened: %s", async (_what, path, reason) => {
    const { token } = await h.login("refused-by-backend");
    expect(await statusOf(path, (t) => ["game.v1", `ticket.${t}`], token)).toBe(502);
    expect(h.audit.named("ws.upgrade.refused").at(-1)).toMatchObject({ status: 502, reason });
  });

  it.each([
    ["/nowhere", 404],
    ["/ws/extra", 404],
    ["/socket.io/..%2fadmin", 400],
    // (A WHATWG URL, as the client builds it, already folds "%2e%2e"; Tomcat reads "..;" as "..".)
    ["/socket.io/..;/internal", 400],
  ])("refuses %s with %i, before any other check and with the backend untouched", async (path, status) => {
    const { token } = await h.login("wanderer");
    const before = backend.upgrades.length;
    expect(await statusOf(path, (t) => ["game.v1", `ticket.${t}`], token)).toBe(status);
    expect(backend.upgrades.length).toBe(before);
  });
});

import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AssertionVerifier } from "../../src/demo/verify-assertion";
import { startRecordingBackend, type RecordingBackend } from "../fixtures/backend";
import { startHarness, type Harness } from "../fixtures/harness";
import { startRawBackend, type RawBackend } from "../fixtures/raw-backend";
import { until } from "../fixtures/wait";
import { closeOf, mintTicket, nextMessage, openSocket, rawUpgrade, upgradeStatus, upgradeLines } from "../fixtures/ws-client";

describe("the /ws gate (CONTRACT.md, SECURITY.md E22–E25)", () => {
  let backend: RecordingBackend;
  let h: Harness;
  beforeAll(async () => {
    backend = await startRecordingBackend();
    h = await startHarness({ env: { GAME_BACKEND_URL: backend.url, WS_MAX_SOCKETS_PER_SESSION: "2" } });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
  });
  beforeEach(() => {
    backend.answer = 101;
  });

  it("relays text and binary both ways, with an identity assertion and never a cookie", async () => {
    const { token } = await h.login("relay-user");
    const ticket = await mintTicket(h, token);
    const before = backend.upgrades;
    const ws = await openSocket(h, ticket, { token });
    expect(ws.protocol).toBe("game.v1");
    expect(backend.upgrades).toBe(before + 1);

    ws.send("hello");
    const text = await nextMessage(ws);
    expect(text).toEqual({ data: Buffer.from("hello"), isBinary: false });
    ws.send(Buffer.from([0, 1, 2, 255]));
    const binary = await nextMessage(ws);
    expect(binary).toEqual({ data: Buffer.from([0, 1, 2, 255]), isBinary: true });
    expect(backend.received.slice(-2).map((m) => m.isBinary)).toEqual([false, true]);

    const handshake = backend.handshakes.at(-1) ?? {};
    expect(handshake.cookie).toBeUndefined();
    expect(handshake.origin).toBeUndefined();
    expect(handshake["sec-websocket-protocol"]).toBe("game.v1");
    expect(handshake["sec-websocket-extensions"]).toBeUndefined();
    const verifier = new AssertionVerifier({ jwksURL: `${h.origin}/.well-known/jwks.json`, issuer: h.origin, audience: new URL(backend.url).origin });
    const identity = await verifier.verifyAuthorization(String(handshake.authorization));
    const [sessionId] = token.split(".");
    expect(identity.sid).toBe(sessionId);
    expect(identity.name).toBe("relay-user");
    const accountId = (h.bff.db.sqlite.prepare("SELECT account_id AS a FROM sessions WHERE id = ?").get(sessionId) as { a: string }).a;
    expect(identity.sub).toBe(accountId);
    expect(identity.exp - Math.floor(h.clock.now() / 1000)).toBe(60);
    ws.close();
  });

  it("answers 101 with only game.v1 and no compression extension", async () => {
    const { token } = await h.login("handshake");
    const ticket = await mintTicket(h, token);
    const answer = await rawUpgrade(h, [...upgradeLines(h, { protocols: `game.v1, ticket.${ticket}`, token }), "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"]);
    expect(answer).toMatch(/^HTTP\/1\.1 101/);
    expect(answer).toMatch(/\r\nSec-WebSocket-Protocol: game\.v1\r\n/i);
    expect(answer).not.toMatch(/Sec-WebSocket-Extensions/i);
    expect(answer).not.toContain(ticket);
  });

  describe("refusals: the right status, and the backend sees nothing", () => {
    const cases: [string, number, (ctx: { h: Harness; token: string; ticket: string }) => Promise<number>][] = [
      ["a foreign Origin", 403, ({ h, token, ticket }) => upgradeStatus(h, ticket, { token, origin: "https://evil.example" })],
      ["no Origin", 403, ({ h, token, ticket }) => upgradeStatus(h, ticket, { token, origin: null })],
      ["a lookalike Origin (suffix)", 403, ({ h, token, ticket }) => upgradeStatus(h, ticket, { token, origin: `${h.origin}.evil.com` })],
      ["a lookalike Origin (scheme)", 403, ({ h, token, ticket }) => upgradeStatus(h, ticket, { token, origin: h.origin.replace("http", "https") })],
      ["Origin: null", 403, ({ h, token, ticket }) => upgradeStatus(h, ticket, { token, origin: "null" })],
      ["no cookie", 401, ({ h, ticket }) => upgradeStatus(h, ticket, { token: null })],
      ["a forged cookie", 401, ({ h, ticket }) => upgradeStatus(h, ticket, { token: `${"a".repeat(26)}.${"b".repeat(40)}` })],
      ["no ticket", 401, ({ h, token }) => upgradeStatus(h, null, { token })],
      ["an unknown ticket", 401, ({ h, token }) => upgradeStatus(h, "a".repeat(32), { token })],
      ["a malformed ticket", 401, ({ h, token }) => upgradeStatus(h, "not-base32!", { token, protocols: ["game.v1", "ticket.zzz"] })],
      ["no game.v1 subprotocol", 400, ({ h, token, ticket }) => upgradeStatus(h, ticket, { token, protocols: [`ticket.${ticket}`] })],
    ];
    it.each(cases)("%s → %i", async (_name, status, attempt) => {
      const { token } = await h.login("refused");
      const ticket = await mintTicket(h, token);
      const before = backend.upgrades;
      expect(await attempt({ h, token, ticket })).toBe(status);
      expect(backend.upgrades).toBe(before);
      const refusal = h.audit.named("ws.upgrade.refused").at(-1);
      expect(refusal?.status).toBe(status);
    });

    it("a used ticket → 401", async () => {
      const { token } = await h.login("reuser");
      const ticket = await mintTicket(h, token);
      const ws = await openSocket(h, ticket, { token });
      const before = backend.upgrades;
      expect(await upgradeStatus(h, ticket, { token })).toBe(401);
      expect(backend.upgrades).toBe(before);
      ws.close();
    });

    it("an expired ticket (TTL + 1 s on the injected clock) → 401", async () => {
      const { token } = await h.login("late");
      const ticket = await mintTicket(h, token);
      h.clock.advance(31_000);
      const before = backend.upgrades;
      expect(await upgradeStatus(h, ticket, { token })).toBe(401);
      expect(backend.upgrades).toBe(before);
    });

    it("another session's ticket → 403", async () => {
      const mine = await h.login("owner");
      const theirs = await h.login("thief");
      const ticket = await mintTicket(h, mine.token);
      const before = backend.upgrades;
      expect(await upgradeStatus(h, ticket, { token: theirs.token })).toBe(403);
      expect(backend.upgrades).toBe(before);
    });

    it("an expired session cookie → 401", async () => {
      const { token } = await h.login("expiring");
      const ticket = await mintTicket(h, token);
      h.clock.advance(1800 * 1000 + 1);
      const before = backend.upgrades;
      expect(await upgradeStatus(h, ticket, { token })).toBe(401);
      expect(backend.upgrades).toBe(before);
    });

    it("more sockets than WS_MAX_SOCKETS_PER_SESSION → 429", async () => {
      const { token } = await h.login("greedy");
      const open = [await openSocket(h, await mintTicket(h, token), { token }), await openSocket(h, await mintTicket(h, token), { token })];
      const before = backend.upgrades;
      expect(await upgradeStatus(h, await mintTicket(h, token), { token })).toBe(429);
      expect(backend.upgrades).toBe(before);
      expect(h.audit.named("ws.upgrade.refused").at(-1)).toMatchObject({ status: 429, reason: "too many sockets" });
      for (const ws of open) ws.close();
    });

    it("a backend that answers 403 → 502, never tunnelled", async () => {
      const { token } = await h.login("backend-403");
      backend.answer = 403;
      const ticket = await mintTicket(h, token);
      const accepted = backend.sockets.length;
      const answer = await upgradeStatus(h, ticket, { token });
      expect(answer).toBe(502);
      expect(backend.sockets.length).toBe(accepted);
      expect(h.audit.named("ws.upgrade.refused").at(-1)).toMatchObject({ status: 502, reason: "backend answered 403" });
    });

    it.each([
      ["a wrong path → 404", ["GET /wss HTTP/1.1"], 404],
      ["a POST → 405", ["POST /ws HTTP/1.1"], 405],
      ["a bad key → 400", ["GET /ws HTTP/1.1", "Sec-WebSocket-Key: short"], 400],
      ["a bad version → 400", ["GET /ws HTTP/1.1", "Sec-WebSocket-Version: 8"], 400],
      ["no Upgrade header → 400", ["GET /ws HTTP/1.1", "Upgrade: h2c"], 400],
    ])("%s", async (_name, override, status) => {
      const base: Record<string, string> = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Protocol": "game.v1",
        "Origin": h.origin,
        "Host": new URL(h.origin).host,
      };
      const requestLine = override[0] ?? "";
      for (const line of override.slice(1)) {
        const [name, value] = line.split(": ");
        if (name !== undefined && value !== undefined) base[name] = value;
      }
      const before = backend.upgrades;
      const answer = await rawUpgrade(h, [requestLine, ...Object.entries(base).map(([k, v]) => `${k}: ${v}`)]);
      expect(answer).toMatch(new RegExp(`^HTTP/1\\.1 ${status}`));
      expect(backend.upgrades).toBe(before);
    });
  });

  it("answers refusals with CONTRACT.md's JSON error shape, uncached", async () => {
    const answer = await rawUpgrade(h, upgradeLines(h, { protocols: "game.v1", origin: "https://evil.example" }));
    const [head = "", body = ""] = answer.split("\r\n\r\n");
    expect(head).toMatch(/^HTTP\/1\.1 403 /);
    expect(head).toMatch(/\r\nContent-Type: application\/json; charset=utf-8\r\n/i);
    expect(head).toMatch(/\r\nCache-Control: no-store\r\n/i);
    expect(JSON.parse(body)).toEqual({ error: "origin", message: "origin not allowed" });
  });

  it("closes a refused socket itself, even for a client that keeps its own side open (SECURITY.md H35)", async () => {
    const url = new URL(h.origin);
    // allowHalfOpen: the client does not answer the gate's FIN with its own, as a hostile one would not.
    const socket = connect({ port: Number(url.port), host: url.hostname, allowHalfOpen: true });
    let answer = "";
    let gone = false;
    socket.on("data", (chunk: Buffer) => (answer += chunk.toString("latin1")));
    socket.on("error", () => (gone = true));
    socket.on("close", () => (gone = true));
    socket.write(`${upgradeLines(h, { protocols: "game.v1", origin: "https://evil.example" }).join("\r\n")}\r\n\r\n`);
    await new Promise((resolve) => socket.once("end", resolve));
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    // Bytes sent after the answer reach a socket the gate destroyed: the connection is reset.
    // A gate that only ended its side would read them and keep the connection open.
    try {
      await until(() => {
        if (!gone && socket.writable) socket.write("x");
        return gone;
      }, "the gate to close the refused connection");
    } finally {
      socket.destroy();
    }
  });

  it("refuses a subprotocol offered twice with 400, before the backend is asked", async () => {
    const { token } = await h.login("twice");
    const ticket = await mintTicket(h, token);
    const before = backend.upgrades;
    const answer = await rawUpgrade(h, [...upgradeLines(h, { protocols: `game.v1, game.v1, ticket.${ticket}`, token })]);
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(backend.upgrades).toBe(before);
    // The ticket was not spent on a request that could never succeed.
    expect(await upgradeStatus(h, ticket, { token })).toBe(101);
  });

  it("lets exactly one of 50 parallel upgrades with one ticket through", async () => {
    const { token } = await h.login("racer");
    const ticket = await mintTicket(h, token);
    const before = backend.upgrades;
    const statuses = await Promise.all(Array.from({ length: 50 }, () => upgradeStatus(h, ticket, { token })));
    expect(statuses.filter((s) => s === 101)).toHaveLength(1);
    expect(statuses.filter((s) => s === 401)).toHaveLength(49);
    expect(backend.upgrades).toBe(before + 1);
  });

  it("refuses with 502 when the backend is down, and closes nothing else", async () => {
    const down = await startHarness({ env: { GAME_BACKEND_URL: "http://127.0.0.1:9" } });
    try {
      const { token } = await down.login("nobackend");
      const answer = await rawUpgrade(down, upgradeLines(down, { protocols: `game.v1, ticket.${await mintTicket(down, token)}`, token }));
      expect(answer).toMatch(/^HTTP\/1\.1 502 Bad Gateway\r\n/);
      expect(answer).toContain('{"error":"backend_unavailable"');
      expect((await fetch(`${down.origin}/healthz`)).status).toBe(200);
    } finally {
      await down.close();
    }
  });

  it("never puts the ticket in the URL or the audit log", async () => {
    const { token } = await h.login("quiet");
    const ticket = await mintTicket(h, token);
    const ws = await openSocket(h, ticket, { token });
    ws.close();
    await closeOf(ws);
    expect(h.audit.text()).not.toContain(ticket);
    expect(h.audit.named("ws.upgrade.accepted").length).toBeGreaterThan(0);
  });

  it("takes a closed socket out of the registry (a session's later end finds nothing of it)", async () => {
    const { token } = await h.login("leaves");
    const [sessionId = ""] = token.split(".");
    const ws = await openSocket(h, await mintTicket(h, token), { token });
    expect(h.bff.registry.countForSession(sessionId)).toBe(1);
    ws.close();
    await closeOf(ws);
    await until(() => h.bff.registry.countForSession(sessionId) === 0, "the closed socket to leave the registry");
  });
});

describe("a backend that never answers its upgrade", () => {
  let stalling: Server;
  let connections: Socket[];
  let h: Harness;
  beforeAll(async () => {
    connections = [];
    // Accepts TCP and reads the upgrade request, then says nothing at all.
    stalling = createServer((socket) => {
      connections.push(socket);
      socket.on("error", () => undefined);
      socket.resume();
    });
    await new Promise<void>((resolve) => stalling.listen(0, "127.0.0.1", () => resolve()));
    const port = (stalling.address() as AddressInfo).port;
    h = await startHarness({ env: { GAME_BACKEND_URL: `http://127.0.0.1:${port}` }, portcullis: { ws: { backendHandshakeTimeoutMs: 200 } } });
  });
  afterAll(async () => {
    await h.close();
    for (const socket of connections) socket.destroy();
    await new Promise<void>((resolve) => stalling.close(() => resolve()));
  });

  it("→ 502 once the backend handshake timeout passes, and the backend attempt is dropped", async () => {
    const { token } = await h.login("stalled");
    expect(await upgradeStatus(h, await mintTicket(h, token), { token })).toBe(502);
    const attempt = connections.at(-1);
    expect(attempt).toBeDefined();
    await until(() => attempt?.destroyed === true, "the backend attempt closed");
    expect(h.audit.named("ws.upgrade.refused").at(-1)).toMatchObject({ status: 502 });
  });

  it("drops the backend attempt when the browser leaves during the backend handshake", async () => {
    const { token } = await h.login("impatient");
    const ticket = await mintTicket(h, token);
    const count = connections.length;
    const url = new URL(h.origin);
    const browser = connect(Number(url.port), url.hostname);
    browser.on("error", () => undefined);
    browser.write(`${upgradeLines(h, { protocols: `game.v1, ticket.${ticket}`, token }).join("\r\n")}\r\n\r\n`);
    await until(() => connections.length === count + 1, "the gate asking the backend");
    browser.destroy();
    const attempt = connections.at(-1);
    await until(() => attempt?.destroyed === true, "the backend attempt closed");
    expect(h.bff.registry.size).toBe(0);
  });
});

describe("upgrades waiting for the backend count as the session's sockets", () => {
  let backend: RawBackend;
  let h: Harness;
  beforeAll(async () => {
    backend = await startRawBackend({ holdAnswers: true });
    h = await startHarness({ env: { GAME_BACKEND_URL: backend.url } });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
  });

  /** A raw upgrade; resolves with the answer's status line, and with the whole answer once the gate closes the socket. */
  function startUpgrade(token: string, ticket: string): { socket: Socket; status: Promise<string>; answer: Promise<string> } {
    const url = new URL(h.origin);
    const socket = connect(Number(url.port), url.hostname);
    socket.on("error", () => undefined);
    socket.write(`${upgradeLines(h, { protocols: `game.v1, ticket.${ticket}`, token }).join("\r\n")}\r\n\r\n`);
    let answer = "";
    const status = new Promise<string>((resolve) => {
      socket.on("data", (chunk: Buffer) => {
        answer += chunk.toString("latin1");
        if (answer.includes("\r\n")) resolve(answer.split("\r\n")[0] ?? "");
      });
      socket.once("close", () => resolve(answer.split("\r\n")[0] ?? "closed"));
    });
    const whole = new Promise<string>((resolve) => socket.once("close", () => resolve(answer)));
    return { socket, status, answer: whole };
  }

  it("refuses with 401 at once an upgrade whose session ends while the backend has not answered, and drops the backend attempt", async () => {
    const { token, agent } = await h.login("logout-mid-handshake");
    const upgrade = startUpgrade(token, await mintTicket(h, token));
    await until(() => backend.held.length === 1, "the upgrade at the backend");
    const attempt = backend.held[0];
    expect((await agent.fetch(`${h.origin}/auth/logout`, { method: "POST", headers: h.csrf() })).status).toBe(204);
    expect(await upgrade.status).toBe("HTTP/1.1 401 Unauthorized");
    await until(() => attempt?.destroyed === true || attempt?.readableEnded === true, "the backend attempt dropped");
    backend.release();
    upgrade.socket.destroy();
  });

  // What a pending upgrade answers when the registry closes it for a reason other than a
  // session end: a server shutting down (1001, or a terminate) is a 503, anything else a 502.
  it.each<[string, (h: Harness, sessionId: string) => unknown, string, string, string]>([
    // A grace far longer than the test's timeout: the closeAll returns once the pending upgrade has ended, not at the grace.
    ["shutdown's close (1001)", (hh) => hh.bff.registry.closeAll(1001, "server shutting down", { graceMs: 60_000 }), "HTTP/1.1 503 Service Unavailable", "unavailable", "server shutting down"],
    ["shutdown's terminate", (hh) => hh.bff.registry.terminateAll(), "HTTP/1.1 503 Service Unavailable", "unavailable", "server shutting down"],
    ["any other close code", (hh, sessionId) => hh.bff.registry.closeSession(sessionId, 4000, "cancelled"), "HTTP/1.1 502 Bad Gateway", "backend_unavailable", "upgrade cancelled"],
  ])("refuses an upgrade still waiting for the backend on %s, and drops the backend attempt", async (_name, close, statusLine, error, reason) => {
    const { token } = await h.login("pending-closed");
    const held = backend.held.length;
    const upgrade = startUpgrade(token, await mintTicket(h, token));
    await until(() => backend.held.length === held + 1, "the upgrade at the backend");
    const attempt = backend.held[held];
    const refusals = h.audit.named("ws.upgrade.refused").length;
    await close(h, token.split(".")[0] ?? "");
    expect(await upgrade.status).toBe(statusLine);
    // The error code in the body (CONTRACT.md) and the reason in the audit line (G32).
    expect(await upgrade.answer).toContain(`{"error":"${error}"`);
    expect(h.audit.named("ws.upgrade.refused").at(-1)).toMatchObject({ reason });
    // Refused once: closeAll's close and then its terminate reach the same pending upgrade.
    expect(h.audit.named("ws.upgrade.refused")).toHaveLength(refusals + 1);
    await until(() => attempt?.destroyed === true || attempt?.readableEnded === true, "the backend attempt dropped");
    expect(h.bff.registry.size).toBe(0);
    backend.release();
    upgrade.socket.destroy();
  });

  it("holds WS_MAX_SOCKETS_PER_SESSION for upgrades made in parallel", async () => {
    const { token } = await h.login("parallel-cap");
    const tickets = await Promise.all(Array.from({ length: 6 }, () => mintTicket(h, token)));
    const upgrades = tickets.map((ticket) => startUpgrade(token, ticket));
    await until(() => backend.held.length === 4, "four upgrades at the backend");
    backend.release();
    const lines = await Promise.all(upgrades.map((u) => u.status));
    expect(lines.filter((l) => l.startsWith("HTTP/1.1 101"))).toHaveLength(4);
    expect(lines.filter((l) => l === "HTTP/1.1 429 Too Many Requests")).toHaveLength(2);
    for (const u of upgrades) u.socket.destroy();
  });
});

/** SECURITY.md A4: a WebSocket upgrade is the player's activity, so it slides the idle timeout (throttled like any request). */
describe("an upgrade slides its session", () => {
  let backend: RecordingBackend;
  let h: Harness;
  beforeAll(async () => {
    backend = await startRecordingBackend();
    h = await startHarness({ env: { GAME_BACKEND_URL: backend.url, SESSION_IDLE_TIMEOUT_SECONDS: "120" } });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
  });

  it("keeps a session alive past the idle timeout counted from its last request before the upgrade", async () => {
    const { token } = await h.login("slider");
    // Within the 60 s throttle of the login's write: minting the ticket slides nothing.
    h.clock.advance(50_000);
    const ticket = await mintTicket(h, token);
    // 70 s after the last write, inside the ticket's 30 s: the upgrade's slide is written.
    h.clock.advance(20_000);
    const ws = await openSocket(h, ticket, { token });
    ws.close();
    // 130 s after login (past the 120 s idle timeout), 60 s after the upgrade.
    h.clock.advance(60_000);
    const me = await fetch(`${h.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } });
    expect(me.status).toBe(200);
  });
});

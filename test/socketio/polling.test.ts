import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeJwt } from "jose";
import type { Manager, Socket as ClientSocket } from "socket.io-client";
import type { Harness } from "../fixtures/harness";
import type { SocketIOBackend } from "../fixtures/socketio-backend";
import { startSocketIOStack, type SocketIOStack } from "../fixtures/socketio-stack";
import { connected, socketIOManager } from "../fixtures/socketio-client";
import { until } from "../fixtures/wait";
import { mintTicket } from "../fixtures/ws-client";

const SESSION_COOKIE = "__Host-Http-session";

function manager(h: Harness, options: { token: string | null; transports: ("polling" | "websocket")[]; ticket?: string; query?: Record<string, string> }): Manager {
  return socketIOManager(h, { ...options, ticket: options.ticket ?? null });
}

interface Disconnect {
  reason: string;
  status: unknown;
}

function disconnected(socket: ClientSocket): Promise<Disconnect> {
  return new Promise((resolve) => {
    socket.once("disconnect", (reason, description) => {
      // A failed poll: engine.io-client's TransportError carries the HTTP status as `description`.
      const status = typeof description === "object" && description !== null && "description" in description ? description.description : undefined;
      resolve({ reason, status });
    });
  });
}

async function within1s<T>(promise: Promise<T>, what: string): Promise<T> {
  return Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within 1 s`)), 1000))]);
}

describe("Socket.IO long-polling through the WebSocket route (issue 12)", () => {
  let stack: SocketIOStack;
  let h: Harness;
  let game: SocketIOBackend;
  beforeAll(async () => {
    stack = await startSocketIOStack({ backend: { transports: ["polling", "websocket"], cookie: true, refuse: (identity) => identity.name === "banned" } });
    ({ h, game } = stack);
  });
  afterAll(() => stack.close());

  /** A raw engine.io request through Portcullis, as engine.io-client's XHR sends it. */
  function poll(token: string | null, query: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<Response> {
    return fetch(`${h.origin}/socket.io/?EIO=4&transport=polling${query}`, {
      method: init.method ?? "GET",
      body: init.body,
      headers: {
        ...(token === null ? {} : { cookie: `${SESSION_COOKIE}=${token}` }),
        ...h.csrf(),
        ...(init.body === undefined ? {} : { "content-type": "text/plain;charset=UTF-8" }),
        ...init.headers,
      },
    });
  }

  /** An engine.io handshake through Portcullis; the session id engine.io gave. */
  async function handshake(token: string): Promise<string> {
    const response = await poll(token, "");
    expect(response.status).toBe(200);
    const text = await response.text();
    const open = /^0(\{.*\})/.exec(text);
    const parsed: unknown = JSON.parse(open?.[1] ?? "{}");
    if (typeof parsed !== "object" || parsed === null || !("sid" in parsed) || typeof parsed.sid !== "string") throw new Error(`no sid in ${text}`);
    return parsed.sid;
  }

  it("polling only: connects, acks both ways, carries binary, and the query string arrives", async () => {
    const { token } = await h.login("poll-alice");
    const io = manager(h, { token, transports: ["polling"], query: { room: "lobby 7" } });
    const socket = await connected(io.socket("/"));
    expect(io.engine.transport.name).toBe("polling");
    expect(await socket.timeout(5_000).emitWithAck("echo", "hello", 42)).toEqual(["hello", 42]);
    socket.on("question", (question: string, ack: (answer: string) => void) => ack(`${question}? yes`));
    expect(await socket.timeout(5_000).emitWithAck("ask", "ready")).toBe("ready? yes");
    const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
    const [echoed] = (await socket.timeout(5_000).emitWithAck("echo", bytes)) as [Buffer];
    expect(Buffer.compare(Buffer.from(echoed), bytes)).toBe(0);
    const who = (await socket.timeout(5_000).emitWithAck("whoami")) as { identity: { name: string; idp: string }; query: Record<string, string> };
    expect(who.identity).toMatchObject({ name: "poll-alice", idp: "demo", idpSub: "poll-alice" });
    expect(who.query).toMatchObject({ room: "lobby 7", EIO: "4", transport: "polling" });
    expect(game.upgrades.filter((u) => u.url.includes("poll-alice"))).toEqual([]);
    io._close();
  });

  it("polling upgraded to WebSocket: the upgrade carries the ticket, the backend sees the same engine.io session", async () => {
    const { token } = await h.login("poll-upgrade");
    const ticket = await mintTicket(h, token);
    const upgradesBefore = game.upgrades.length;
    const io = manager(h, { token, transports: ["polling", "websocket"], ticket });
    const socket = io.socket("/");
    const upgraded = new Promise<string>((resolve) => io.on("open", () => io.engine.once("upgrade", (transport) => resolve(transport.name))));
    await connected(socket);
    expect(await upgraded).toBe("websocket");
    const upgrade = game.upgrades[upgradesBefore];
    const sid = new URLSearchParams(upgrade?.url.split("?")[1]).get("sid");
    expect(sid).toBe(io.engine.id);
    expect(new URLSearchParams(upgrade?.url.split("?")[1]).get("transport")).toBe("websocket");
    expect(JSON.stringify(upgrade)).not.toContain(ticket);
    // Both transports' requests were signed for the route's audience.
    expect(decodeJwt(String(upgrade?.headers.authorization).slice(7)).aud).toBe("game");
    expect(await socket.timeout(5_000).emitWithAck("echo", Buffer.from([9, 8, 7]))).toHaveLength(1);
    io._close();
  });

  it("relays with the assertion and the /api relay's stripping: no cookie, no X-CSRF, no spoofed address or method override", async () => {
    const { token } = await h.login("poll-headers");
    const before = game.polls.length;
    const response = await poll(token, "&room=7", {
      headers: { "x-forwarded-for": "6.6.6.6", "x-http-method-override": "DELETE", "x-real-ip": "6.6.6.6", "x-game-version": "3" },
    });
    expect(response.status).toBe(200);
    const seen = game.polls[before];
    expect(seen?.url).toMatch(/^\/socket\.io\/\?EIO=4&transport=polling&room=7$/);
    expect(seen?.headers.cookie).toBeUndefined();
    expect(seen?.headers["x-csrf"]).toBeUndefined();
    expect(seen?.headers["x-http-method-override"]).toBeUndefined();
    expect(seen?.headers["x-real-ip"]).toBeUndefined();
    expect(seen?.headers["x-forwarded-for"]).not.toContain("6.6.6.6");
    expect(seen?.headers["x-game-version"]).toBe("3");
    // Answered: the poll is no longer one of the session's live connections.
    await response.text();
    await until(() => h.bff.registry.countForSession(token.split(".")[0] ?? "") === 0, "the poll to leave the registry");
    const claims = decodeJwt(String(seen?.headers.authorization).slice("Bearer ".length));
    expect(claims).toMatchObject({ aud: "game", name: "poll-headers", idp: "demo", idp_sub: "poll-headers" });
  });

  it("never passes engine.io's io cookie (or any Set-Cookie) to the browser; the answer is not cacheable", async () => {
    const { token } = await h.login("poll-cookie");
    const response = await poll(token, "");
    expect(response.status).toBe(200);
    expect(response.headers.get("set-cookie")).toBeNull();
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(await response.text()).toMatch(/^0\{"sid":/);
    // The backend did set it: the fixture runs engine.io with `cookie: true`.
    const direct = await fetch(`${game.url}/socket.io/?EIO=4&transport=polling`, { headers: { authorization: String(game.polls.at(-1)?.headers.authorization) } });
    expect(direct.headers.get("set-cookie")).toMatch(/^io=/);
  });

  describe("refused like /api, and the backend sees nothing", () => {
    const cases: [string, number, (token: string) => { token: string | null; headers: Record<string, string> }][] = [
      ["no X-CSRF", 403, (token) => ({ token, headers: { "x-csrf": "0" } })],
      ["a foreign Origin", 403, (token) => ({ token, headers: { origin: "https://evil.example" } })],
      ["a foreign Origin beside Sec-Fetch-Site: same-origin", 403, (token) => ({ token, headers: { origin: "https://evil.example", "sec-fetch-site": "same-origin" } })],
      ["no cookie", 401, () => ({ token: null, headers: {} })],
    ];
    it.each(cases)("%s → %i", async (_name, status, make) => {
      const { token } = await h.login("poll-refused");
      const before = game.polls.length;
      const { token: sent, headers } = make(token);
      for (const method of ["GET", "POST"]) {
        const response = await poll(sent, "", { method, headers, ...(method === "POST" ? { body: "4hello" } : {}) });
        expect(response.status).toBe(status);
        expect(await response.json()).toHaveProperty("error");
      }
      expect(game.polls.length).toBe(before);
    });

    it("a same-origin GET without Origin passes on Sec-Fetch-Site: same-origin (what browsers send)", async () => {
      const { token } = await h.login("poll-sfs");
      const response = await fetch(`${h.origin}/socket.io/?EIO=4&transport=polling`, {
        headers: { cookie: `${SESSION_COOKIE}=${token}`, "x-csrf": "1", "sec-fetch-site": "same-origin" },
      });
      expect(response.status).toBe(200);
    });

    it("a body over 1 MiB → 413 before the backend hears of it", async () => {
      const { token } = await h.login("poll-big");
      const sid = await handshake(token);
      const before = game.polls.length;
      const response = await poll(token, `&sid=${sid}`, { method: "POST", body: `4${"x".repeat(1024 * 1024 + 1)}` });
      expect(response.status).toBe(413);
      expect(game.polls.length).toBe(before);
    });

    it("only engine.io's polling requests are relayed: anything else on the path is a 404", async () => {
      const { token } = await h.login("poll-other");
      const before = game.polls.length;
      for (const path of ["/socket.io/socket.io.js", "/socket.io/?EIO=4&transport=websocket", "/socket.io/?EIO=4"]) {
        const response = await fetch(`${h.origin}${path}`, { headers: { cookie: `${SESSION_COOKIE}=${token}`, ...h.csrf() } });
        expect(response.status, path).toBe(404);
      }
      expect(game.polls.length).toBe(before);
    });
  });

  it("a player the backend refuses gets its 403 over polling, and the client sees that status", async () => {
    const { token } = await h.login("banned");
    const response = await poll(token, "");
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ code: 4, message: "you are banned from this game" });
    const io = manager(h, { token, transports: ["polling"] });
    await expect(connected(io.socket("/"))).rejects.toThrow(/connect_error: xhr poll error: 403$/);
    io._close();
  });

  describe("a held poll ends within 1 s of its session ending", () => {
    async function heldPoll(name: string): Promise<{ token: string; agent: Awaited<ReturnType<Harness["login"]>>["agent"]; held: Promise<Response> }> {
      const { token, agent } = await h.login(name);
      const sid = await handshake(token);
      const before = game.polls.length;
      const held = poll(token, `&sid=${sid}`);
      // engine.io has nothing to send: it holds the GET until its next ping (25 s).
      await until(() => game.polls.length > before, "the poll to reach the backend");
      expect(h.bff.registry.countForSession(token.split(".")[0] ?? "")).toBe(1);
      return { token, agent, held };
    }

    it("logout → 401 no_session", async () => {
      const { agent, held, token } = await heldPoll("poll-logout");
      await agent.fetch(`${h.origin}/auth/logout`, { method: "POST", headers: h.csrf() });
      const response = await within1s(held, "held poll after logout");
      expect(response.status).toBe(401);
      expect(await response.json()).toMatchObject({ error: "no_session" });
      expect(h.bff.registry.countForSession(token.split(".")[0] ?? "")).toBe(0);
    });

    it("revocation from another session → 401", async () => {
      const { token, held } = await heldPoll("poll-revoked");
      const laptop = await h.login("poll-revoked");
      await laptop.agent.fetch(`${h.origin}/auth/sessions/${token.split(".")[0] ?? ""}`, { method: "DELETE", headers: h.csrf() });
      expect((await within1s(held, "held poll after revocation")).status).toBe(401);
    });

    it("socket.io-client on polling sees the 401 as a transport error with that status", async () => {
      const { token, agent } = await h.login("poll-client-out");
      const io = manager(h, { token, transports: ["polling"] });
      const socket = await connected(io.socket("/"));
      // The ack comes back on a poll; the client's next GET is then held by engine.io.
      const gets = (): number => game.polls.filter((p) => p.method === "GET" && p.url.includes(`sid=${io.engine.id}`)).length;
      await socket.timeout(5_000).emitWithAck("echo", "hold");
      const before = gets();
      await until(() => gets() > before, "the next poll to be held");
      const gone = disconnected(socket);
      await agent.fetch(`${h.origin}/auth/logout`, { method: "POST", headers: h.csrf() });
      expect(await within1s(gone, "client disconnect")).toEqual({ reason: "transport error", status: 401 });
      io._close();
    });

    // Last: the clock jumps past every session's lifetime (and the provider's tokens).
    it("expiry (the registry's recheck) → 401", async () => {
      const { held } = await heldPoll("poll-expired");
      h.clock.advance(h.bff.config.sessionAbsoluteTimeoutSeconds * 1000 + 1);
      h.bff.registry.recheck();
      expect((await within1s(held, "held poll after expiry")).status).toBe(401);
    });
  });
});

describe("long-polling requests count against the /api-like rate limit", () => {
  let stack: SocketIOStack;
  beforeAll(async () => {
    stack = await startSocketIOStack({ backend: { transports: ["polling"] }, env: { RATE_LIMIT_API: "1/s,3" } });
  });
  afterAll(() => stack.close());

  it("the fourth poll in a burst of three is a 429 with Retry-After, audited, and the backend never sees it", async () => {
    const { h, game } = stack;
    const { token } = await h.login("poll-flood");
    const statuses: number[] = [];
    for (let i = 0; i < 4; i += 1) {
      const response = await fetch(`${h.origin}/socket.io/?EIO=4&transport=polling`, { headers: { cookie: `${SESSION_COOKIE}=${token}`, ...h.csrf() } });
      statuses.push(response.status);
      if (response.status === 429) expect(response.headers.get("retry-after")).toBe("1");
      await response.body?.cancel();
    }
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect(game.polls).toHaveLength(3);
    expect(h.audit.named("ratelimit.hit").at(-1)).toMatchObject({ reason: "polling" });
    // Its own buckets: the game's /api budget is untouched.
    const api = await fetch(`${h.origin}/api/game/x`, { headers: { cookie: `${SESSION_COOKIE}=${token}`, ...h.csrf() } });
    expect(api.status).not.toBe(429);
  });
});

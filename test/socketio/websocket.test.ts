import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeJwt } from "jose";
import type { Manager } from "socket.io-client";
import { WebSocket } from "ws";
import { startHarness, type Harness } from "../fixtures/harness";
import { startSocketIOBackend, type SocketIOBackend } from "../fixtures/socketio-backend";
import { connected, socketIOManager, type SocketIOClientOptions } from "../fixtures/socketio-client";
import { onAFreePort } from "../fixtures/stack";
import { mintTicket, rawUpgrade, upgradeLines, upgradeStatus } from "../fixtures/ws-client";

type ClientOptions = Omit<SocketIOClientOptions, "transports" | "path">;

function manager(h: Harness, options: ClientOptions & { path?: string }): Manager {
  return socketIOManager(h, options);
}

interface WhoAmI {
  identity: { sub: string; sid: string; name: string; idp: string; idpSub: string };
  query: Record<string, string>;
  nsp: string;
}

describe("a real Socket.IO 4.8 game through Portcullis, WebSocket transport (issue 12)", () => {
  let h: Harness;
  let game: SocketIOBackend;
  beforeAll(async () => {
    let now = (): number => Date.now();
    ({ h, game } = await onAFreePort(async (port) => {
      const origin = `http://localhost:${port}`;
      const game = await startSocketIOBackend({ jwksURL: `${origin}/.well-known/jwks.json`, issuer: origin, audience: "game", now: () => now() });
      try {
        const h = await startHarness({
          port,
          env: {
            GAME_BACKEND_URL: game.url,
            GAME_BACKEND_AUDIENCE: "game",
            // The whole Socket.IO setup: one route, public /socket.io/ → the game backend's /socket.io/.
            // The second offers the backend no subprotocol at all, as a Socket.IO client would.
            WS_ROUTES: JSON.stringify([{ path: "/socket.io/" }, { path: "/bare/", target: `${game.url}/socket.io/`, audience: "game", backendProtocol: null }]),
          },
        });
        return { h, game };
      } catch (error) {
        await game.close();
        throw error;
      }
    }));
    // The backend judges `exp` by the same manual clock that signs the assertions.
    now = () => h.clock.now();
  });
  afterAll(async () => {
    await h.close();
    await game.close();
  });

  it("connects, acks both ways, carries binary, and the client's query string arrives without the ticket", async () => {
    const { token } = await h.login("sio-alice");
    const ticket = await mintTicket(h, token);
    const io = manager(h, { ticket, token, query: { room: "lobby 7", mode: "ranked" } });
    const socket = await connected(io.socket("/"));

    // Client → server ack.
    expect(await socket.timeout(5_000).emitWithAck("echo", "hello", 42)).toEqual(["hello", 42]);
    // Server → client ack.
    socket.on("question", (question: string, ack: (answer: string) => void) => ack(`${question}? yes`));
    expect(await socket.timeout(5_000).emitWithAck("ask", "ready")).toBe("ready? yes");
    // A binary payload (a Socket.IO attachment: its own binary WebSocket message), both ways.
    const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
    const [echoed] = (await socket.timeout(5_000).emitWithAck("echo", bytes)) as [Buffer];
    expect(Buffer.isBuffer(echoed)).toBe(true);
    expect(Buffer.compare(echoed, bytes)).toBe(0);

    const who = (await socket.timeout(5_000).emitWithAck("whoami")) as WhoAmI;
    expect(who.query).toMatchObject({ room: "lobby 7", mode: "ranked", EIO: "4", transport: "websocket" });
    const upgrade = game.upgrades.at(-1);
    expect(upgrade?.url).toMatch(/^\/socket\.io\/\?/);
    expect(new URLSearchParams(upgrade?.url.split("?")[1]).get("room")).toBe("lobby 7");
    // The ticket stays in the browser's subprotocol: not in the URL, not in any header, and
    // neither is the cookie or the browser's Origin.
    expect(JSON.stringify(upgrade)).not.toContain(ticket);
    expect(upgrade?.headers.cookie).toBeUndefined();
    expect(upgrade?.headers.origin).toBeUndefined();
    expect(upgrade?.headers["sec-websocket-protocol"]).toBe("game.v1");
    io._close();
  });

  it("puts the identity (sub, provider, provider subject) on socket.data, also in a namespace joined after the assertion expired", async () => {
    const { token } = await h.login("sio-bob");
    const ticket = await mintTicket(h, token);
    const io = manager(h, { ticket, token });
    const root = await connected(io.socket("/"));
    const [sessionId] = token.split(".");
    const accountId = (h.bff.db.sqlite.prepare("SELECT account_id AS a FROM sessions WHERE id = ?").get(sessionId) as { a: string }).a;
    const subject = (h.bff.db.sqlite.prepare("SELECT subject FROM identities WHERE account_id = ?").get(accountId) as { subject: string }).subject;
    const expected = { sub: accountId, sid: sessionId, name: "sio-bob", idp: "demo", idpSub: subject };
    expect(((await root.timeout(5_000).emitWithAck("whoami")) as WhoAmI).identity).toEqual(expected);
    // The provider subject is the one the identity provider issued (oidc-provider's
    // findAccount uses the login name), not our account id.
    expect(subject).toBe("sio-bob");
    expect(subject).not.toBe(accountId);

    // Two minutes on: the assertion (60 s) has expired, so a per-namespace check of it would
    // fail; the identity verified once for the connection still holds.
    const assertion = game.upgrades.at(-1)?.headers.authorization?.slice("Bearer ".length) ?? "";
    expect(decodeJwt(assertion).exp).toBeLessThan(Math.floor(h.clock.now() / 1000) + 61);
    h.clock.advance(120_000);
    const lobby = await connected(io.socket("/lobby"));
    const who = (await lobby.timeout(5_000).emitWithAck("whoami")) as WhoAmI;
    expect(who.nsp).toBe("/lobby");
    expect(who.identity).toEqual(expected);
    io._close();
  });

  it("the assertion carries idp and idp_sub and nothing else from the ID token", async () => {
    const { token } = await h.login("sio-claims");
    const before = game.upgrades.length;
    const io = manager(h, { ticket: await mintTicket(h, token), token });
    await connected(io.socket("/"));
    const claims = decodeJwt(game.upgrades[before]?.headers.authorization?.slice("Bearer ".length) ?? "");
    expect(Object.keys(claims).sort()).toEqual(["aud", "exp", "iat", "idp", "idp_sub", "iss", "jti", "name", "nbf", "sid", "sub"]);
    expect(claims).toMatchObject({ iss: h.origin, aud: "game", idp: "demo", idp_sub: "sio-claims" });
    io._close();
  });

  it("works through a route that offers the backend no subprotocol; the 101 still names game.v1", async () => {
    const { token } = await h.login("sio-bare");
    const io = manager(h, { ticket: await mintTicket(h, token), token, path: "/bare/" });
    const socket = await connected(io.socket("/"));
    expect(await socket.timeout(5_000).emitWithAck("echo", "bare")).toEqual(["bare"]);
    const upgrade = game.upgrades.at(-1);
    expect(upgrade?.url).toMatch(/^\/socket\.io\/\?EIO=4&transport=websocket/);
    expect(upgrade?.headers["sec-websocket-protocol"]).toBeUndefined();
    const engine = io.engine.transport as unknown as { ws: { protocol: string } };
    expect(engine.ws.protocol).toBe("game.v1");
    io._close();
  });

  it("audits engine.io's refusal of a handshake without its query as the status it answered, not as unreachable", async () => {
    const { token } = await h.login("sio-noquery");
    const ticket = await mintTicket(h, token);
    const refused = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(`${h.origin.replace("http", "ws")}/socket.io/`, ["game.v1", `ticket.${ticket}`], {
        headers: { origin: h.origin, cookie: `__Host-Http-session=${token}` },
      });
      ws.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      ws.once("open", () => reject(new Error("opened")));
    });
    expect(refused).toBe(502);
    expect(h.audit.named("ws.upgrade.refused").at(-1)).toMatchObject({ status: 502, reason: "backend answered 400" });
  });

  it("the /api relay signs the same idp and idp_sub, so the game's HTTP API maps players the same way", async () => {
    const { token } = await h.login("api-player");
    const response = await fetch(`${h.origin}/api/game/profile`, { method: "GET", headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } });
    expect(response.status).toBe(200);
    const request = game.apiRequests.at(-1);
    expect(request?.url).toBe("/api/game/profile");
    const claims = decodeJwt(String(request?.headers.authorization).slice("Bearer ".length));
    expect(claims).toMatchObject({ idp: "demo", idp_sub: "api-player", name: "api-player" });
  });

  describe("refused on /socket.io/ exactly as on /ws, and the backend sees nothing", () => {
    const cases: [string, number, (token: string, ticket: string) => ClientOptions][] = [
      ["a foreign Origin", 403, (token, ticket) => ({ token, ticket, origin: "https://evil.example" })],
      ["no cookie", 401, (_token, ticket) => ({ token: null, ticket })],
      ["no ticket", 401, (token) => ({ token, ticket: null })],
    ];
    it.each(cases)("%s → %i", async (_name, status, options) => {
      const { token } = await h.login("sio-refused");
      const ticket = await mintTicket(h, token);
      const before = game.upgrades.length;
      const io = manager(h, options(token, ticket));
      await expect(connected(io.socket("/"))).rejects.toThrow(new RegExp(`Unexpected server response: ${status}`));
      io._close();
      expect(h.audit.named("ws.upgrade.refused").at(-1)?.status).toBe(status);
      // The same attempt on /ws, with a fresh ticket, gets the same status.
      const same = options(token, await mintTicket(h, token));
      expect(
        await upgradeStatus(h, same.ticket, { token: same.token, ...(same.origin === undefined ? {} : { origin: same.origin }) }),
      ).toBe(status);
      expect(game.upgrades.length).toBe(before);
    });

    it("a spent ticket → 401", async () => {
      const { token } = await h.login("sio-spent");
      const ticket = await mintTicket(h, token);
      const first = manager(h, { ticket, token });
      await connected(first.socket("/"));
      const before = game.upgrades.length;
      const again = manager(h, { ticket, token });
      await expect(connected(again.socket("/"))).rejects.toThrow(/Unexpected server response: 401/);
      expect(game.upgrades.length).toBe(before);
      first._close();
      again._close();
    });

    it("a raw upgrade to /socket.io/ with a foreign Origin gets the same JSON 403 as /ws", async () => {
      const lines = upgradeLines(h, { protocols: "game.v1, ticket.x", origin: "https://evil.example" });
      const onWS = await rawUpgrade(h, lines);
      const onSocketIO = await rawUpgrade(h, ["GET /socket.io/?EIO=4&transport=websocket HTTP/1.1", ...lines.slice(1)]);
      expect(onSocketIO).toMatch(/^HTTP\/1\.1 403 /);
      expect(onSocketIO.split("\r\n\r\n")[1]).toBe(onWS.split("\r\n\r\n")[1]);
    });
  });
});

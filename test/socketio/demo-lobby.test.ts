import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { io as connectDirectly } from "socket.io-client";
import { DEFAULT_WS_ROUTE } from "../../src/config";
import { LOBBY_PATH, withLobbyRoute } from "../../src/demo/lobby";
import { startStack } from "../fixtures/stack";
import { connected, socketIOManager } from "../fixtures/socketio-client";
import { mintTicket } from "../fixtures/ws-client";

describe("the demo's Socket.IO lobby (issue 12)", () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  beforeAll(async () => {
    // The route main.ts adds in demo mode (withLobbyRoute), configured as a studio would.
    stack = await startStack({ env: { WS_ROUTES: JSON.stringify([{ path: LOBBY_PATH, backendProtocol: null }]) } });
  });
  afterAll(() => stack.close());

  it("the demo configuration adds /socket.io/ (no backend subprotocol) once, beside /ws", () => {
    expect(withLobbyRoute([DEFAULT_WS_ROUTE])).toEqual([DEFAULT_WS_ROUTE, { ...DEFAULT_WS_ROUTE, path: LOBBY_PATH, backendProtocol: null }]);
    const configured = withLobbyRoute([DEFAULT_WS_ROUTE]);
    expect(withLobbyRoute(configured)).toBe(configured);
    // The same as a studio's WS_ROUTES for a Socket.IO game.
    expect(stack.h.bff.config.wsRoutes).toEqual(configured);
  });

  it("relays a player's chat through Portcullis, polling then WebSocket, under the name the assertion gives", async () => {
    const { token } = await stack.h.login("lobby-ann");
    const manager = socketIOManager(stack.h, { token, ticket: await mintTicket(stack.h, token), transports: ["polling", "websocket"] });
    const socket = manager.socket("/");
    const welcome = new Promise<{ you: string }>((resolve) => socket.once("welcome", resolve));
    await connected(socket);
    expect((await welcome).you).toBe("lobby-ann");
    const heard = new Promise<{ name: string; text: string }>((resolve) => socket.once("chat", resolve));
    expect(await socket.timeout(5_000).emitWithAck("chat", "  hello lobby  ")).toEqual({ ok: true });
    expect(await heard).toMatchObject({ name: "lobby-ann", text: "hello lobby" });
    expect(stack.game.lobby.playerCount()).toBe(1);
    manager._close();
  });

  it("refuses a handshake that did not come through Portcullis (no assertion): engine.io's 403", async () => {
    const direct = connectDirectly(stack.game.url, { path: LOBBY_PATH, transports: ["polling"], reconnection: false, forceNew: true });
    await expect(connected(direct)).rejects.toThrow(/xhr poll error: 403$/);
    direct.close();
  });

  it("serves socket.io-client's browser bundle on our own origin outside production, for the lobby page", async () => {
    const response = await fetch(`${stack.h.origin}/vendor/socket.io.esm.min.js`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(await response.text()).toContain("export{");
  });
});

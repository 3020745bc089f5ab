import type { IncomingMessage, Server as HTTPServer } from "node:http";
import type { Server as SocketIOServer, Socket } from "socket.io";
import { DEFAULT_WS_ROUTE, type WebSocketRouteConfig } from "../config";
import type { AssertionVerifier, VerifiedIdentity } from "./verify-assertion";

/** The path the lobby's Socket.IO server answers on: the demo configuration's WebSocket route. */
export const LOBBY_PATH = "/socket.io/";
const MAX_TEXT = 200;
const HISTORY = 50;

export interface DemoLobby {
  /** Players in the lobby right now. */
  playerCount(): number;
  close(): Promise<void>;
}

interface LobbyMessage {
  name: string;
  text: string;
  at: string;
}

/**
 * The demo's lobby chat: a stock Socket.IO 4 server beside the arena, on the game backend's
 * own HTTP server at /socket.io/, behind Portcullis's WebSocket route of the same path
 * (long-polling and WebSocket). It is the Socket.IO half of the reference a studio copies:
 * the player is whoever Portcullis's identity assertion says, verified ONCE per connection
 * in `allowRequest` (the handshake), kept with that request, and copied to `socket.data` by
 * a middleware; nothing the client says about who it is counts.
 *
 * socket.io is a development dependency (the demo's, never the product's): it is loaded
 * here, when the demo starts, and nowhere else.
 */
export async function startDemoLobby(server: HTTPServer, verifier: AssertionVerifier): Promise<DemoLobby> {
  const { Server } = await import("socket.io");
  const identities = new WeakMap<IncomingMessage, VerifiedIdentity>();
  const history: LobbyMessage[] = [];
  const io: SocketIOServer = new Server(server, {
    path: LOBBY_PATH,
    // No client bundle from here: Portcullis relays only engine.io's own requests.
    serveClient: false,
    maxHttpBufferSize: 16 * 1024,
    allowRequest: (req, callback) => {
      verifier.verifyAuthorization(req.headers.authorization).then(
        (identity) => {
          identities.set(req, identity);
          callback(null, true);
        },
        () => callback("invalid identity assertion", false),
      );
    },
  });
  // Every namespace gets the identity verified at the handshake: the assertion itself is
  // good for 60 s, a player stays for hours.
  io.use((socket, next) => {
    socket.data.identity = identities.get(socket.request);
    next(socket.data.identity === undefined ? new Error("unauthorized") : undefined);
  });

  const online = (): string[] => [...new Set([...io.of("/").sockets.values()].map((s) => nameOf(s)))].sort();
  io.on("connection", (socket) => {
    const name = nameOf(socket);
    socket.emit("welcome", { you: name, online: online(), history });
    socket.broadcast.emit("presence", { online: online(), joined: name });
    socket.on("chat", (text: unknown, ack: unknown) => {
      const trimmed = typeof text === "string" ? text.trim().slice(0, MAX_TEXT) : "";
      if (trimmed === "") {
        if (typeof ack === "function") ack({ ok: false });
        return;
      }
      const message = { name, text: trimmed, at: new Date().toISOString() };
      history.push(message);
      if (history.length > HISTORY) history.shift();
      io.emit("chat", message);
      if (typeof ack === "function") ack({ ok: true });
    });
    socket.on("disconnect", () => io.emit("presence", { online: online(), left: name }));
  });

  return {
    playerCount: () => io.of("/").sockets.size,
    close: async () => {
      await io.close();
    },
  };
}

function nameOf(socket: Socket): string {
  const identity: unknown = socket.data.identity;
  return typeof identity === "object" && identity !== null && "name" in identity && typeof identity.name === "string" ? identity.name : "?";
}

/**
 * The demo configuration's WebSocket routes: whatever is configured, plus the lobby's
 * Socket.IO route (public /socket.io/ → the demo game's /socket.io/, no backend
 * subprotocol) unless WS_ROUTES already has one there. `WS_ROUTES='[{"path":
 * "/socket.io/", "backendProtocol": null}]'` is the same thing for a studio's own game.
 */
export function withLobbyRoute(routes: WebSocketRouteConfig[]): WebSocketRouteConfig[] {
  if (routes.some((route) => route.path === LOBBY_PATH)) return routes;
  return [...routes, { ...DEFAULT_WS_ROUTE, path: LOBBY_PATH, backendProtocol: null }];
}

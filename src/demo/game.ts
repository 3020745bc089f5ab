import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";
import { LOBBY_PATH, startDemoLobby, type DemoLobby } from "./lobby";
import { AssertionVerifier, type VerifiedIdentity } from "./verify-assertion";

export interface DemoGameOptions {
  port: number;
  host?: string;
  /** The BFF's `/.well-known/jwks.json`; fetched lazily, so the BFF may start after the game. */
  jwksURL: string;
  /** The BFF's PUBLIC_ORIGIN, the assertions' `iss`. */
  issuer: string;
  /** The `aud` the BFF puts in assertions for this backend; by default its own origin once listening. */
  audience?: string;
  /** Extra HTTP routes (the demo /api/game); returns true when it answered. */
  httpHandler?: (req: IncomingMessage, res: ServerResponse, verifier: AssertionVerifier) => boolean;
}

export interface DemoGame {
  url: string;
  server: Server;
  verifier: AssertionVerifier;
  /** Players connected right now. */
  playerCount(): number;
  /** The Socket.IO lobby chat beside the arena, on /socket.io/. */
  lobby: DemoLobby;
  close(): Promise<void>;
}

interface Player {
  id: string;
  account: string;
  name: string;
  /** 1 for the account's first connection, 2 for its second (another session or tab)… */
  seat: number;
  x: number;
  y: number;
  color: string;
  socket: WebSocket;
}

export const ARENA = { width: 960, height: 540 };
const STEP = 12;
const MAX_CHAT = 200;
const MAX_MESSAGE_BYTES = 4096;
const COLORS = ["#f4b942", "#5ec8f2", "#f26d85", "#7ee081", "#b48cf2", "#f2935e", "#5ef2c6", "#e0e07e"];

/**
 * The demo game backend: one arena, dots that move, a chat, over `ws`, and beside it a
 * Socket.IO lobby chat on /socket.io/ (lobby.ts). It is also the
 * reference for how a studio's own backend trusts Portcullis: it accepts an upgrade only
 * with a valid identity assertion (`Authorization: Bearer <JWT>` verified against the BFF's
 * JWKS), takes the player's identity from it, and trusts nothing the client says about who
 * it is. Messages are JSON, narrowed field by field from `unknown`.
 */
export async function startDemoGame(options: DemoGameOptions): Promise<DemoGame> {
  let verifier: AssertionVerifier | null = null;
  const players = new Map<string, Player>();
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: MAX_MESSAGE_BYTES,
    handleProtocols: (protocols) => (protocols.has("game.v1") ? "game.v1" : false),
  });

  const server = createServer((req, res) => {
    if (req.url === "/healthz") {
      res.writeHead(200, { "content-type": "application/json; charset=utf-8" });
      res.end(JSON.stringify({ status: "ok", players: players.size }));
      return;
    }
    if (verifier !== null && options.httpHandler?.(req, res, verifier)) return;
    res.writeHead(404, { "content-type": "application/json; charset=utf-8" });
    res.end(JSON.stringify({ error: "not_found", message: "no such route" }));
  });

  server.on("upgrade", (req, socket, head) => {
    socket.on("error", () => socket.destroy());
    const refuse = (status: number, text: string): void => {
      const body = JSON.stringify({ error: text.toLowerCase().replace(/ /g, "_"), message: text });
      socket.once("finish", () => socket.destroy());
      socket.end(
        `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    };
    // The lobby's Socket.IO server answers its own upgrades.
    if (req.url?.startsWith(LOBBY_PATH)) return;
    if (req.url !== "/ws") {
      refuse(404, "Not Found");
      return;
    }
    if (verifier === null) {
      refuse(503, "Service Unavailable");
      return;
    }
    verifier
      .verifyAuthorization(req.headers.authorization)
      .then((identity) => {
        wss.handleUpgrade(req, socket, head, (ws) => join(ws, identity));
      })
      .catch(() => refuse(401, "Unauthorized"));
  });

  function broadcast(message: unknown, except?: Player): void {
    const text = JSON.stringify(message);
    for (const player of players.values()) {
      if (player !== except && player.socket.readyState === 1) player.socket.send(text);
    }
  }

  function view(player: Player): { id: string; name: string; label: string; seat: number; x: number; y: number; color: string } {
    return { id: player.id, name: player.name, label: label(player), seat: player.seat, x: player.x, y: player.y, color: player.color };
  }

  /**
   * Two sessions (or tabs) of one account are two dots with one name; the second is "Sam (2)"
   * so players can tell them apart. The lowest seat free among the account's connections.
   */
  function freeSeat(account: string): number {
    const taken = new Set([...players.values()].filter((p) => p.account === account).map((p) => p.seat));
    let seat = 1;
    while (taken.has(seat)) seat += 1;
    return seat;
  }

  function join(socket: WebSocket, identity: VerifiedIdentity): void {
    const player: Player = {
      id: randomBytes(6).toString("hex"),
      account: identity.sub,
      name: identity.name,
      seat: freeSeat(identity.sub),
      x: 40 + Math.floor(Math.random() * (ARENA.width - 80)),
      y: 40 + Math.floor(Math.random() * (ARENA.height - 80)),
      color: COLORS[players.size % COLORS.length] ?? "#f4b942",
      socket,
    };
    players.set(player.id, player);
    socket.send(JSON.stringify({ type: "welcome", you: view(player), arena: ARENA, players: [...players.values()].map(view) }));
    broadcast({ type: "join", player: view(player) }, player);

    socket.on("message", (data, isBinary) => {
      if (isBinary) return;
      const message = parse(data.toString());
      if (message === null) return;
      if (message.type === "move") {
        player.x = clamp(player.x + message.dx * STEP, 0, ARENA.width);
        player.y = clamp(player.y + message.dy * STEP, 0, ARENA.height);
        broadcast({ type: "move", id: player.id, x: player.x, y: player.y });
      } else {
        broadcast({ type: "chat", id: player.id, name: label(player), text: message.text, at: new Date().toISOString() });
      }
    });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      players.delete(player.id);
      broadcast({ type: "leave", id: player.id });
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host ?? "127.0.0.1", () => resolve());
  });
  const address = server.address() as AddressInfo;
  const url = `http://${address.address}:${address.port}`;
  const ready = new AssertionVerifier({ jwksURL: options.jwksURL, issuer: options.issuer, audience: options.audience ?? url });
  verifier = ready;
  const lobby = await startDemoLobby(server, ready);
  return {
    url,
    server,
    verifier: ready,
    playerCount: () => players.size,
    lobby,
    close: () =>
      new Promise<void>((resolve) => {
        void lobby.close();
        for (const player of players.values()) player.socket.terminate();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function label(player: Player): string {
  return player.seat === 1 ? player.name : `${player.name} (${player.seat})`;
}

type ClientMessage = { type: "move"; dx: number; dy: number } | { type: "chat"; text: string };

/** Narrows a client message field by field; anything else is ignored. */
function parse(text: string): ClientMessage | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const type = field(value, "type");
  if (type === "move") {
    const dx = field(value, "dx");
    const dy = field(value, "dy");
    if (typeof dx !== "number" || typeof dy !== "number" || !Number.isFinite(dx) || !Number.isFinite(dy)) return null;
    return { type: "move", dx: clamp(Math.round(dx), -1, 1), dy: clamp(Math.round(dy), -1, 1) };
  }
  const chat = field(value, "text");
  if (type === "chat" && typeof chat === "string") {
    const trimmed = chat.trim().slice(0, MAX_CHAT);
    return trimmed === "" ? null : { type: "chat", text: trimmed };
  }
  return null;
}

/** An own property of a parsed JSON object, or undefined (never one from the prototype chain). */
function field(value: unknown, name: string): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value) || !Object.hasOwn(value, name)) return undefined;
  return Reflect.get(value, name);
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

/**
 * The game backend of the side-by-side benchmark, in its own process so that no proxy
 * shares its CPU time or its heap with it.
 *
 * It trusts Portcullis the way the demo game (src/demo/game.ts) does: every `/ws` upgrade
 * and every `/api/game/*` request must carry an identity assertion, verified by the demo's
 * own AssertionVerifier against Portcullis' JWKS, and `/api/game/*` is the demo game's own
 * HTTP API (src/demo/game-api.ts). Only the message handling differs, because the demo
 * arena cannot measure a relay: it caps messages at 4 KiB (16 KiB ones would close with
 * 1009), ignores binary frames, and broadcasts every move and every join to every player,
 * so 10,000 idle sockets would cost it 50 million join notices and a throughput figure
 * would measure its fan-out. Here a message whose first byte is `S` is counted and
 * dropped (one-way streams), every other one is echoed to its sender unchanged.
 *
 * IPC: answers `{type: "ready", port, pid}` once listening; accepts
 * `{type: "trust", issuer, jwksURL}` once Portcullis is up (its origin is only known then)
 * and answers `{type: "trusted"}`.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer } from "ws";
import { createGameAPI } from "../src/demo/game-api";
import { AssertionVerifier } from "../src/demo/verify-assertion";
import { readString } from "./protocol";

const SINK_MARK = 0x53; // "S"
// The largest message the benchmark sends is 16 KiB; anything larger is a harness bug.
const MAX_PAYLOAD_BYTES = 64 * 1024;

let sunk = 0;
let verifier: AssertionVerifier | null = null;
const gameAPI = createGameAPI();

const wss = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  maxPayload: MAX_PAYLOAD_BYTES,
  handleProtocols: (protocols) => (protocols.has("game.v1") ? "game.v1" : false),
});

const server = createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"status":"ok"}');
    return;
  }
  // Read by the load generator directly, never through a proxy: the one-way stream count.
  if (req.url === "/stats") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ sunk }));
    return;
  }
  if (verifier !== null && gameAPI(req, res, verifier)) return;
  res.writeHead(404, { "content-type": "application/json" });
  res.end('{"error":"not_found","message":"no such route"}');
});

server.on("upgrade", (req, socket, head) => {
  socket.on("error", () => socket.destroy());
  const refuse = (status: number): void => {
    socket.end(`HTTP/1.1 ${status} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  };
  if (req.url !== "/ws") return refuse(404);
  if (verifier === null) return refuse(503);
  verifier
    .verifyAuthorization(req.headers.authorization)
    .then(() => {
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on("error", () => undefined);
        ws.on("message", (data: Buffer, isBinary) => {
          if (data[0] === SINK_MARK) sunk += 1;
          else ws.send(data, { binary: isBinary });
        });
      });
    })
    .catch(() => refuse(401));
});

process.on("message", (message: unknown) => {
  const issuer = readString(message, "issuer");
  const jwksURL = readString(message, "jwksURL");
  if (readString(message, "type") !== "trust" || issuer === null || jwksURL === null) return;
  const { port } = server.address() as AddressInfo;
  // Portcullis' default audience for its game backend is the backend's origin.
  verifier = new AssertionVerifier({ jwksURL, issuer, audience: `http://127.0.0.1:${port}` });
  process.send?.({ type: "trusted" });
});
process.on("disconnect", () => process.exit(0));

server.listen(0, "127.0.0.1", () => {
  process.send?.({ type: "ready", port: (server.address() as AddressInfo).port, pid: process.pid });
});

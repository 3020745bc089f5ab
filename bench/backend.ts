/**
 * The benchmark's game backend, in its own process: a `ws` server at /ws that echoes every
 * message except those starting with "S", which it only counts (one-way streams),
 * `GET /api/game/profile` answering a small JSON, and `GET /stats` with that count. It does not verify assertions: it measures
 * the proxies, not the backend, and nginx sends none.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer } from "ws";

let sunk = 0;
const SINK = 0x53;
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1 << 20, handleProtocols: () => "game.v1" });
const profile = JSON.stringify({ id: "bench", name: "bench-player", best: 0, plays: 0 });
const server = createServer((req, res) => {
  if (req.url === "/stats") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ sunk }));
    return;
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.end(profile);
});
server.on("upgrade", (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on("error", () => undefined);
    ws.on("message", (data: Buffer, isBinary) => {
      if (data[0] === SINK) sunk += 1;
      else ws.send(data, { binary: isBinary });
    });
  });
});
server.listen(0, "127.0.0.1", () => {
  process.send?.({ type: "ready", port: (server.address() as AddressInfo).port, pid: process.pid });
});

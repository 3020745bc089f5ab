import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";
import { startRawBackend, type RawBackend } from "../fixtures/raw-backend";
import { until } from "../fixtures/wait";
import { mintTicket, upgradeStatus } from "../fixtures/ws-client";

const proper = (accept: string): string[] => [
  "HTTP/1.1 101 Switching Protocols",
  "Upgrade: websocket",
  "Connection: Upgrade",
  `Sec-WebSocket-Accept: ${accept}`,
  "Sec-WebSocket-Protocol: game.v1",
];

describe("#openBackendSocket: the backend's 101 is checked as a client must (RFC 6455 4.1), failing closed", () => {
  let backend: RawBackend;
  let h: Harness;
  beforeAll(async () => {
    backend = await startRawBackend();
    h = await startHarness({ env: { GAME_BACKEND_URL: backend.url } });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
  });

  it.each([
    ["a wrong Sec-WebSocket-Accept", (accept: string) => proper(`x${accept.slice(1)}`), "backend sent a wrong Sec-WebSocket-Accept"],
    ["no subprotocol", (accept: string) => proper(accept).slice(0, 4), "backend chose another subprotocol"],
    ["another subprotocol", (accept: string) => [...proper(accept).slice(0, 4), "Sec-WebSocket-Protocol: chat"], "backend chose another subprotocol"],
    ["an extension nobody offered", (accept: string) => [...proper(accept), "Sec-WebSocket-Extensions: permessage-deflate"], "backend chose an extension"],
    ["an upgrade to another protocol", (accept: string) => ["HTTP/1.1 101 Switching Protocols", "Upgrade: h2c", "Connection: Upgrade", `Sec-WebSocket-Accept: ${accept}`, "Sec-WebSocket-Protocol: game.v1"], "backend upgraded to something else"],
  ])("answers 502 to the browser when the backend's 101 has %s, and drops the backend socket", async (_name, answer, reason) => {
    backend.options = { answer };
    try {
      const { token } = await h.login("picky");
      const connections = backend.connections.length;
      expect(await upgradeStatus(h, await mintTicket(h, token), { token })).toBe(502);
      expect(h.audit.named("ws.upgrade.refused").at(-1)).toMatchObject({ status: 502, reason });
      const connection = backend.connections[connections];
      await until(() => connection?.socket.destroyed === true || connection?.socket.readableEnded === true, "the backend socket dropped");
    } finally {
      backend.options = {};
    }
  });

  it("accepts a proper 101", async () => {
    const { token } = await h.login("proper");
    expect(await upgradeStatus(h, await mintTicket(h, token), { token })).toBe(101);
  });
});

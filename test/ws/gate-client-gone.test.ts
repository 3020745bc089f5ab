import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";
import { until } from "../fixtures/wait";
import { mintTicket, upgradeLines } from "../fixtures/ws-client";

/**
 * A browser that leaves while the backend has not answered must not leave the backend
 * attempt open (SECURITY.md H35). The backend handshake timeout here is a minute, so only
 * the gate noticing the browser's FIN or reset can drop the attempt within the 2 s waited.
 */
describe("a browser leaving during the backend handshake", () => {
  let stalling: Server;
  let connections: Socket[];
  let h: Harness;
  beforeAll(async () => {
    connections = [];
    stalling = createServer((socket) => {
      connections.push(socket);
      socket.on("error", () => undefined);
      socket.resume();
    });
    await new Promise<void>((resolve) => stalling.listen(0, "127.0.0.1", () => resolve()));
    const { port } = stalling.address() as AddressInfo;
    h = await startHarness({ env: { GAME_BACKEND_URL: `http://127.0.0.1:${port}` }, portcullis: { ws: { backendHandshakeTimeoutMs: 60_000 } } });
  });
  afterAll(async () => {
    await h.close();
    for (const socket of connections) socket.destroy();
    await new Promise<void>((resolve) => stalling.close(() => resolve()));
  });

  it.each([
    ["half-closes (FIN)", (browser: Socket): void => void browser.end()],
    ["resets (RST)", (browser: Socket): void => void browser.resetAndDestroy()],
  ])("%s: the backend attempt is dropped at once, audited, and the socket slot freed", async (name, leave) => {
    const { token } = await h.login(`leaves-${name.length}`);
    const ticket = await mintTicket(h, token);
    const count = connections.length;
    const url = new URL(h.origin);
    const browser = connect(Number(url.port), url.hostname);
    browser.on("error", () => undefined);
    browser.resume();
    browser.write(`${upgradeLines(h, { protocols: `game.v1, ticket.${ticket}`, token }).join("\r\n")}\r\n\r\n`);
    await until(() => connections.length === count + 1, "the gate asking the backend");
    const attempt = connections.at(-1);
    leave(browser);
    await until(() => attempt?.destroyed === true || attempt?.readableEnded === true, "the backend attempt dropped");
    await h.bff.audit.flush();
    expect(h.audit.named("ws.upgrade.refused").at(-1)).toMatchObject({ status: 502, reason: "client left during backend handshake" });
    expect(h.bff.registry.size).toBe(0);
    browser.destroy();
  });
});

import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";
import { startRawBackend, type RawBackend } from "../fixtures/raw-backend";
import { until } from "../fixtures/wait";
import { mintTicket, rawUpgrade, upgradeLines } from "../fixtures/ws-client";

/**
 * The gate's cap on upgrades waiting for their backend handshake (issue 7, SECURITY.md H35):
 * each holds two sockets, so a stalled backend must not let them pile up. The cap is 1,000;
 * the 1,001st upgrade is refused with 503 busy before the backend hears of it.
 */
describe("upgrades waiting for a stalled backend are capped at 1,000 (SECURITY.md H35)", () => {
  const CAP = 1_000;
  let backend: RawBackend;
  let h: Harness;
  const sockets: Socket[] = [];
  beforeAll(async () => {
    backend = await startRawBackend({ holdAnswers: true });
    h = await startHarness({
      env: { GAME_BACKEND_URL: backend.url, WS_MAX_SOCKETS_PER_SESSION: "5000", MAX_CONNECTIONS_PER_IP: "5000" },
      // Held far longer than the test: the upgrades wait, they do not time out.
      portcullis: { ws: { backendHandshakeTimeoutMs: 120_000 } },
    });
  });
  afterAll(async () => {
    // The browsers leave: each pending upgrade drops its backend attempt.
    for (const socket of sockets) socket.destroy();
    await until(() => h.bff.registry.size === 0, "the pending upgrades to leave", 15_000);
    for (const socket of backend.held) socket.destroy();
    await h.close();
    await backend.close();
  }, 60_000);

  it("refuses the upgrade past the cap with 503 busy, audited, and the backend sees exactly the cap", async () => {
    const { token } = await h.login("crowd");
    const tickets: string[] = [];
    for (let i = 0; i <= CAP; i += 1) tickets.push(await mintTicket(h, token));
    const url = new URL(h.origin);
    for (const ticket of tickets.slice(0, CAP)) {
      const socket = connect(Number(url.port), url.hostname);
      socket.on("error", () => undefined);
      socket.write(`${upgradeLines(h, { protocols: `game.v1, ticket.${ticket}`, token }).join("\r\n")}\r\n\r\n`);
      sockets.push(socket);
    }
    await until(() => backend.held.length === CAP, "the cap's upgrades at the backend", 15_000);
    const answer = await rawUpgrade(h, upgradeLines(h, { protocols: `game.v1, ticket.${tickets[CAP] ?? ""}`, token }));
    expect(answer).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/);
    expect(answer).toContain('{"error":"busy"');
    expect(h.audit.named("ws.upgrade.refused").at(-1)).toMatchObject({ status: 503, reason: "too many upgrades in progress" });
    expect(backend.held.length).toBe(CAP);
  }, 60_000);
});

import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRecordingBackend, type RecordingBackend } from "../fixtures/backend";
import { startHarness, type Harness } from "../fixtures/harness";
import { closeOf, mintTicket, openSocket, upgradeStatus } from "../fixtures/ws-client";

/** A recording backend on a fixed port, so it can go away and come back at the same address. */
async function backendOn(port: number): Promise<RecordingBackend> {
  const backend = await startRecordingBackend();
  await new Promise<void>((resolve) => backend.server.close(() => resolve()));
  await new Promise<void>((resolve) => backend.server.listen(port, "127.0.0.1", () => resolve()));
  backend.url = `http://127.0.0.1:${port}`;
  return backend;
}

describe("the game backend going down and coming back (issue 7)", () => {
  let port: number;
  let backend: RecordingBackend;
  let h: Harness;
  beforeAll(async () => {
    port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const { port: p } = probe.address() as { port: number };
        probe.close(() => resolve(p));
      });
    });
    backend = await backendOn(port);
    h = await startHarness({ env: { GAME_BACKEND_URL: backend.url } });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
  });

  it("closes open sockets with 1014, refuses upgrades with 502 and /readyz with 503 while down, then recovers", async () => {
    const { token } = await h.login("through-the-outage");
    const ws = await openSocket(h, await mintTicket(h, token), { token });
    expect((await fetch(`${h.origin}/readyz`)).status).toBe(200);

    const closed = closeOf(ws);
    await backend.close();
    expect((await closed).code).toBe(1014);
    expect(await upgradeStatus(h, await mintTicket(h, token), { token })).toBe(502);
    // /readyz caches its backend probe for 2 s: move past it rather than wait.
    h.clock.advance(2_001);
    expect((await fetch(`${h.origin}/readyz`)).status).toBe(503);
    expect((await fetch(`${h.origin}/healthz`)).status).toBe(200);

    backend = await backendOn(port);
    h.clock.advance(2_001);
    expect((await fetch(`${h.origin}/readyz`)).status).toBe(200);
    const again = await openSocket(h, await mintTicket(h, token), { token });
    again.send("back");
    await new Promise((resolve) => again.once("message", resolve));
    again.close();
  });
});

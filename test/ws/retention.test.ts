import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebSocket } from "ws";
import { startRecordingBackend, type RecordingBackend } from "../fixtures/backend";
import { startHarness, type Harness } from "../fixtures/harness";
import { mintTicket, openSocket } from "../fixtures/ws-client";

// A collector this test can call: the flag, then a fresh context that sees `gc`.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/**
 * What an open socket keeps alive (issue 13's slot release once kept its whole upgrade:
 * the request, the assertion, the pending upgrade, about 10 KiB per idle connection, for as
 * long as the socket lived). Once the gate has answered, nothing long-lived may hold the
 * upgrade's own state: the relay keeps the two sockets and what it needs of the session.
 */
describe("an open socket keeps nothing of its upgrade alive", () => {
  let backend: RecordingBackend;
  let h: Harness;
  beforeAll(async () => {
    backend = await startRecordingBackend();
    h = await startHarness({ env: { GAME_BACKEND_URL: backend.url, WS_MAX_SOCKETS_PER_SESSION: "50" } });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
  });

  it("the upgrade's own state is collected while 20 sockets stay open", async () => {
    // Everything the gate puts in the registry, watched through weak references: the
    // pending upgrade while the backend answers, then the relay. The call goes through.
    const registry = h.bff.registry;
    const added: WeakRef<object>[] = [];
    const add = registry.add.bind(registry);
    registry.add = (connection) => {
      added.push(new WeakRef(connection));
      add(connection);
    };
    const { token } = await h.login("retention");
    const sockets: WebSocket[] = [];
    try {
      for (let i = 0; i < 20; i++) sockets.push(await openSocket(h, await mintTicket(h, token), { token }));
      registry.add = add;
      expect(added).toHaveLength(40);
      const alive = (): number => added.filter((r) => r.deref() !== undefined).length;
      // Collected over a few turns of the event loop (the handshake's timers and promises settle first).
      for (let round = 0; round < 10 && alive() > 20; round++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        gc();
      }
      // The 20 relays live on; the 20 pending upgrades are gone.
      expect(alive()).toBe(20);
      expect(sockets.every((ws) => ws.readyState === ws.OPEN)).toBe(true);
      expect(registry.size).toBe(20);
    } finally {
      registry.add = add;
      for (const ws of sockets) ws.terminate();
    }
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRecordingBackend, type RecordingBackend } from "../fixtures/backend";
import { startHarness, type Harness } from "../fixtures/harness";
import { closeOf, mintTicket, openSocket } from "../fixtures/ws-client";

/**
 * SECURITY.md E27 / ASVS 7.4.1: the expiry recheck must run on its own. The other expiry
 * test calls `registry.recheck()` by hand, so it still passes with the timer turned into a
 * no-op (issue 17); this one only moves the clock and waits for the timer.
 */
describe("the periodic expiry recheck runs by itself (SECURITY.md E27)", () => {
  let backend: RecordingBackend;
  let h: Harness;
  beforeAll(async () => {
    backend = await startRecordingBackend();
    h = await startHarness({ env: { GAME_BACKEND_URL: backend.url }, portcullis: { ws: { recheckMs: 50 } } });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
  });

  it("closes the socket of a session idle past its timeout with 4401 within 1 s, with no manual recheck", async () => {
    const { token } = await h.login("left-idle");
    const ws = await openSocket(h, await mintTicket(h, token), { token });
    const closed = closeOf(ws);
    // Nothing touches the session from here on: no request, no message, no recheck() call.
    h.clock.advance(1800 * 1000 + 1);
    const result = await Promise.race([
      closed,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("socket still open 1 s after the session expired")), 1000)),
    ]);
    expect(result.code).toBe(4401);
    expect(h.audit.named("session.expired").length).toBeGreaterThan(0);
  });
});

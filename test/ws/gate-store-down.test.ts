import { describe, expect, it } from "vitest";
import { startHarness } from "../fixtures/harness";
import { mintTicket, rawUpgrade, upgradeLines } from "../fixtures/ws-client";

/** SECURITY.md E28 (never the process): a store that cannot answer refuses the upgrade with 503; the server stays up. */
describe("the /ws gate with a store that cannot answer", () => {
  it("refuses 503 unavailable, audited, and keeps serving", async () => {
    const h = await startHarness();
    try {
      const { token } = await h.login("store-down");
      const ticket = await mintTicket(h, token);
      // The real database, closed under the running server: every store call now throws.
      h.bff.db.close();
      const answer = await rawUpgrade(h, upgradeLines(h, { protocols: `game.v1, ticket.${ticket}`, token }));
      expect(answer).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/);
      expect(answer).toContain('{"error":"unavailable"');
      expect(h.audit.named("ws.upgrade.refused").at(-1)).toMatchObject({ status: 503, reason: "internal error" });
      expect((await fetch(`${h.origin}/healthz`)).status).toBe(200);
    } finally {
      await h.close().catch(() => undefined);
    }
  });
});

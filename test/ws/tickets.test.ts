import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256Hex } from "../../src/crypto/hash";
import { startHarness, type Harness } from "../fixtures/harness";

describe("TicketStore (SECURITY.md E23)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { GAME_BACKEND_URL: "http://127.0.0.1:9" } });
  });
  afterAll(async () => {
    await h.close();
  });

  async function sessionId(name: string): Promise<string> {
    const { token } = await h.login(name);
    const [id = ""] = token.split(".");
    return id;
  }

  function storedHashes(): string[] {
    return h.bff.db.sqlite
      .prepare("SELECT hash FROM ws_tickets")
      .all()
      .map((row) => String(Reflect.get(Object(row), "hash")));
  }

  describe("#issue", () => {
    it("issues 160 bits as 32 base32 characters and stores only their SHA-256", async () => {
      const { ticket, expiresIn } = h.bff.tickets.issue(await sessionId("issuer"));
      expect(ticket).toMatch(/^[a-z2-7]{32}$/);
      expect(expiresIn).toBe(30);
      expect(storedHashes()).toContain(sha256Hex(ticket));
      const dump = JSON.stringify(h.bff.db.sqlite.prepare("SELECT * FROM ws_tickets").all());
      expect(dump).not.toContain(ticket);
    });

    it("never issues the same ticket twice", async () => {
      const id = await sessionId("many");
      const tickets = new Set(Array.from({ length: 200 }, () => h.bff.tickets.issue(id).ticket));
      expect(tickets.size).toBe(200);
    });
  });

  describe("#redeem", () => {
    it("redeems a ticket once, for the session it was issued to", async () => {
      const id = await sessionId("once");
      const { ticket } = h.bff.tickets.issue(id);
      expect(h.bff.tickets.redeem(ticket)).toEqual({ status: "valid", sessionId: id });
      expect(h.bff.tickets.redeem(ticket)).toEqual({ status: "unknown" });
    });

    it("refuses a ticket at TTL + 1 s as expired, and spends it", async () => {
      const { ticket } = h.bff.tickets.issue(await sessionId("late"));
      h.clock.advance(31_000);
      expect(h.bff.tickets.redeem(ticket)).toEqual({ status: "expired" });
      expect(h.bff.tickets.redeem(ticket)).toEqual({ status: "unknown" });
    });

    it("refuses a ticket at exactly its TTL: it lives WS_TICKET_TTL_SECONDS, not a millisecond more", async () => {
      const { ticket } = h.bff.tickets.issue(await sessionId("exact"));
      h.clock.advance(30_000);
      expect(h.bff.tickets.redeem(ticket)).toEqual({ status: "expired" });
    });

    it("accepts a ticket one second before its TTL", async () => {
      const id = await sessionId("early");
      const { ticket } = h.bff.tickets.issue(id);
      h.clock.advance(29_000);
      expect(h.bff.tickets.redeem(ticket)).toEqual({ status: "valid", sessionId: id });
    });

    it.each([["empty", ""], ["upper case", "A".repeat(32)], ["too short", "a".repeat(31)], ["SQL", "' OR 1=1 --"], ["a stored hash", "0".repeat(64)]])(
      "treats a malformed ticket (%s) as unknown",
      (_name, ticket) => {
        expect(h.bff.tickets.redeem(ticket)).toEqual({ status: "unknown" });
      },
    );
  });

  describe("#sweep", () => {
    it("deletes expired tickets and keeps live ones", async () => {
      const id = await sessionId("sweeper");
      const old = h.bff.tickets.issue(id).ticket;
      h.clock.advance(20_000);
      const fresh = h.bff.tickets.issue(id).ticket;
      h.clock.advance(11_000);
      expect(h.bff.tickets.sweep()).toBeGreaterThanOrEqual(1);
      expect(storedHashes()).not.toContain(sha256Hex(old));
      expect(storedHashes()).toContain(sha256Hex(fresh));
    });
  });

  it("drops a session's tickets when the session ends", async () => {
    const { agent, token } = await h.login("leaver");
    const [id = ""] = token.split(".");
    const { ticket } = h.bff.tickets.issue(id);
    const response = await agent.fetch(`${h.origin}/auth/logout`, { method: "POST", headers: h.csrf() });
    expect(response.status).toBe(204);
    expect(storedHashes()).not.toContain(sha256Hex(ticket));
    expect(h.bff.tickets.redeem(ticket)).toEqual({ status: "unknown" });
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebSocket } from "ws";
import { startRecordingBackend, type RecordingBackend } from "../fixtures/backend";
import { startHarness, type Harness } from "../fixtures/harness";
import { mintTicket, openSocket, UpgradeRefused, type OpenOptions } from "../fixtures/ws-client";

/**
 * SECURITY.md E22, CONTRACT.md "The WebSocket gate": the checks run in the contract's order,
 * Origin → cookie → ticket → owner → cap. Each request here fails two checks at once, so
 * only the order decides the answer; and a refusal before the ticket check leaves the
 * ticket unspent (issue 17: redeeming before the cookie check passed every other test).
 */
describe("the /ws gate's order (SECURITY.md E22)", () => {
  let backend: RecordingBackend;
  let h: Harness;
  let a: { token: string };
  let b: { token: string };
  let held: WebSocket;
  beforeAll(async () => {
    backend = await startRecordingBackend();
    h = await startHarness({ env: { GAME_BACKEND_URL: backend.url, WS_MAX_SOCKETS_PER_SESSION: "1" } });
    a = await h.login("order-a");
    b = await h.login("order-b");
  });
  afterAll(async () => {
    held?.terminate();
    await h.close();
    await backend.close();
  });

  /** The status and CONTRACT.md error code of an upgrade, and whether the backend was asked. */
  async function attempt(ticket: string | null, options: OpenOptions): Promise<{ status: number; error: string; backendAsked: boolean }> {
    const before = backend.upgrades;
    try {
      const ws = await openSocket(h, ticket, options);
      ws.terminate();
      return { status: 101, error: "", backendAsked: backend.upgrades > before };
    } catch (error) {
      if (!(error instanceof UpgradeRefused)) throw error;
      const body: unknown = JSON.parse(error.body);
      const code = typeof body === "object" && body !== null && "error" in body ? String(body.error) : "";
      return { status: error.status, error: code, backendAsked: backend.upgrades > before };
    }
  }

  const FORGED = `${"a".repeat(26)}.${"b".repeat(43)}`;

  it.each([
    ["no cookie", null],
    ["a forged cookie", FORGED],
  ])("%s with a valid ticket → 401 no_session, and the ticket stays unspent for its own session", async (_name, cookie) => {
    const ticket = await mintTicket(h, a.token);
    expect(await attempt(ticket, { token: cookie })).toEqual({ status: 401, error: "no_session", backendAsked: false });
    const ws = await openSocket(h, ticket, { token: a.token });
    expect(ws.protocol).toBe("game.v1");
    ws.close();
    await new Promise((resolve) => ws.once("close", resolve));
  });

  it("a wrong-session cookie's refusal does not spend the other session's ticket either", async () => {
    const ticketOfB = await mintTicket(h, b.token);
    expect(await attempt(ticketOfB, { token: FORGED })).toMatchObject({ status: 401, error: "no_session" });
    const ws = await openSocket(h, ticketOfB, { token: b.token });
    ws.close();
    await new Promise((resolve) => ws.once("close", resolve));
  });

  it.each<[string, number, string, (t: { own: string; others: string }) => [string | null, OpenOptions]]>([
    // Origin before cookie.
    ["a foreign Origin and no cookie", 403, "origin", ({ own }) => [own, { origin: "https://evil.example", token: null }]],
    // The upgrade itself before Origin.
    ["no game.v1 and a foreign Origin", 400, "bad_upgrade", ({ own }) => [own, { origin: "https://evil.example", token: null, protocols: [`ticket.${own}`] }]],
    // Cookie before ticket.
    ["no cookie and an unknown ticket", 401, "no_session", () => ["a".repeat(32), { token: null }]],
    ["no cookie and no ticket", 401, "no_session", () => [null, { token: null }]],
    ["no cookie and another session's ticket", 401, "no_session", ({ others }) => [others, { token: null }]],
  ])("%s → %i %s", async (_name, status, error, request) => {
    const own = await mintTicket(h, a.token);
    const others = await mintTicket(h, b.token);
    const [ticket, options] = request({ own, others });
    expect(await attempt(ticket, options)).toEqual({ status, error, backendAsked: false });
  });

  describe("with the session at its socket cap", () => {
    beforeAll(async () => {
      held = await openSocket(h, await mintTicket(h, a.token), { token: a.token });
    });

    it("its own fresh ticket → 429 (the cap holds)", async () => {
      expect(await attempt(await mintTicket(h, a.token), { token: a.token })).toEqual({ status: 429, error: "too_many_sockets", backendAsked: false });
    });

    it("an unknown ticket → 401 bad_ticket: the ticket is checked before the cap", async () => {
      expect(await attempt("b".repeat(32), { token: a.token })).toEqual({ status: 401, error: "bad_ticket", backendAsked: false });
    });

    it("no ticket → 401 bad_ticket: the ticket is checked before the cap", async () => {
      expect(await attempt(null, { token: a.token })).toEqual({ status: 401, error: "bad_ticket", backendAsked: false });
    });

    it("another session's ticket → 403 wrong_session: the owner is checked before the cap", async () => {
      expect(await attempt(await mintTicket(h, b.token), { token: a.token })).toEqual({ status: 403, error: "wrong_session", backendAsked: false });
    });
  });
});

import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAuditLog } from "../../src/audit/log";
import { ManualClock, secureRandomBytes } from "../../src/clock";
import { TokenCipher } from "../../src/crypto/token-cipher";
import { createPostgresStore } from "../../src/store/postgres";
import type { Store } from "../../src/store/types";
import { AuditCapture } from "../fixtures/harness";
import { createTestDatabase, dropTestDatabase } from "./engines";
import { startWireCounter, type WireCounter } from "./wire";

/**
 * Issue 13: connection setups on PostgreSQL at 0.7× SQLite or better. What a setup costs
 * the store is round trips (each a wait on the network and on the server's scheduler), so
 * they are counted on the wire, through a relay in front of the real server, for what the
 * ticket route and the upgrade gate ask of the store in the order they ask it. One
 * connection in the pool, warmed up once: a statement is prepared on a connection the first
 * time it runs there, which costs one more round trip that a busy node has long paid.
 */
describe("round trips to PostgreSQL per connection setup", () => {
  let url: string;
  let wire: WireCounter;
  let store: Store;
  const clock = new ManualClock();
  const capture = new AuditCapture();
  const audit = createAuditLog({ stream: capture, hashKey: randomBytes(32), clock });

  beforeAll(async () => {
    url = await createTestDatabase();
    wire = await startWireCounter(url);
    store = await createPostgresStore({
      postgres: { url: wire.url, poolSize: 1, statementTimeoutMs: 5_000 },
      cipher: new TokenCipher([{ id: "k1", key: randomBytes(32) }]),
      audit,
      clock,
      randomBytes: secureRandomBytes,
      sessions: { idleTimeoutSeconds: 1800, absoluteTimeoutSeconds: 43200 },
      ticketTTLSeconds: 30,
    });
  });
  afterAll(async () => {
    await store?.close();
    await wire?.close();
    await audit.close();
    if (url !== undefined) await dropTestDatabase(url);
  });

  /** What `POST /auth/ws-ticket` and the upgrade ask of the store, each counted apart. */
  async function setup(token: string): Promise<{ ticketRequest: number; upgrade: number; close: number }> {
    wire.reset();
    const session = await store.sessions.validate(token, { slide: true });
    if (session === null) throw new Error("no session");
    await store.accounts.find(session.accountId, session.provider);
    const { ticket } = await store.tickets.issue(session.id);
    const ticketRequest = wire.roundTrips;

    wire.reset();
    const again = await store.sessions.validate(token, { slide: true });
    if (again === null) throw new Error("no session");
    await store.accounts.find(again.accountId, again.provider);
    const redeemed = await store.tickets.redeem(ticket);
    expect(redeemed).toEqual({ status: "valid", sessionId: session.id });
    const slot = await store.socketSlots.claim(session.id, 4);
    if (slot === null) throw new Error("no slot");
    const upgrade = wire.roundTrips;

    wire.reset();
    await store.socketSlots.release(slot);
    return { ticketRequest, upgrade, close: wire.roundTrips };
  }

  it("costs one round trip per store call: 3 for the ticket request, 4 for the upgrade, 1 for the close", async () => {
    const { account } = await store.accounts.findOrCreate({ issuer: "https://id.example", subject: "wire", displayName: "Wire" }, "demo");
    const { token } = await store.sessions.create({
      accountId: account.id,
      provider: "demo",
      userAgent: "test",
      tokens: { accessToken: "a", accessTokenExpiresAt: null, refreshToken: null, refreshTokenExpiresAt: null, idToken: null },
    });
    const cold = await setup(token);
    const warm = await setup(token);
    console.log(`round trips, cold connection ${JSON.stringify(cold)}, warm ${JSON.stringify(warm)}`);
    expect(warm).toEqual({ ticketRequest: 3, upgrade: 4, close: 1 });
  });
});

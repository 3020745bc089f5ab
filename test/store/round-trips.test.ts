import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { WebSocket } from "ws";
import { createAuditLog } from "../../src/audit/log";
import { ManualClock, secureRandomBytes } from "../../src/clock";
import { TokenCipher } from "../../src/crypto/token-cipher";
import { createPostgresStore } from "../../src/store/postgres";
import type { Store } from "../../src/store/types";
import { startRecordingBackend, type RecordingBackend } from "../fixtures/backend";
import { AuditCapture, startHarness, type Harness } from "../fixtures/harness";
import { mintTicket, openSocket } from "../fixtures/ws-client";
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
    const found = await store.sessions.authenticate(token, { slide: true });
    if (found === null) throw new Error("no session");
    const { ticket } = await store.tickets.issue(found.session.id);
    const ticketRequest = wire.roundTrips;

    wire.reset();
    const again = await store.sessions.authenticate(token, { slide: true });
    if (again === null) throw new Error("no session");
    const admission = await store.socketSlots.admit(ticket, again.session.id, 4);
    if (admission.status !== "admitted") throw new Error(`not admitted: ${admission.status}`);
    const upgrade = wire.roundTrips;

    wire.reset();
    await store.socketSlots.release(admission.slot);
    return { ticketRequest, upgrade, close: wire.roundTrips };
  }

  it("costs one round trip per store call: 2 for the ticket request, 2 for the upgrade, 1 for the close", async () => {
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
    expect(warm).toEqual({ ticketRequest: 2, upgrade: 2, close: 1 });
  });
});

/**
 * The same, counted through a whole Portcullis on PostgreSQL: what the ticket route, the
 * gate, a socket's close and an `/api` request really ask, whatever the code above them
 * does. One connection in the pool (the listener has its own, and says nothing meanwhile).
 */
describe("round trips to PostgreSQL per request, through the server", () => {
  let url: string;
  let wire: WireCounter;
  let backend: RecordingBackend;
  let h: Harness;
  let direct: postgres.Sql;

  beforeAll(async () => {
    url = await createTestDatabase();
    direct = postgres(url, { max: 1, onnotice: () => {} });
    wire = await startWireCounter(url);
    backend = await startRecordingBackend();
    h = await startHarness({ env: { DATABASE_URL: wire.url, DATABASE_POOL_SIZE: "1", GAME_BACKEND_URL: backend.url } });
  });
  afterAll(async () => {
    await h?.close();
    await backend?.close();
    await wire?.close();
    await direct?.end();
    if (url !== undefined) await dropTestDatabase(url);
  });

  async function counted(step: () => Promise<void>): Promise<number> {
    wire.reset();
    await step();
    return wire.roundTrips;
  }

  it("1 per /api request, 2 per ticket request, 2 per upgrade, 1 per close", async () => {
    const { token } = await h.login("wire-server");
    const measure = async (): Promise<{ api: number; ticketRequest: number; upgrade: number; close: number }> => {
      const api = await counted(async () => {
        // The default upstream: the session lookup, the tamper check, the assertion, the backend.
        const response = await fetch(`${h.origin}/api/game/profile`, { headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } });
        // The recording backend answers every HTTP request with 200 "backend".
        expect(await response.text()).toBe("backend");
      });
      let ticket = "";
      const ticketRequest = await counted(async () => {
        ticket = await mintTicket(h, token);
      });
      let ws: WebSocket | null = null;
      const upgrade = await counted(async () => {
        ws = await openSocket(h, ticket, { token });
      });
      const close = await counted(async () => {
        const socket = ws as unknown as WebSocket;
        socket.close();
        await new Promise((resolve) => socket.once("close", resolve));
        // The slot's release is not awaited by the close: wait until it has committed (asked
        // on a connection of our own, which the counter does not see).
        await vi.waitFor(async () => expect((await direct`SELECT count(*)::int AS n FROM live_sockets`)[0]?.n).toBe(0), { timeout: 2_000, interval: 5 });
      });
      return { api, ticketRequest, upgrade, close };
    };
    const cold = await measure();
    const warm = await measure();
    console.log(`round trips through the server, cold ${JSON.stringify(cold)}, warm ${JSON.stringify(warm)}`);
    expect(warm).toEqual({ api: 1, ticketRequest: 2, upgrade: 2, close: 1 });
  });
});

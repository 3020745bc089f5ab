import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import postgres from "postgres";
import type { Store } from "../../src/store/types";
import { SocketRegistry, type LiveConnection } from "../../src/ws/registry";
import { openEngine, type Engine, type EngineName } from "../store/engines";

/**
 * The registry against the real stores, with a connection that records what the registry
 * asks of it (the relay's sockets are proved in registry.test.ts; here the point is what the
 * registry decides). A session deleted where this node's bus cannot hear it — by the
 * operator's command on SQLite, by another node whose event was lost on PostgreSQL — must
 * still close its sockets: at the recheck, and on PostgreSQL at the resync (SECURITY.md E27,
 * issue 13).
 */
class RecordingConnection implements LiveConnection {
  readonly closes: Array<{ code: number; reason: string }> = [];
  heartbeats = 0;
  terminated = false;
  readonly lastMessageAt = 0;
  private settle: () => void = () => {};
  readonly ended = new Promise<void>((resolve) => {
    this.settle = resolve;
  });

  constructor(
    readonly sessionId: string,
    readonly accountId: string,
  ) {}

  close(code: number, reason: string): void {
    this.closes.push({ code, reason });
  }

  heartbeat(): void {
    this.heartbeats += 1;
  }

  terminate(): void {
    this.terminated = true;
  }

  /** The peer answered the close. */
  end(): void {
    this.settle();
  }
}

let serial = 0;

async function newSession(store: Store): Promise<{ accountId: string; id: string }> {
  serial += 1;
  const { account } = await store.accounts.findOrCreate({ issuer: "https://id.example", subject: `player-${serial}`, displayName: `Player ${serial}` }, "demo");
  const { session } = await store.sessions.create({
    accountId: account.id,
    provider: "demo",
    userAgent: "test",
    tokens: { accessToken: "a", accessTokenExpiresAt: null, refreshToken: null, refreshTokenExpiresAt: null, idToken: null },
  });
  return { accountId: account.id, id: session.id };
}

describe.each<EngineName>(["sqlite", "postgres"])("the registry on the %s store", (engineName) => {
  let engine: Engine;
  let store: Store;
  beforeAll(async () => {
    engine = await openEngine(engineName);
    store = await engine.node({ backoff: { initialMs: 10, maxMs: 50 } });
  });
  afterAll(async () => {
    await engine?.close();
  });

  it("closes with 4401 the sockets of a session deleted without an event, at the recheck", async () => {
    const registry = new SocketRegistry(store.events, store.sessions);
    const gone = await newSession(store);
    const kept = await newSession(store);
    const doomed = new RecordingConnection(gone.id, gone.accountId);
    const alive = new RecordingConnection(kept.id, kept.accountId);
    registry.add(doomed);
    registry.add(alive);
    await engine.exec(`DELETE FROM sessions WHERE id = '${gone.id}'`);
    await registry.recheck();
    expect(doomed.closes).toEqual([{ code: 4401, reason: "session ended" }]);
    expect(alive.closes).toEqual([]);
    registry.dispose();
  });

  it("closes with 4401 \"session ended\" on the bus's session-ended event, and no longer after dispose()", async () => {
    const registry = new SocketRegistry(store.events, store.sessions);
    const first = await newSession(store);
    const second = await newSession(store);
    const one = new RecordingConnection(first.id, first.accountId);
    const two = new RecordingConnection(second.id, second.accountId);
    registry.add(one);
    registry.add(two);
    await store.sessions.end(first.id, first.accountId, "logout");
    await vi.waitFor(() => expect(one.closes).toEqual([{ code: 4401, reason: "session ended" }]), { timeout: 1_000, interval: 5 });
    registry.dispose();
    await store.sessions.end(second.id, second.accountId, "logout");
    // The bus delivers in order: once a later listener hears it, the disposed registry would have too.
    const heard: string[] = [];
    const stop = store.events.subscribe((event) => heard.push(event.sessionId));
    const third = await newSession(store);
    await store.sessions.end(third.id, third.accountId, "logout");
    await vi.waitFor(() => expect(heard).toContain(third.id), { timeout: 1_000, interval: 5 });
    stop();
    expect(two.closes).toEqual([]);
  });

  it.runIf(engineName === "postgres")("rechecks every socket when the bus resyncs after losing the database", async () => {
    const registry = new SocketRegistry(store.events, store.sessions);
    const gone = await newSession(store);
    const doomed = new RecordingConnection(gone.id, gone.accountId);
    registry.add(doomed);
    // Deleted with no event at all; no periodic recheck runs (start() was not called): only
    // the resync that follows the listener's reconnect can find it.
    await engine.exec(`DELETE FROM sessions WHERE id = '${gone.id}'`);
    expect(doomed.closes).toEqual([]);
    const admin = postgres(engine.url ?? "", { max: 1, onnotice: () => {} });
    try {
      // This file's database only: other test files' listeners are not ours to cut.
      await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'portcullis-listener-%' AND datname = current_database()`;
    } finally {
      await admin.end({ timeout: 1 });
    }
    await vi.waitFor(() => expect(doomed.closes).toEqual([{ code: 4401, reason: "session ended" }]), { timeout: 10_000, interval: 10 });
    registry.dispose();
  });

  it("counts its sockets, and closes an account's sockets across its sessions and no one else's", async () => {
    const registry = new SocketRegistry(store.events, store.sessions);
    const phone = await newSession(store);
    const laptop = await store.sessions.create({
      accountId: phone.accountId,
      provider: "demo",
      userAgent: "test",
      tokens: { accessToken: "a", accessTokenExpiresAt: null, refreshToken: null, refreshTokenExpiresAt: null, idToken: null },
    });
    const stranger = await newSession(store);
    const sockets = [
      new RecordingConnection(phone.id, phone.accountId),
      new RecordingConnection(laptop.session.id, phone.accountId),
      new RecordingConnection(laptop.session.id, phone.accountId),
    ];
    const other = new RecordingConnection(stranger.id, stranger.accountId);
    for (const socket of [...sockets, other]) registry.add(socket);
    expect(registry.size).toBe(4);
    registry.closeAccount(phone.accountId, 4401, "account disabled");
    expect(sockets.map((s) => s.closes)).toEqual(sockets.map(() => [{ code: 4401, reason: "account disabled" }]));
    expect(other.closes).toEqual([]);
    registry.remove(other);
    expect(registry.size).toBe(3);
    registry.dispose();
  });
});

describe("the registry's timers and shutdown", () => {
  let engine: Engine;
  let store: Store;
  beforeAll(async () => {
    engine = await openEngine("sqlite");
    store = await engine.node();
  });
  afterAll(async () => {
    await engine?.close();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("runs the heartbeat on its interval, once per tick after a second start(), and not after stop()", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const registry = new SocketRegistry(store.events, store.sessions);
    const { id, accountId } = await newSession(store);
    const socket = new RecordingConnection(id, accountId);
    registry.add(socket);
    registry.start({ heartbeatMs: 100, recheckMs: 3_600_000 });
    registry.start({ heartbeatMs: 100, recheckMs: 3_600_000 });
    vi.advanceTimersByTime(100);
    expect(socket.heartbeats).toBe(1);
    registry.stop();
    vi.advanceTimersByTime(1_000);
    expect(socket.heartbeats).toBe(1);
    registry.dispose();
  });

  it("spreads the heartbeat over its interval: each socket once per interval, a tenth of them per tick (issue 14)", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const registry = new SocketRegistry(store.events, store.sessions);
    const { id, accountId } = await newSession(store);
    const sockets = Array.from({ length: 40 }, () => new RecordingConnection(id, accountId));
    for (const socket of sockets) registry.add(socket);
    registry.start({ heartbeatMs: 1_000, recheckMs: 3_600_000 });
    vi.advanceTimersByTime(100);
    expect(sockets.filter((s) => s.heartbeats === 1)).toHaveLength(4);
    expect(sockets.filter((s) => s.heartbeats > 1)).toHaveLength(0);
    vi.advanceTimersByTime(900);
    expect(sockets.map((s) => s.heartbeats)).toEqual(sockets.map(() => 1));
    vi.advanceTimersByTime(1_000);
    expect(sockets.map((s) => s.heartbeats)).toEqual(sockets.map(() => 2));
    registry.stop();
    registry.dispose();
  });

  it("closeAll waits for the closing handshakes, up to the grace period, then drops every socket", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const registry = new SocketRegistry(store.events, store.sessions);
    const { id, accountId } = await newSession(store);
    const polite = new RecordingConnection(id, accountId);
    const mute = new RecordingConnection(id, accountId);
    registry.add(polite);
    registry.add(mute);
    let done = false;
    const closing = registry.closeAll(1001, "server shutting down", { graceMs: 50 }).then(() => (done = true));
    expect([polite.closes, mute.closes]).toEqual([[{ code: 1001, reason: "server shutting down" }], [{ code: 1001, reason: "server shutting down" }]]);
    await vi.advanceTimersByTimeAsync(49);
    expect(done).toBe(false);
    expect(polite.terminated).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await closing;
    expect([polite.terminated, mute.terminated]).toEqual([true, true]);

    // Every peer answers: no need to wait out the grace period (1 s by default).
    const again = new SocketRegistry(store.events, store.sessions);
    const quick = new RecordingConnection(id, accountId);
    again.add(quick);
    let finished = false;
    const second = again.closeAll(1001, "bye").then(() => (finished = true));
    await vi.advanceTimersByTimeAsync(10);
    expect(finished).toBe(false);
    expect(quick.terminated).toBe(false);
    quick.end();
    await second;
    expect(quick.terminated).toBe(true);
    // A peer that never answers holds it for the default grace of 1 s, not more.
    const slow = new RecordingConnection(id, accountId);
    again.remove(quick);
    again.add(slow);
    let over = false;
    const third = again.closeAll(1001, "bye").then(() => (over = true));
    await vi.advanceTimersByTimeAsync(999);
    expect(over).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await third;
    registry.dispose();
    again.dispose();
  });
});

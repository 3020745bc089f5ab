import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebSocket } from "ws";
import { startRecordingBackend, type RecordingBackend } from "../fixtures/backend";
import { startHarness, type Harness } from "../fixtures/harness";
import { closeOf, mintTicket, nextMessage, openSocket } from "../fixtures/ws-client";

describe("sockets end with their session (SECURITY.md E27, CONTRACT.md close codes)", () => {
  let backend: RecordingBackend;
  let h: Harness;
  beforeAll(async () => {
    backend = await startRecordingBackend();
    h = await startHarness({ env: { GAME_BACKEND_URL: backend.url } });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
  });

  async function socketFor(token: string): Promise<WebSocket> {
    return openSocket(h, await mintTicket(h, token), { token });
  }

  /** Resolves with the close and how long it took, failing past 1 s (the contract's bound). */
  async function closedWithin1s(ws: WebSocket, action: () => Promise<unknown>): Promise<{ code: number; ms: number }> {
    const started = performance.now();
    const closed = closeOf(ws);
    await action();
    const result = await Promise.race([
      closed,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("socket still open after 1 s")), 1000)),
    ]);
    return { code: result.code, ms: performance.now() - started };
  }

  it("logout in one tab closes that session's sockets with 4401 within 1 s, and not another session's", async () => {
    const tabA = await h.login("two-tabs");
    const other = await h.login("two-tabs");
    const a1 = await socketFor(tabA.token);
    const a2 = await socketFor(tabA.token);
    const b = await socketFor(other.token);
    const backendCloses = backend.closes.length;
    const second = closeOf(a2);
    const { code } = await closedWithin1s(a1, () =>
      tabA.agent.fetch(`${h.origin}/auth/logout`, { method: "POST", headers: h.csrf() }),
    );
    expect(code).toBe(4401);
    expect((await second).code).toBe(4401);
    b.send("alive?");
    expect((await nextMessage(b)).data.toString()).toBe("alive?");
    // Both backend sockets of the ended session were closed too.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(backend.closes.slice(backendCloses).filter((c) => c.code === 4401)).toHaveLength(2);
    b.close();
  });

  it("DELETE /auth/sessions/:id closes the revoked session's sockets with 4401 within 1 s", async () => {
    const laptop = await h.login("revoking");
    const phone = await h.login("revoking");
    const phoneSocket = await socketFor(phone.token);
    const laptopSocket = await socketFor(laptop.token);
    const [phoneId] = phone.token.split(".");
    const { code } = await closedWithin1s(phoneSocket, () =>
      laptop.agent.fetch(`${h.origin}/auth/sessions/${phoneId}`, { method: "DELETE", headers: h.csrf() }),
    );
    expect(code).toBe(4401);
    expect(laptopSocket.readyState).toBe(1);
    laptopSocket.close();
  });

  it("DELETE /auth/sessions closes every other session's sockets", async () => {
    const keep = await h.login("purge-sockets");
    const drop = await h.login("purge-sockets");
    const dropSocket = await socketFor(drop.token);
    const { code } = await closedWithin1s(dropSocket, () =>
      keep.agent.fetch(`${h.origin}/auth/sessions`, { method: "DELETE", headers: h.csrf() }),
    );
    expect(code).toBe(4401);
  });

  it("closes the sockets of a session that expires while they are open, at the periodic recheck", async () => {
    const { token } = await h.login("expires-live");
    const ws = await socketFor(token);
    h.clock.advance(1800 * 1000 + 1);
    const { code } = await closedWithin1s(ws, async () => h.bff.registry.recheck());
    expect(code).toBe(4401);
    expect(h.audit.named("session.expired").length).toBeGreaterThan(0);
  });

  it("indexes sockets by account across that account's sessions", async () => {
    const first = await h.login("many-devices");
    const second = await h.login("many-devices");
    const a = await socketFor(first.token);
    const b = await socketFor(second.token);
    const [firstId = ""] = first.token.split(".");
    const [relay] = h.bff.registry.connectionsOf(firstId);
    expect(relay).toBeDefined();
    expect(h.bff.registry.countForAccount(relay?.accountId ?? "")).toBe(2);
    expect(h.bff.registry.countForSession(firstId)).toBe(1);
    a.close();
    b.close();
    await Promise.all([closeOf(a), closeOf(b)]);
    await relay?.ended;
    expect(h.bff.registry.countForAccount(relay?.accountId ?? "")).toBe(0);
  });

  it("audits every close with its code", async () => {
    const { token } = await h.login("audit-close");
    const ws = await socketFor(token);
    const closed = closeOf(ws);
    ws.close(4100, "bye");
    await closed;
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(h.audit.named("ws.closed").some((e) => e.code === 4100)).toBe(true);
  });
});

describe("heartbeat and shutdown", () => {
  it("terminates a client that stops answering pings, and closes everyone with 1001 on shutdown", async () => {
    const backend = await startRecordingBackend();
    const h = await startHarness({ env: { GAME_BACKEND_URL: backend.url }, portcullis: { ws: { heartbeatMs: 100 } } });
    try {
      const mute = await h.login("mute");
      const silent = await openSocket(h, await mintTicket(h, mute.token), { token: mute.token, autoPong: false });
      const dropped = closeOf(silent);
      const talker = await h.login("talker");
      const healthy = await openSocket(h, await mintTicket(h, talker.token), { token: talker.token });
      // Two heartbeats: the first pings, the second finds no pong and terminates.
      expect((await dropped).code).toBe(1006);
      expect(healthy.readyState).toBe(1);
      const shutdown = closeOf(healthy);
      await h.stop();
      expect((await shutdown).code).toBe(1001);
    } finally {
      await h.close();
      await backend.close();
    }
  });
});

describe("shutdown", () => {
  it("does not wait for a client that never reads: it is dropped after the grace period", async () => {
    const backend = await startRecordingBackend();
    const h = await startHarness({ env: { GAME_BACKEND_URL: backend.url } });
    try {
      const { token } = await h.login("never-reads");
      const ws = await openSocket(h, await mintTicket(h, token), { token });
      const [sessionId = ""] = token.split(".");
      const [relay] = h.bff.registry.connectionsOf(sessionId);
      // The browser stops reading: the BFF's 1001 close frame is never answered.
      ws.pause();
      await h.stop();
      await relay?.ended;
      expect(h.bff.registry.size).toBe(0);
    } finally {
      await h.close();
      await backend.close();
    }
  });
});

// Moves its own clock by more than an hour, past the identity provider's ID tokens.
describe("game traffic is activity", () => {
  it("counts game messages as activity: a player who only plays is not idle, one who stops is", async () => {
    const backend = await startRecordingBackend();
    const h = await startHarness({ env: { GAME_BACKEND_URL: backend.url } });
    try {
      const { token } = await h.login("only-plays");
      const ws = await openSocket(h, await mintTicket(h, token), { token });
      for (let minute = 0; minute < 40; minute += 10) {
        h.clock.advance(10 * 60_000);
        ws.send("still playing");
        await nextMessage(ws);
        h.bff.registry.recheck();
        expect(ws.readyState).toBe(1);
      }
      expect((await fetch(`${h.origin}/auth/me?slide=false`, { headers: { cookie: `__Host-Http-session=${token}` } })).status).toBe(200);
      h.clock.advance(1800 * 1000 + 1);
      const closed = closeOf(ws);
      h.bff.registry.recheck();
      expect((await closed).code).toBe(4401);
    } finally {
      await h.close();
      await backend.close();
    }
  });
});

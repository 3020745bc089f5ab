import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";

const IDLE_MS = 1800 * 1000;
const THROTTLE_MS = 60_000;

/**
 * The two session-store calls the live-socket registry makes on every recheck (SECURITY.md
 * A4, E27): `findLive` decides whether a socket's session still lives, and `touch` lets game
 * traffic count as activity. Driven on the real SQLite store with the harness's clock.
 */
describe("the socket recheck's view of a session (SECURITY.md A4, E27)", () => {
  let h: Harness;
  let accountId: string;
  beforeAll(async () => {
    h = await startHarness();
    const { token } = await h.login("live-checker");
    const [id] = token.split(".");
    accountId = (h.bff.db.sqlite.prepare("SELECT account_id AS a FROM sessions WHERE id = ?").get(id) as { a: string }).a;
  });
  afterAll(async () => {
    await h.close();
  });

  function newSession(refreshTokenExpiresAt: number | null = null): string {
    const { session } = h.bff.sessions.create({
      accountId,
      provider: "demo",
      userAgent: "recheck test",
      tokens: { accessToken: "a", accessTokenExpiresAt: null, refreshToken: null, refreshTokenExpiresAt, idToken: null },
    });
    return session.id;
  }
  const lastSeen = (id: string): number | undefined =>
    (h.bff.db.sqlite.prepare("SELECT last_seen_at AS t FROM sessions WHERE id = ?").get(id) as { t: number } | undefined)?.t;

  describe("#findLive", () => {
    it("finds a session until its idle deadline without sliding it, and ends it at the deadline itself", async () => {
      const id = newSession();
      const created = lastSeen(id);
      h.clock.advance(IDLE_MS - 1);
      expect(h.bff.sessions.findLive(id)?.id).toBe(id);
      expect(lastSeen(id)).toBe(created);
      const ended: string[] = [];
      const stop = h.bff.events.onEnded((event) => ended.push(`${event.reason}:${event.sessionId}`));
      h.clock.advance(1);
      expect(h.bff.sessions.findLive(id)).toBeNull();
      stop();
      expect(ended).toEqual([`expired:${id}`]);
      expect(lastSeen(id)).toBeUndefined();
      expect(h.audit.named("session.expired").some((e) => e.session === h.bff.audit.sessionRef(id))).toBe(true);
    });

    it("ends a session at its absolute expiry, though it is far from idle", async () => {
      // A refresh token that lives two minutes caps the session there (SECURITY.md A5).
      const id = newSession(h.clock.now() + 120_000);
      h.clock.advance(119_999);
      expect(h.bff.sessions.findLive(id)?.id).toBe(id);
      h.clock.advance(1);
      expect(h.bff.sessions.findLive(id)).toBeNull();
      expect(lastSeen(id)).toBeUndefined();
    });

    it("finds nothing for an unknown id", async () => {
      expect(h.bff.sessions.findLive("a".repeat(26))).toBeNull();
    });
  });

  describe("#touch", () => {
    it("slides the idle window to the time of the game traffic, a minute or more after the last slide", async () => {
      const id = newSession();
      const created = lastSeen(id) ?? 0;
      h.clock.advance(THROTTLE_MS - 1);
      h.bff.sessions.touch(id, h.clock.now());
      expect(lastSeen(id)).toBe(created);
      h.clock.advance(1);
      h.bff.sessions.touch(id, h.clock.now());
      expect(lastSeen(id)).toBe(created + THROTTLE_MS);
    });

    it("ignores a time in the future: traffic cannot be dated forward to keep a session alive", async () => {
      const id = newSession();
      const created = lastSeen(id);
      h.clock.advance(THROTTLE_MS);
      h.bff.sessions.touch(id, h.clock.now() + 10 * 60_000);
      expect(lastSeen(id)).toBe(created);
    });

    it("does not revive a session that had already gone idle", async () => {
      const id = newSession();
      h.clock.advance(IDLE_MS);
      h.bff.sessions.touch(id, h.clock.now());
      expect(h.bff.sessions.findLive(id)).toBeNull();
    });
  });

  describe("#create and #validate", () => {
    it("audits the new session under its keyed reference, with its account (SECURITY.md G32)", async () => {
      const id = newSession();
      expect(h.audit.named("session.created").at(-1)).toMatchObject({ session: h.bff.audit.sessionRef(id), accountId, provider: "demo" });
    });

    it("slides the idle window on a request exactly one minute after the last slide, not a millisecond sooner", async () => {
      const { session, token } = h.bff.sessions.create({
        accountId,
        provider: "demo",
        userAgent: "slide test",
        tokens: { accessToken: "a", accessTokenExpiresAt: null, refreshToken: null, refreshTokenExpiresAt: null, idToken: null },
      });
      h.clock.advance(THROTTLE_MS - 1);
      expect(h.bff.sessions.validate(token, { slide: true })?.lastSeenAt).toBe(session.lastSeenAt);
      h.clock.advance(1);
      expect(h.bff.sessions.validate(token, { slide: true })?.lastSeenAt).toBe(session.lastSeenAt + THROTTLE_MS);
      expect(lastSeen(session.id)).toBe(session.lastSeenAt + THROTTLE_MS);
    });
  });

  describe("a session that ends with an unreadable refresh token (SECURITY.md D17, G32)", () => {
    it("still ends and audits the decryption failure", async () => {
      const { session } = h.bff.sessions.create({
        accountId,
        provider: "demo",
        userAgent: "tampered",
        tokens: { accessToken: "a", accessTokenExpiresAt: null, refreshToken: "r-tampered", refreshTokenExpiresAt: null, idToken: null },
      });
      const sealed = (h.bff.db.sqlite.prepare("SELECT refresh_token AS r FROM sessions WHERE id = ?").get(session.id) as { r: string }).r;
      const flipped = sealed.slice(0, -2) + (sealed.at(-2) === "A" ? "B" : "A") + sealed.at(-1);
      h.bff.db.sqlite.prepare("UPDATE sessions SET refresh_token = ? WHERE id = ?").run(flipped, session.id);
      expect(h.bff.sessions.end(session.id, accountId, "logout")).toBe(true);
      await h.bff.sessions.revocationsSettled();
      expect(lastSeen(session.id)).toBeUndefined();
      expect(h.audit.named("crypto.decrypt.failed").at(-1)).toMatchObject({
        session: h.bff.audit.sessionRef(session.id),
        reason: "refresh token at session end",
      });
    });
  });

  describe("#list", () => {
    it("lists no session past its idle deadline, though the sweeper has not deleted it yet", async () => {
      const idle = newSession();
      h.clock.advance(IDLE_MS);
      const live = newSession();
      const listed = h.bff.sessions.list(accountId, live).map((s) => [s.id, s.current]);
      expect(listed).toContainEqual([live, true]);
      expect(listed.map(([id]) => id)).not.toContain(idle);
      expect(lastSeen(idle)).toBeDefined();
    });
  });

  describe("#adoptEnded", () => {
    it("announces a session another process deleted: audited, and its sockets told to close (SECURITY.md E27, G32)", async () => {
      const id = newSession();
      h.bff.db.sqlite.prepare("DELETE FROM sessions WHERE id = ?").run(id);
      const ended: string[] = [];
      const stop = h.bff.events.onEnded((event) => ended.push(`${event.reason}:${event.sessionId}`));
      h.bff.sessions.adoptEnded({ id, accountId, provider: "demo", refreshToken: null }, "operator");
      stop();
      expect(ended).toEqual([`operator:${id}`]);
      expect(h.audit.named("session.revoked").at(-1)).toMatchObject({ session: h.bff.audit.sessionRef(id), reason: "operator" });
    });
  });
});

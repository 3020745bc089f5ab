import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { EndedGrant, ProviderTokens } from "../../src/auth/session";
import type { SessionEnded } from "../../src/auth/session-events";
import { DecryptionError } from "../../src/crypto/token-cipher";
import type { Store } from "../../src/store/types";
import { openEngine, type Engine, type EngineName } from "./engines";

/**
 * The store contract (STYLE.md 13), run unchanged against both engines. On PostgreSQL each
 * "node" is its own pool and listening connection on one database, as separate processes
 * would be; on SQLite the process is the one node, so its "nodes" share the file, the bus
 * and the lease table.
 */

const MINUTE = 60_000;

function tokens(access: string, extra: Partial<ProviderTokens> = {}): ProviderTokens {
  return { accessToken: access, accessTokenExpiresAt: null, refreshToken: `refresh-${access}`, refreshTokenExpiresAt: null, idToken: null, ...extra };
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe.each<EngineName>(["sqlite", "postgres"])("the %s store", (engineName) => {
  let engine: Engine;
  let a: Store;
  let b: Store;
  let c: Store;
  let serial = 0;

  beforeAll(async () => {
    engine = await openEngine(engineName);
    a = await engine.node();
    b = await engine.node();
    c = await engine.node();
  });
  afterAll(async () => {
    await engine?.close();
  });

  /** A fresh account and a session of it, created on node `on`. */
  async function newSession(on: Store = a, extra: Partial<ProviderTokens> = {}): Promise<{ accountId: string; id: string; token: string }> {
    serial += 1;
    const { account } = await on.accounts.findOrCreate({ issuer: "https://id.example", subject: `user-${serial}`, displayName: `User ${serial}` }, "demo");
    const { session, token } = await on.sessions.create({ accountId: account.id, provider: "demo", userAgent: "test", tokens: tokens(`access-${serial}`, extra) });
    return { accountId: account.id, id: session.id, token };
  }

  describe("sessions", () => {
    it("creates a session whose token validates on every node, and refuses a forged secret or a malformed token", async () => {
      const { id, token } = await newSession(a);
      expect(token).toMatch(/^[a-z2-7]{26}\.[a-z2-7]{40}$/);
      expect((await b.sessions.validate(token, { slide: false }))?.id).toBe(id);
      const forged = `${id}.${"a".repeat(40)}`;
      expect(await c.sessions.validate(forged, { slide: false })).toBeNull();
      expect(await c.sessions.validate(`${token}x`, { slide: false })).toBeNull();
      // A forged secret does not end the real session.
      expect((await a.sessions.validate(token, { slide: false }))?.id).toBe(id);
    });

    it("slides the idle window at most once a minute, and only when asked", async () => {
      const { token } = await newSession(a);
      const created = (await a.sessions.validate(token, { slide: false }))?.lastSeenAt ?? 0;
      engine.clock.advance(30_000);
      expect((await a.sessions.validate(token, { slide: true }))?.lastSeenAt).toBe(created);
      engine.clock.advance(31_000);
      expect((await a.sessions.validate(token, { slide: false }))?.lastSeenAt).toBe(created);
      const slid = await b.sessions.validate(token, { slide: true });
      expect(slid?.lastSeenAt).toBe(engine.clock.now());
      expect((await c.sessions.validate(token, { slide: false }))?.lastSeenAt).toBe(engine.clock.now());
      expect(slid?.idleExpiresAt).toBe(engine.clock.now() + 30 * MINUTE);
    });

    it("ends a session idle for 30 minutes when it is next seen, announcing it as expired", async () => {
      const { id, token } = await newSession(a);
      const heard: SessionEnded[] = [];
      const stop = a.events.subscribe((event) => heard.push(event));
      engine.clock.advance(30 * MINUTE);
      expect(await a.sessions.validate(token, { slide: true })).toBeNull();
      stop();
      expect(heard.filter((e) => e.sessionId === id)).toEqual([expect.objectContaining({ sessionId: id, reason: "expired" })]);
      expect(await b.sessions.findLive(id)).toBeNull();
      expect(await b.sessions.version(id)).toBeNull();
    });

    it("ends a session at its absolute timeout however active it is", async () => {
      const { id, token } = await newSession(a);
      for (let elapsed = 0; elapsed < 12 * 60 * MINUTE - 20 * MINUTE; elapsed += 20 * MINUTE) {
        engine.clock.advance(20 * MINUTE);
        expect(await a.sessions.validate(token, { slide: true }), `after ${elapsed / MINUTE + 20} min`).not.toBeNull();
      }
      engine.clock.advance(20 * MINUTE);
      expect(await b.sessions.validate(token, { slide: true })).toBeNull();
      expect(await a.sessions.findLive(id)).toBeNull();
    });

    it("counts socket activity with touch, never reviving a session already idle", async () => {
      const { id, token } = await newSession(a);
      engine.clock.advance(10 * MINUTE);
      await b.sessions.touch(id, engine.clock.now());
      expect((await a.sessions.findLive(id))?.lastSeenAt).toBe(engine.clock.now());
      const active = engine.clock.now();
      engine.clock.advance(31 * MINUTE);
      // Activity stamped after the session went idle must not bring it back.
      await b.sessions.touch(id, engine.clock.now());
      expect(await a.sessions.validate(token, { slide: false })).toBeNull();
      expect(active).toBeLessThan(engine.clock.now());
    });

    it("lists an account's live sessions, marking the current one, and revokes one or all others", async () => {
      const first = await newSession(a);
      const second = await b.sessions.create({ accountId: first.accountId, provider: "demo", userAgent: "tab 2", tokens: tokens("x") });
      const third = await c.sessions.create({ accountId: first.accountId, provider: "demo", userAgent: "tab 3", tokens: tokens("y") });
      const listed = await b.sessions.list(first.accountId, second.session.id);
      expect(listed.map((s) => [s.id, s.current])).toEqual([
        [first.id, false],
        [second.session.id, true],
        [third.session.id, false],
      ]);
      expect(await c.sessions.revoke("someone-else", first.id, "revoked")).toBe(false);
      expect(await c.sessions.revoke(first.accountId, first.id, "revoked")).toBe(true);
      expect(await a.sessions.revoke(first.accountId, first.id, "revoked")).toBe(false);
      expect(await a.sessions.revokeOthers(first.accountId, second.session.id)).toBe(1);
      expect((await c.sessions.list(first.accountId, "")).map((s) => s.id)).toEqual([second.session.id]);
    });

    it("sweeps expired sessions", async () => {
      const { id } = await newSession(a);
      engine.clock.advance(31 * MINUTE);
      expect(await b.sessions.sweepExpired()).toBeGreaterThanOrEqual(1);
      expect(await c.sessions.version(id)).toBeNull();
    });

    it("seals provider tokens and swaps them by compare-and-swap on version: of two writers with one version, one wins", async () => {
      const { id } = await newSession(a, { refreshToken: "r0", idToken: "id0" });
      expect(await b.sessions.readTokens(id)).toEqual({ accessToken: `access-${serial}`, accessTokenExpiresAt: null, refreshToken: "r0", refreshTokenExpiresAt: null, idToken: "id0" });
      const version = await a.sessions.version(id);
      expect(version).toBe(0);
      const cap = engine.clock.now() + 5 * MINUTE;
      const outcomes = await Promise.all([
        a.sessions.replaceTokens(id, 0, tokens("from-a", { refreshTokenExpiresAt: cap })),
        b.sessions.replaceTokens(id, 0, tokens("from-b", { refreshTokenExpiresAt: cap })),
      ]);
      expect(outcomes.filter(Boolean)).toHaveLength(1);
      expect(await c.sessions.version(id)).toBe(1);
      const winner = outcomes[0] === true ? "from-a" : "from-b";
      expect((await c.sessions.readTokens(id))?.accessToken).toBe(winner);
      // The refresh token's lifetime caps the session.
      expect((await c.sessions.findLive(id))?.expiresAt).toBe(cap);
    });

    it("hands every ended session's refresh token to the revoker, except one the provider refused", async () => {
      const revoked: EndedGrant[] = [];
      for (const node of [a, b, c]) node.sessions.setGrantRevoker(async (grant) => void revoked.push(grant));
      const logout = await newSession(a, { refreshToken: "rt-logout" });
      const refused = await newSession(a, { refreshToken: "rt-refused" });
      expect(await b.sessions.end(logout.id, logout.accountId, "logout")).toBe(true);
      expect(await b.sessions.end(refused.id, refused.accountId, "refresh_refused")).toBe(true);
      await b.sessions.revocationsSettled();
      expect(revoked).toEqual([{ sessionId: logout.id, provider: "demo", refreshToken: "rt-logout" }]);
      for (const node of [a, b, c]) node.sessions.setGrantRevoker(async () => {});
    });
  });

  describe("authenticate: the session and its account in one lookup", () => {
    it("answers as validate and accounts.find do together, on any node, and slides the same way", async () => {
      const { id, accountId, token } = await newSession(a);
      const found = await b.sessions.authenticate(token, { slide: false });
      expect(found).toEqual({
        session: await c.sessions.validate(token, { slide: false }),
        account: { id: accountId, displayName: `User ${serial}`, providerSubject: `user-${serial}` },
      });
      expect(found?.session.id).toBe(id);
      engine.clock.advance(MINUTE);
      expect((await c.sessions.authenticate(token, { slide: false }))?.session.lastSeenAt).toBe(found?.session.lastSeenAt);
      expect((await c.sessions.authenticate(token, { slide: true }))?.session.lastSeenAt).toBe(engine.clock.now());
      expect((await a.sessions.validate(token, { slide: false }))?.lastSeenAt).toBe(engine.clock.now());
    });

    it("refuses a forged secret, a malformed token, an expired session (ending it) and a blocked account's session", async () => {
      const { id, token } = await newSession(a);
      expect(await b.sessions.authenticate(`${id}.${"a".repeat(40)}`, { slide: true })).toBeNull();
      expect(await b.sessions.authenticate(`${token}x`, { slide: true })).toBeNull();
      expect(await b.sessions.authenticate(token, { slide: true })).not.toBeNull();

      const blocked = await newSession(b);
      await engine.exec(`INSERT INTO account_blocks (account_id, blocked_at, blocked_by, reason) VALUES ('${blocked.accountId}', 0, 'op', 'test')`);
      expect(await c.sessions.authenticate(blocked.token, { slide: true })).toBeNull();
      // Refused, not ended: the block is what refuses it.
      expect(await c.sessions.validate(blocked.token, { slide: false })).not.toBeNull();

      engine.clock.advance(30 * MINUTE);
      expect(await c.sessions.authenticate(token, { slide: true })).toBeNull();
      expect(await a.sessions.findLive(id)).toBeNull();
    });

    it("finds the account's subject at the session's own provider", async () => {
      const { account } = await a.accounts.findOrCreate({ issuer: "https://b.example", subject: "beta-sub", displayName: "Two Providers" }, "beta");
      const { token } = await b.sessions.create({ accountId: account.id, provider: "gamma", userAgent: "test", tokens: tokens("gamma") });
      expect((await c.sessions.authenticate(token, { slide: false }))?.account).toEqual({ id: account.id, displayName: "Two Providers", providerSubject: null });
    });
  });

  describe("the provider-token tamper check (SECURITY.md D17)", () => {
    // Each of the three sealed columns: a cache of intact rows that left one out would pass it.
    it.each(["access_token", "refresh_token", "id_token"])(
      "passes intact tokens, and throws on a changed %s ciphertext even after the same session passed",
      async (column) => {
        const { id, token } = await newSession(a, { idToken: "id-token" });
        const first = await b.sessions.authenticate(token, { slide: false });
        await b.sessions.checkTokens(first!.session);
        // The same node again: the ciphertexts are remembered as intact, so this is where a cache keyed by session alone would pass.
        const again = await b.sessions.authenticate(token, { slide: false });
        await b.sessions.checkTokens(again!.session);
        const row = await c.sessions.readTokens(id);
        expect(row?.idToken).toBe("id-token");
        // One bit of the sealed token flipped in the database (its last base64url character changed).
        await engine.exec(
          `UPDATE sessions SET ${column} = substr(${column}, 1, length(${column}) - 1) || CASE WHEN substr(${column}, length(${column})) = 'A' THEN 'B' ELSE 'A' END WHERE id = '${id}'`,
        );
        const tampered = await b.sessions.authenticate(token, { slide: false });
        await expect(b.sessions.checkTokens(tampered!.session)).rejects.toThrow(DecryptionError);
        // And on a node that never saw the session.
        await expect(c.sessions.checkTokens((await c.sessions.authenticate(token, { slide: false }))!.session)).rejects.toThrow(DecryptionError);
      },
    );
  });

  describe("accounts", () => {
    it("keys accounts by (issuer, subject): the same subject at two issuers is two people", async () => {
      const atA = await a.accounts.findOrCreate({ issuer: "https://a.example", subject: "sam", displayName: "Sam A" }, "alpha");
      const again = await b.accounts.findOrCreate({ issuer: "https://a.example", subject: "sam", displayName: "Sam Renamed" }, "alpha");
      const atB = await c.accounts.findOrCreate({ issuer: "https://b.example", subject: "sam", displayName: "Sam B" }, "beta");
      expect(atA.created).toBe(true);
      expect(again).toEqual({ account: { id: atA.account.id, displayName: "Sam Renamed", providerSubject: "sam" }, created: false });
      expect(atB.account.id).not.toBe(atA.account.id);
      expect(await c.accounts.find(atA.account.id, "alpha")).toEqual({ id: atA.account.id, displayName: "Sam Renamed", providerSubject: "sam" });
      expect(await c.accounts.find(atA.account.id, "beta")).toEqual({ id: atA.account.id, displayName: "Sam Renamed", providerSubject: null });
      expect(await a.accounts.find("nobody", "alpha")).toBeNull();
    });

    it("makes one account when three nodes see an identity's first login at once", async () => {
      const identity = { issuer: "https://race.example", subject: "first-login", displayName: "Racer" };
      const results = await Promise.all([a, b, c, a, b, c].map((node) => node.accounts.findOrCreate(identity, "race")));
      expect(new Set(results.map((r) => r.account.id)).size).toBe(1);
      expect(results.filter((r) => r.created)).toHaveLength(1);
    });
  });

  describe("login attempts", () => {
    const start = (node: Store, handle: string | null) =>
      node.loginAttempts.start({ provider: "demo", returnTo: "/play", handle, previousSession: null });

    it("are consumed once, on any node, and only with their browser's handle", async () => {
      const { handle, attempt } = await start(a, null);
      expect(await b.loginAttempts.consume("another-browser", attempt.state)).toBeNull();
      const consumed = await Promise.all([b, c, a].map((node) => node.loginAttempts.consume(handle, attempt.state)));
      expect(consumed.filter((x) => x !== null)).toEqual([attempt]);
    });

    it("expire after 600 s, keep a live handle, and keep the newest three per browser", async () => {
      const first = await start(a, null);
      const second = await start(b, first.handle);
      expect(second.handle).toBe(first.handle);
      const third = await start(c, first.handle);
      const fourth = await start(a, first.handle);
      expect(await b.loginAttempts.pending(first.handle)).toBe(3);
      expect(await c.loginAttempts.consume(first.handle, first.attempt.state)).toBeNull();
      engine.clock.advance(600_000);
      expect(await a.loginAttempts.pending(first.handle)).toBe(0);
      expect(await a.loginAttempts.consume(first.handle, fourth.attempt.state)).toBeNull();
      expect((await start(b, first.handle)).handle).not.toBe(first.handle);
      expect(third.attempt.state).not.toBe(fourth.attempt.state);
    });
  });

  describe("tickets", () => {
    it("are spent once: of 20 parallel redeems spread over three nodes, exactly one is valid", async () => {
      const { id } = await newSession(a);
      const { ticket, expiresIn } = await b.tickets.issue(id);
      expect(expiresIn).toBe(30);
      const nodes = [a, b, c];
      const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => (nodes[i % 3] as Store).tickets.redeem(ticket)));
      expect(outcomes.filter((o) => o.status === "valid")).toEqual([{ status: "valid", sessionId: id }]);
      expect(outcomes.filter((o) => o.status === "unknown")).toHaveLength(19);
    });

    it("expire after their TTL, and are unknown when malformed", async () => {
      const { id } = await newSession(a);
      const { ticket } = await a.tickets.issue(id);
      engine.clock.advance(30_000);
      expect(await b.tickets.redeem(ticket)).toEqual({ status: "expired" });
      expect(await b.tickets.redeem("not-a-ticket")).toEqual({ status: "unknown" });
      await a.tickets.issue(id);
      engine.clock.advance(30_000);
      expect(await c.tickets.sweep()).toBeGreaterThanOrEqual(1);
    });
  });

  describe("the refresh lease (SECURITY.md I41)", () => {
    it("lets one of two nodes refresh; the other waits for it and uses its result", async () => {
      const { id } = await newSession(a);
      const release = deferred();
      const calls: string[] = [];
      const order: string[] = [];
      const refresh = (node: Store, name: string) => async (): Promise<string> => {
        calls.push(name);
        await release.promise;
        const version = (await node.sessions.version(id)) ?? -1;
        await node.sessions.replaceTokens(id, version, tokens(`refreshed-by-${name}`));
        order.push(`${name} stored`);
        return `refreshed-by-${name}`;
      };
      const runs = [a.refreshLease.run(id, refresh(a, "a")), b.refreshLease.run(id, refresh(b, "b"))];
      await vi.waitFor(() => expect(calls).toHaveLength(1), { timeout: 5_000 });
      release.resolve();
      const [ra, rb] = await Promise.all(runs.map((run) => run.then((outcome) => (order.push("returned"), outcome))));
      expect(calls).toHaveLength(1);
      const winner = calls[0];
      expect([ra, rb].filter((o) => o?.ran === true)).toEqual([{ ran: true, value: `refreshed-by-${winner}` }]);
      expect([ra, rb].filter((o) => o?.ran === false)).toHaveLength(1);
      // The waiter returned only after the holder had stored its result, and reads that result.
      expect(order[0]).toBe(`${winner} stored`);
      expect((await (winner === "a" ? b : a).sessions.readTokens(id))?.accessToken).toBe(`refreshed-by-${winner}`);
    });

    it("expires when its holder dies mid-refresh, and another node takes it over", async () => {
      const { id } = await newSession(a);
      const started = deferred();
      // The holder never finishes: as a node killed while it waited on the provider.
      void a.refreshLease.run(id, async () => {
        started.resolve();
        return new Promise<never>(() => {});
      });
      await started.promise;
      const impatient = await engine.node({ lease: { maxPolls: 3 } });
      let called = false;
      expect(await impatient.refreshLease.run(id, async () => (called = true))).toEqual({ ran: false });
      expect(called).toBe(false);
      // A node already waiting when the lease lapses takes it over. Its clock counts reads:
      // the second is its first look after a failed take, so it is waiting by then.
      let reads = 0;
      const waiter = await engine.node({ clock: { now: () => ((reads += 1), engine.clock.now()) } });
      const outcome = waiter.refreshLease.run(id, async () => "taken over");
      await vi.waitFor(() => expect(reads).toBeGreaterThanOrEqual(2), { timeout: 5_000 });
      engine.clock.advance(30_000);
      expect(await outcome).toEqual({ ran: true, value: "taken over" });
      // And a newcomer after that finds it free again.
      expect(await b.refreshLease.run(id, async () => "next")).toEqual({ ran: true, value: "next" });
    });
  });

  describe("back-channel logout", () => {
    it("ends the sessions a provider sid names, on any node, announcing each on every node", async () => {
      const first = await newSession(a);
      const other = await a.sessions.create({ accountId: first.accountId, provider: "demo", userAgent: "t", tokens: tokens("sid-2"), providerSid: "op-sid-2" });
      const named = await b.sessions.create({ accountId: first.accountId, provider: "demo", userAgent: "t", tokens: tokens("sid-1"), providerSid: "op-sid-1" });
      const heard: SessionEnded[] = [];
      const stop = c.events.subscribe((event) => heard.push(event));
      try {
        expect(await c.sessions.endByProviderSession("other-provider", { sid: "op-sid-1", accountId: null })).toBe(0);
        expect(await c.sessions.endByProviderSession("demo", { sid: "op-sid-1", accountId: null })).toBe(1);
        await vi.waitFor(() => expect(heard.filter((e) => e.sessionId === named.session.id)).toEqual([expect.objectContaining({ reason: "backchannel_logout" })]), {
          timeout: 1_000,
          interval: 5,
        });
        expect(await a.sessions.findLive(other.session.id)).not.toBeNull();
        // Only a subject: every session of that account at this provider.
        expect(await a.sessions.endByProviderSession("demo", { sid: null, accountId: first.accountId })).toBe(2);
        expect(await b.sessions.endByProviderSession("demo", { sid: null, accountId: null })).toBe(0);
      } finally {
        stop();
      }
    });

    it("remembers a logout token's jti on every node: the second sighting is a replay, whichever node sees it", async () => {
      const jti = `jti-${Date.now()}-${serial++}`;
      const seen = await Promise.all([a, b, c].map((node) => node.logoutTokenJTIs.remember("https://id.example", jti, engine.clock.now() + MINUTE)));
      expect(seen.filter(Boolean)).toHaveLength(1);
      expect(await a.logoutTokenJTIs.remember("https://other.example", jti, engine.clock.now() + MINUTE)).toBe(true);
      engine.clock.advance(MINUTE);
      expect(await b.logoutTokenJTIs.sweep()).toBeGreaterThanOrEqual(2);
    });
  });

  describe("account blocks and operator actions", () => {
    it("finds no blocked account on any node, and says it is blocked", async () => {
      const { accountId, token } = await newSession(a);
      expect(await b.accounts.isBlocked(accountId)).toBe(false);
      await engine.exec(`INSERT INTO account_blocks (account_id, blocked_at, blocked_by, reason) VALUES ('${accountId}', 0, 'op', 'test')`);
      expect(await b.accounts.isBlocked(accountId)).toBe(true);
      expect(await c.accounts.find(accountId, "demo")).toBeNull();
      // The session is still there until deleted; the account lookup is what refuses it.
      expect(await a.sessions.validate(token, { slide: false })).not.toBeNull();
      expect(await a.accounts.findIdByIdentity("https://id.example", `user-${serial}`)).toBe(accountId);
      expect(await a.accounts.findIdByIdentity("https://id.example", "nobody")).toBeNull();
    });

    it("hands each operator action to exactly one node, once, with its sealed refresh token, then wipes the token", async () => {
      const rows = Array.from({ length: 30 }, (_, i) => `('sessions.listed', 'acct-${i}', 'op', '${i}', ${i}, 'sealed-${i}')`);
      await engine.exec(`INSERT INTO operator_actions (action, account_id, operator, detail, at, refresh_token) VALUES ${rows.join(", ")}`);
      const claimed = (await Promise.all([a, b, c, a, b, c].map((node) => node.operatorActions.claim(7)))).flat();
      const more = await a.operatorActions.claim(100);
      const all = [...claimed, ...more].filter((row) => row.accountId.startsWith("acct-"));
      expect(all).toHaveLength(30);
      expect(new Set(all.map((row) => row.id)).size).toBe(30);
      expect(all.find((row) => row.accountId === "acct-3")).toMatchObject({ action: "sessions.listed", operator: "op", detail: "3", refreshToken: "sealed-3" });
      expect(await b.operatorActions.claim(100)).toEqual([]);
      engine.clock.advance(MINUTE);
      expect(await c.operatorActions.sweep(MINUTE)).toBeGreaterThanOrEqual(30);
    });

    it("announces a session the operator's command deleted as ended, on every node, and revokes its grant", async () => {
      const { id, accountId } = await newSession(b);
      const heard: SessionEnded[] = [];
      const stop = c.events.subscribe((event) => heard.push(event));
      try {
        await a.sessions.adoptEnded({ id, accountId, provider: "demo", refreshToken: null }, "operator");
        await vi.waitFor(() => expect(heard.filter((e) => e.sessionId === id)).toEqual([{ sessionId: id, accountId, reason: "operator" }]), {
          timeout: 1_000,
          interval: 5,
        });
      } finally {
        stop();
      }
    });
  });

  describe("socket slots (WS_MAX_SOCKETS_PER_SESSION across nodes)", () => {
    it("give out exactly the cap of 40 parallel claims over three nodes, and a released slot again", async () => {
      const { id } = await newSession(a);
      const nodes = [a, b, c];
      const slots = await Promise.all(Array.from({ length: 40 }, (_, i) => (nodes[i % 3] as Store).socketSlots.claim(id, 4)));
      const given = slots.filter((slot): slot is string => slot !== null);
      expect(given).toHaveLength(4);
      expect(await c.socketSlots.claim(id, 4)).toBeNull();
      await a.socketSlots.release(given[0] as string);
      expect(await b.socketSlots.claim(id, 4)).not.toBeNull();
      // Another session has its own slots.
      const other = await newSession(b);
      expect(await c.socketSlots.claim(other.id, 4)).not.toBeNull();
    });

    it("admit: spends the ticket first, then checks its session, then claims a slot; exactly one of 20 parallel admissions over three nodes", async () => {
      const { id } = await newSession(a);
      const nodes = [a, b, c];
      const { ticket } = await b.tickets.issue(id);
      const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => (nodes[i % 3] as Store).socketSlots.admit(ticket, id, 4)));
      const admitted = outcomes.filter((o) => o.status === "admitted");
      expect(admitted).toHaveLength(1);
      expect(outcomes.filter((o) => o.status === "unknown")).toHaveLength(19);

      // Another session's ticket is spent by the attempt, and claims nothing.
      const other = await newSession(b);
      const { ticket: foreign } = await c.tickets.issue(other.id);
      expect(await a.socketSlots.admit(foreign, id, 4)).toEqual({ status: "wrong_session" });
      expect(await b.socketSlots.admit(foreign, other.id, 4)).toEqual({ status: "unknown" });

      // The cap: three more fit beside the first, the fifth is refused and its ticket is spent.
      for (let i = 0; i < 3; i++) {
        expect((await nodes[i]!.socketSlots.admit((await a.tickets.issue(id)).ticket, id, 4)).status).toBe("admitted");
      }
      const fifth = (await a.tickets.issue(id)).ticket;
      expect(await c.socketSlots.admit(fifth, id, 4)).toEqual({ status: "full" });
      expect(await c.socketSlots.admit(fifth, id, 5)).toEqual({ status: "unknown" });
      // A released slot is free again; an expired ticket is refused as expired (and spent).
      const first = admitted[0] as { status: "admitted"; slot: string };
      await a.socketSlots.release(first.slot);
      const late = (await b.tickets.issue(id)).ticket;
      expect((await a.socketSlots.admit((await b.tickets.issue(id)).ticket, id, 4)).status).toBe("admitted");
      engine.clock.advance(30_000);
      expect(await c.socketSlots.admit(late, id, 5)).toEqual({ status: "expired" });
      expect(await c.socketSlots.admit(late, id, 5)).toEqual({ status: "unknown" });
      expect(await c.socketSlots.admit("not-a-ticket", id, 5)).toEqual({ status: "unknown" });
    });

    it("counts live sessions on any node", async () => {
      const before = await a.sessions.countLive();
      await newSession(b);
      expect(await c.sessions.countLive()).toBe(before + 1);
    });
  });

  describe("session-ended events", () => {
    it("reach a subscriber on another node within 1 s, and this node's subscribers once", async () => {
      const { id, accountId } = await newSession(a);
      const atA: SessionEnded[] = [];
      const atB: SessionEnded[] = [];
      const stopA = a.events.subscribe((event) => atA.push(event));
      const stopB = b.events.subscribe((event) => atB.push(event));
      try {
        expect(await a.sessions.end(id, accountId, "logout")).toBe(true);
        expect(atA.filter((e) => e.sessionId === id)).toEqual([{ sessionId: id, accountId, reason: "logout" }]);
        await vi.waitFor(() => expect(atB.filter((e) => e.sessionId === id)).toEqual([{ sessionId: id, accountId, reason: "logout" }]), {
          timeout: 1_000,
          interval: 5,
        });
        // An event from B after A's: once A hears it, A's own echo (sent earlier) has been skipped.
        const other = await newSession(b);
        await b.sessions.revoke(other.accountId, other.id, "revoked");
        await vi.waitFor(() => expect(atA.some((e) => e.sessionId === other.id)).toBe(true), { timeout: 1_000, interval: 5 });
        expect(atA.filter((e) => e.sessionId === id)).toHaveLength(1);
      } finally {
        stopA();
        stopB();
      }
    });
  });
});

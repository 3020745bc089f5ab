import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import postgres from "postgres";
import { secureRandomBytes } from "../../src/clock";
import { migratePostgres, openPostgres } from "../../src/db/postgres";
import { PostgresEventBus } from "../../src/store/postgres/bus";
import type { SessionEnded } from "../../src/auth/session-events";
import type { Store } from "../../src/store/types";
import { createTestDatabase, dropTestDatabase, openEngine, TEST_SERVER_URL, type Engine } from "./engines";

/** What only the PostgreSQL engine has: start-up migrations shared by nodes, and a listener that can be lost. */
describe("PostgreSQL engine", () => {
  const urls: string[] = [];
  afterAll(async () => {
    for (const url of urls) await dropTestDatabase(url);
  });

  it("applies the migrations once when six nodes start at the same moment (an advisory lock)", async () => {
    const url = await createTestDatabase();
    urls.push(url);
    const outcomes = await Promise.allSettled(Array.from({ length: 6 }, () => migratePostgres(url)));
    expect(outcomes.filter((o) => o.status === "rejected")).toEqual([]);
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      const applied = await sql`SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations`;
      // Every migration drizzle-kit generated, each recorded once.
      expect(applied[0]?.n).toBe(migrationCount());
      const tables = await sql`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`;
      expect(tables.map((t) => t.table_name)).toEqual([
        "account_blocks",
        "accounts",
        "identities",
        "live_sockets",
        "login_attempts",
        "logout_token_jtis",
        "operator_actions",
        "refresh_leases",
        "sessions",
        "ws_tickets",
      ]);
    } finally {
      await sql.end();
    }
  });

  it("opens at most DATABASE_POOL_SIZE connections, each with DATABASE_STATEMENT_TIMEOUT_MS", async () => {
    const url = await createTestDatabase();
    urls.push(url);
    const db = await openPostgres({ url, poolSize: 2, statementTimeoutMs: 150 });
    try {
      const seen = await Promise.all(Array.from({ length: 8 }, () => db.sql`SELECT pg_backend_pid() AS pid, current_setting('statement_timeout') AS timeout`));
      expect(new Set(seen.map((rows) => rows[0]?.pid)).size).toBeLessThanOrEqual(2);
      expect(new Set(seen.map((rows) => rows[0]?.timeout))).toEqual(new Set(["150ms"]));
      await expect(db.sql`SELECT pg_sleep(5)`).rejects.toThrow(/statement timeout/);
      expect(await db.isHealthy()).toBe(true);
    } finally {
      await db.close();
    }
  });

  it("commits a connection setup's writes asynchronously, and only them: the next statement on the connection (a logout, say) commits synchronously", async () => {
    const url = await createTestDatabase();
    urls.push(url);
    await migratePostgres(url);
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      await sql`INSERT INTO accounts (id, display_name, created_at) VALUES ('acct', 'A', 0)`;
      await sql`INSERT INTO sessions (id, account_id, secret_hash, provider, created_at, last_seen_at, expires_at, user_agent)
                VALUES ('sess', 'acct', '\\x00', 'demo', 0, 0, 1000000000000, 'test')`;
      const setting = async (): Promise<string> => (await sql`SELECT current_setting('synchronous_commit') AS v`)[0]?.v as string;
      expect(await setting()).toBe("on");
      // Each function, inside a transaction: off until that transaction commits.
      const inside = await sql.begin(async (tx) => {
        await tx`SELECT portcullis_issue_ticket('hash-1', 'sess', 1000000000000)`;
        const afterIssue = (await tx`SELECT current_setting('synchronous_commit') AS v`)[0]?.v;
        await tx`SELECT portcullis_admit_socket('hash-1', 'sess', 'slot-1', 'node', 0, 1000000000000, 4)`;
        await tx`SELECT portcullis_release_socket('slot-1')`;
        return afterIssue;
      });
      expect(inside).toBe("off");
      // On its own, each is its own transaction; the connection's setting is untouched after it.
      await sql`SELECT portcullis_issue_ticket('hash-2', 'sess', 1000000000000)`;
      expect(await setting()).toBe("on");
      expect((await sql`SELECT portcullis_admit_socket('hash-2', 'sess', 'slot-2', 'node', 0, 1000000000000, 4) AS o`)[0]?.o).toBe("slot-2");
      expect(await setting()).toBe("on");
      await sql`SELECT portcullis_release_socket('slot-2')`;
      expect(await setting()).toBe("on");
      expect((await sql`SELECT count(*)::int AS n FROM live_sockets`)[0]?.n).toBe(0);
    } finally {
      await sql.end();
    }
  });

  describe("the socket claim (one statement: portcullis_claim_socket)", () => {
    let engine: Engine;
    let a: Store;
    let b: Store;
    let raw: postgres.Sql;

    beforeAll(async () => {
      engine = await openEngine("postgres");
      a = await engine.node();
      b = await engine.node();
      raw = postgres(engine.url ?? "", { max: 2, onnotice: () => {} });
    });
    afterAll(async () => {
      await raw?.end({ timeout: 1 });
      await engine?.close();
    });

    async function newSession(subject: string): Promise<{ id: string; accountId: string }> {
      const { account } = await a.accounts.findOrCreate({ issuer: "https://id.example", subject, displayName: subject }, "demo");
      const { session } = await a.sessions.create({
        accountId: account.id,
        provider: "demo",
        userAgent: "test",
        tokens: { accessToken: "a", accessTokenExpiresAt: null, refreshToken: null, refreshTokenExpiresAt: null, idToken: null },
      });
      return { id: session.id, accountId: account.id };
    }

    /**
     * Statements queued behind a lock this test holds on the session row, then all let go at
     * once. Each batch is started once the previous one is waiting, so the queue's order is
     * the batches' order.
     */
    async function releasedTogether<T>(sessionId: string, batches: (() => Promise<T>[])[]): Promise<T[]> {
      const database = new URL(engine.url ?? "").pathname.slice(1);
      const pending = await raw.begin(async (tx) => {
        await tx`SELECT 1 FROM sessions WHERE id = ${sessionId} FOR UPDATE`;
        const started: Promise<T>[] = [];
        for (const batch of batches) {
          started.push(...batch());
          await vi.waitFor(
            async () => {
              const [row] = await raw`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = ${database} AND wait_event_type = 'Lock'`;
              expect(row?.n).toBe(started.length);
            },
            { timeout: 5_000, interval: 10 },
          );
        }
        return started;
      });
      return Promise.all(pending);
    }

    it("gives exactly the cap to 10 claims of one session on two nodes released at the same instant", async () => {
      const { id } = await newSession("claims");
      const slots = await releasedTogether(id, [() => Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).socketSlots.claim(id, 4))]);
      expect(slots.filter((slot) => slot !== null)).toHaveLength(4);
      const [row] = await raw`SELECT count(*)::int AS n FROM live_sockets WHERE session_id = ${id}`;
      expect(row?.n).toBe(4);
    });

    it("gives no slot to claims queued behind the session's end, and leaves no row of it", async () => {
      const { id, accountId } = await newSession("ending");
      const outcomes = await releasedTogether<boolean | string | null>(id, [
        () => [b.sessions.end(id, accountId, "logout")],
        () => Array.from({ length: 4 }, (_, i) => (i % 2 === 0 ? a : b).socketSlots.claim(id, 4)),
      ]);
      expect(outcomes).toEqual([true, null, null, null, null]);
      const [row] = await raw`SELECT count(*)::int AS n FROM live_sockets WHERE session_id = ${id}`;
      expect(row?.n).toBe(0);
    });

    it("counts a dead node's slot until its TTL has passed, then lets it lapse", async () => {
      const { id } = await newSession("lapse");
      const slots = await Promise.all([a, a, a, a].map((node) => node.socketSlots.claim(id, 4)));
      expect(slots.every((slot) => slot !== null)).toBe(true);
      expect(await b.socketSlots.claim(id, 4)).toBeNull();
      // Node a "dies": it renews nothing from now on.
      engine.clock.advance(90_000 - 1);
      expect(await b.socketSlots.claim(id, 4)).toBeNull();
      engine.clock.advance(1);
      expect(await b.socketSlots.claim(id, 4)).not.toBeNull();
      const [row] = await raw`SELECT count(*)::int AS n FROM live_sockets WHERE session_id = ${id}`;
      expect(row?.n).toBe(1);
    });
  });

  describe("the session-ended NOTIFY, sent by the statement that deletes the session", () => {
    let engine: Engine;
    let a: Store;
    let b: Store;
    let listener: postgres.Sql;
    const heard: { channel: string; payload: unknown }[] = [];

    beforeAll(async () => {
      engine = await openEngine("postgres");
      a = await engine.node();
      b = await engine.node();
      listener = postgres(engine.url ?? "", { max: 1, onnotice: () => {} });
      await listener.listen("portcullis_session_ended", (payload) => heard.push({ channel: "portcullis_session_ended", payload: JSON.parse(payload) }));
      // What the test uses to make a deleting transaction fail at its commit, after its
      // statement ran (and queued its NOTIFY): a deferred constraint trigger.
      await engine.exec(`
        CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF OLD.user_agent = 'refused at commit' THEN RAISE EXCEPTION 'refused at commit'; END IF;
          RETURN OLD;
        END $$;
        CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER DELETE ON sessions
          DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit();`);
    });
    afterAll(async () => {
      await listener?.end({ timeout: 1 });
      await engine?.close();
    });

    async function newSession(subject: string, userAgent = "test"): Promise<{ id: string; accountId: string; token: string }> {
      const { account } = await a.accounts.findOrCreate({ issuer: "https://id.example", subject, displayName: subject }, "demo");
      const { session, token } = await a.sessions.create({
        accountId: account.id,
        provider: "demo",
        userAgent,
        tokens: { accessToken: "a", accessTokenExpiresAt: null, refreshToken: null, refreshTokenExpiresAt: null, idToken: null },
      });
      return { id: session.id, accountId: account.id, token };
    }

    it("reaches another node's listener (and any LISTEN on the channel) with the ending node's id; this node's subscribers hear it at once", async () => {
      const { id, accountId } = await newSession("heard");
      const atA: SessionEnded[] = [];
      const atB: SessionEnded[] = [];
      const stopA = a.events.subscribe((event) => atA.push(event));
      const stopB = b.events.subscribe((event) => atB.push(event));
      try {
        expect(await a.sessions.end(id, accountId, "revoked")).toBe(true);
        expect(atA).toEqual([{ sessionId: id, accountId, reason: "revoked" }]);
        await vi.waitFor(() => expect(atB).toEqual([{ sessionId: id, accountId, reason: "revoked" }]), { timeout: 1_000, interval: 5 });
        await vi.waitFor(() => expect(heard.map((h) => h.payload)).toContainEqual({ node: (a as Store & { bus: PostgresEventBus }).bus.nodeId, sessionId: id, accountId, reason: "revoked" }), {
          timeout: 1_000,
          interval: 5,
        });
      } finally {
        stopA();
        stopB();
      }
    });

    it("is not sent when the deleting transaction fails: no node hears of a session that still lives", async () => {
      const doomed = await newSession("refused", "refused at commit");
      const sentinel = await newSession("sentinel");
      heard.length = 0;
      const atA: SessionEnded[] = [];
      const atB: SessionEnded[] = [];
      const stopA = a.events.subscribe((event) => atA.push(event));
      const stopB = b.events.subscribe((event) => atB.push(event));
      try {
        // drizzle wraps the server's error; the cause is PostgreSQL's own.
        await expect(a.sessions.end(doomed.id, doomed.accountId, "logout")).rejects.toMatchObject({ cause: { message: "refused at commit" } });
        expect(atA).toEqual([]);
        // Notifications arrive in commit order: once the sentinel's end is heard, the doomed
        // one's would have been too.
        expect(await a.sessions.end(sentinel.id, sentinel.accountId, "logout")).toBe(true);
        await vi.waitFor(() => expect(atB.map((e) => e.sessionId)).toEqual([sentinel.id]), { timeout: 1_000, interval: 5 });
        await vi.waitFor(() => expect(heard.map((h) => (h.payload as { sessionId: string }).sessionId)).toEqual([sentinel.id]), { timeout: 1_000, interval: 5 });
        expect(atA.map((e) => e.sessionId)).toEqual([sentinel.id]);
        expect((await b.sessions.validate(doomed.token, { slide: false }))?.id).toBe(doomed.id);
      } finally {
        stopA();
        stopB();
      }
    });

    it("never ends a session silently: when the NOTIFY cannot be queued, the end fails with it", async () => {
      // A node whose pg_notify fails (shadowed on its search_path): the stand-in for a node
      // that dies between deleting a session and telling the others, which a DELETE and a
      // NOTIFY sent one after the other allow.
      const database = new URL(engine.url ?? "").pathname.slice(1);
      await engine.exec(`
        CREATE SCHEMA muted;
        CREATE FUNCTION muted.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'notify lost'; END $$;
        ALTER DATABASE ${database} SET search_path = muted, pg_catalog, public;`);
      try {
        const muted = await engine.node();
        const { id, accountId, token } = await newSession("silent");
        const atB: SessionEnded[] = [];
        const stopB = b.events.subscribe((event) => atB.push(event));
        try {
          await expect(muted.sessions.end(id, accountId, "logout")).rejects.toMatchObject({ cause: { message: "notify lost" } });
          expect((await b.sessions.validate(token, { slide: false }))?.id).toBe(id);
          // Ended by a node that can notify, it is heard.
          expect(await a.sessions.end(id, accountId, "logout")).toBe(true);
          await vi.waitFor(() => expect(atB.map((e) => e.sessionId)).toEqual([id]), { timeout: 1_000, interval: 5 });
        } finally {
          stopB();
        }
      } finally {
        await engine.exec(`ALTER DATABASE ${database} RESET search_path`);
      }
    });
  });

  describe("the session-ended listener", () => {
    let url: string;
    let pool: postgres.Sql;
    let a: PostgresEventBus;
    let b: PostgresEventBus;

    beforeAll(async () => {
      url = await createTestDatabase();
      urls.push(url);
      pool = postgres(url, { max: 2, onnotice: () => {} });
      a = new PostgresEventBus({ url, sql: pool, randomBytes: secureRandomBytes, backoff: { initialMs: 20, maxMs: 200 } });
      b = new PostgresEventBus({ url, sql: pool, randomBytes: secureRandomBytes });
      await a.start();
      await b.start();
    });
    afterAll(async () => {
      await a?.close();
      await b?.close();
      await pool?.end();
    });

    it("reconnects after its connection is terminated, asks for a resync once back, and hears other nodes again", async () => {
      let resyncs = 0;
      const stop = a.onResync(() => (resyncs += 1));
      const heard: SessionEnded[] = [];
      const unsubscribe = a.subscribe((event) => heard.push(event));
      try {
        const killed = await pool`SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = ${`portcullis-listener-${a.nodeId}`}`;
        expect(killed.map((row) => row.ok)).toEqual([true]);
        await vi.waitFor(() => expect(resyncs).toBe(1), { timeout: 10_000, interval: 10 });
        expect(a.connected).toBe(true);
        await b.publish({ sessionId: "abcdefghijklmnopqrstuvwxyz", accountId: "abcdefghijklmnop", reason: "revoked" });
        await vi.waitFor(() => expect(heard.map((e) => e.sessionId)).toEqual(["abcdefghijklmnopqrstuvwxyz"]), { timeout: 1_000, interval: 5 });
      } finally {
        stop();
        unsubscribe();
      }
    });

    it("keeps retrying with backoff while the database refuses connections, then resyncs once it can listen again", async () => {
      const problems: unknown[] = [];
      const c = new PostgresEventBus({
        url,
        sql: pool,
        randomBytes: secureRandomBytes,
        backoff: { initialMs: 10, maxMs: 50 },
        onListenerError: (error) => problems.push(error),
      });
      await c.start();
      let resyncs = 0;
      c.onResync(() => (resyncs += 1));
      const admin = postgres(TEST_SERVER_URL, { max: 1, onnotice: () => {} });
      const database = new URL(url).pathname.slice(1);
      try {
        await admin.unsafe(`ALTER DATABASE ${database} WITH ALLOW_CONNECTIONS false`);
        await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${`portcullis-listener-${c.nodeId}`}`;
        // The loss, then at least two refused reconnects.
        await vi.waitFor(() => expect(problems.length).toBeGreaterThanOrEqual(3), { timeout: 10_000, interval: 10 });
        expect(c.connected).toBe(false);
        expect(resyncs).toBe(0);
        await admin.unsafe(`ALTER DATABASE ${database} WITH ALLOW_CONNECTIONS true`);
        await vi.waitFor(() => expect(resyncs).toBe(1), { timeout: 10_000, interval: 10 });
        expect(c.connected).toBe(true);
      } finally {
        await admin.unsafe(`ALTER DATABASE ${database} WITH ALLOW_CONNECTIONS true`);
        await admin.end();
        await c.close();
      }
    });

    it("ignores notifications on its channel that are not well-formed session-ended events", async () => {
      const heard: SessionEnded[] = [];
      const unsubscribe = a.subscribe((event) => heard.push(event));
      try {
        for (const payload of ["not json", "null", '{"sessionId":"x"}', '{"sessionId":"abc","accountId":"def","reason":"because"}', '{"sessionId":"ABC!","accountId":"def","reason":"logout"}']) {
          await pool`SELECT pg_notify('portcullis_session_ended', ${payload})`;
        }
        await b.publish({ sessionId: "zzzz", accountId: "yyyy", reason: "logout" });
        // Notifications arrive in order: once the last is heard, the malformed ones were dropped.
        await vi.waitFor(() => expect(heard).toEqual([{ sessionId: "zzzz", accountId: "yyyy", reason: "logout" }]), { timeout: 1_000, interval: 5 });
      } finally {
        unsubscribe();
      }
    });
  });
});

/** How many migrations db/migrations-pg holds (drizzle-kit's journal). */
function migrationCount(): number {
  const journal: unknown = JSON.parse(readFileSync(new URL("../../db/migrations-pg/meta/_journal.json", import.meta.url), "utf8"));
  const entries = typeof journal === "object" && journal !== null ? Reflect.get(journal, "entries") : undefined;
  return Array.isArray(entries) ? entries.length : 0;
}

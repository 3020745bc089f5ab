import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import postgres from "postgres";
import { secureRandomBytes } from "../../src/clock";
import { migratePostgres, openPostgres } from "../../src/db/postgres";
import { PostgresEventBus } from "../../src/store/postgres/bus";
import type { SessionEnded } from "../../src/auth/session-events";
import { createTestDatabase, dropTestDatabase, TEST_SERVER_URL } from "./engines";

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

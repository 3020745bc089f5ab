import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import postgres, { type Sql } from "postgres";
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import * as schema from "./schema-pg";

export type PgORM = PostgresJsDatabase<typeof schema>;

export interface PostgresOptions {
  url: string;
  /** Connections this node keeps open at most (DATABASE_POOL_SIZE). */
  poolSize: number;
  /** The server cancels any statement running longer (DATABASE_STATEMENT_TIMEOUT_MS). */
  statementTimeoutMs: number;
}

export interface PostgresDatabase {
  orm: PgORM;
  /** The pool itself, for the few statements the query builder cannot say (NOTIFY). */
  sql: Sql;
  options: PostgresOptions;
  isHealthy(): Promise<boolean>;
  close(): Promise<void>;
}

const MIGRATIONS = resolve(dirname(fileURLToPath(import.meta.url)), "../../db/migrations-pg");
// pg_advisory_lock(key1, key2): "port", 1. Any fixed pair works; it only has to be the same on every node.
const MIGRATION_LOCK: readonly [number, number] = [0x706f7274, 1];
// A node that cannot reach the database says so within this time rather than postgres.js's 30 s.
const CONNECT_TIMEOUT_SECONDS = 5;

/**
 * Applies drizzle-kit's PostgreSQL migrations, once, however many nodes start at the same
 * moment: each takes a session-level advisory lock first, so the second node waits, then
 * finds every migration recorded and applies nothing. Without the lock two nodes race on
 * `CREATE SCHEMA IF NOT EXISTS drizzle` and the migrations table (catalog unique violations),
 * or apply a migration twice.
 */
export async function migratePostgres(url: string): Promise<void> {
  // One connection: the lock belongs to the session that took it, so take, migrate and release on it.
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: CONNECT_TIMEOUT_SECONDS });
  try {
    await sql`SELECT pg_advisory_lock(${MIGRATION_LOCK[0]}, ${MIGRATION_LOCK[1]})`;
    try {
      await migrate(drizzle(sql, { schema }), { migrationsFolder: MIGRATIONS });
    } finally {
      await sql`SELECT pg_advisory_unlock(${MIGRATION_LOCK[0]}, ${MIGRATION_LOCK[1]})`;
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Migrates (see {@link migratePostgres}) and opens this node's pool. */
export async function openPostgres(options: PostgresOptions): Promise<PostgresDatabase> {
  await migratePostgres(options.url);
  const sql = postgres(options.url, {
    max: options.poolSize,
    connect_timeout: CONNECT_TIMEOUT_SECONDS,
    // Startup parameters: every connection of the pool gets them, reconnects included.
    connection: { statement_timeout: options.statementTimeoutMs, application_name: "portcullis" },
    onnotice: () => {},
  });
  return {
    orm: drizzle(sql, { schema }),
    sql,
    options,
    async isHealthy(): Promise<boolean> {
      try {
        await sql`SELECT 1`;
        return true;
      } catch {
        return false;
      }
    },
    async close(): Promise<void> {
      await sql.end({ timeout: 5 });
    },
  };
}

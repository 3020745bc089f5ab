import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { createAuditLog, type AuditLog } from "../../src/audit/log";
import { ManualClock, secureRandomBytes, type Clock } from "../../src/clock";
import { TokenCipher } from "../../src/crypto/token-cipher";
import { openDatabase } from "../../src/db/database";
import BetterSqlite3 from "better-sqlite3";
import { LocalEventBus } from "../../src/store/local-bus";
import { MemorySocketSlots } from "../../src/store/memory-slots";
import { MemoryLeaseTable, type LeaseOptions } from "../../src/store/lease";
import { createPostgresStore } from "../../src/store/postgres";
import type { Backoff } from "../../src/store/postgres/bus";
import { createSqliteStore } from "../../src/store/sqlite";
import type { Store } from "../../src/store/types";
import { AuditCapture } from "../fixtures/harness";

/**
 * Where the PostgreSQL half of the store tests runs: a server on which this role may CREATE
 * DATABASE. Each test file creates `portcullis_test_<random>` there and drops it afterwards,
 * so runs (and files) never see each other's rows. Override with PORTCULLIS_TEST_DATABASE_URL.
 */
export const TEST_SERVER_URL = process.env.PORTCULLIS_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export type EngineName = "sqlite" | "postgres";

export interface NodeOptions {
  lease?: Partial<LeaseOptions>;
  /** This node's clock; the engine's shared one by default. */
  clock?: Clock;
  backoff?: Backoff;
}

/** One engine's database for one test file, and as many "nodes" on it as a test wants. */
export interface Engine {
  readonly name: EngineName;
  readonly clock: ManualClock;
  readonly audit: AuditCapture;
  /**
   * A new node on this file's database with its own connections (a pool and a listener on
   * PostgreSQL; a handle on the same file on SQLite, where the process is the one node, so
   * its nodes share the process's bus and lease table).
   */
  node(options?: NodeOptions): Promise<Store>;
  /** The database URL (PostgreSQL only), for tests that open their own connections. */
  readonly url: string | null;
  /** Runs one SQL statement written for both dialects on the database (what the operator's command would write). */
  exec(statement: string): Promise<void>;
  close(): Promise<void>;
}

const LEASE: LeaseOptions = { ttlMs: 30_000, pollMs: 10, maxPolls: 500 };
const SESSIONS = { idleTimeoutSeconds: 1800, absoluteTimeoutSeconds: 43200 };

export async function openEngine(name: EngineName): Promise<Engine> {
  const clock = new ManualClock();
  const capture = new AuditCapture();
  const audit: AuditLog = createAuditLog({ stream: capture, hashKey: randomBytes(32), clock });
  const cipher = new TokenCipher([{ id: "k1", key: randomBytes(32) }]);
  const stores: Store[] = [];
  const common = { cipher, audit, clock, randomBytes: secureRandomBytes, sessions: SESSIONS, ticketTTLSeconds: 30 };

  if (name === "sqlite") {
    const dir = mkdtempSync(join(tmpdir(), "portcullis-store-"));
    const bus = new LocalEventBus();
    const leaseTable = new MemoryLeaseTable();
    const socketSlots = new MemorySocketSlots(secureRandomBytes);
    const file = join(dir, "portcullis.sqlite");
    return {
      name,
      clock,
      audit: capture,
      url: null,
      async exec(statement: string): Promise<void> {
        // Another connection, as the operator's command is another process.
        const db = new BetterSqlite3(file);
        try {
          db.exec(statement);
        } finally {
          db.close();
        }
      },
      async node(options: NodeOptions = {}): Promise<Store> {
        const store = createSqliteStore({
          ...common,
          db: openDatabase(file),
          bus,
          leaseTable,
          socketSlots,
          lease: { ...LEASE, ...options.lease },
          clock: options.clock ?? clock,
        });
        stores.push(store);
        return store;
      },
      async close(): Promise<void> {
        for (const store of stores) await store.close();
        await audit.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }

  const url = await createTestDatabase();
  return {
    name,
    clock,
    audit: capture,
    url,
    async exec(statement: string): Promise<void> {
      const sql = postgres(url, { max: 1, onnotice: () => {} });
      try {
        await sql.unsafe(statement);
      } finally {
        await sql.end({ timeout: 1 });
      }
    },
    async node(options: NodeOptions = {}): Promise<Store> {
      const store = await createPostgresStore({
        ...common,
        postgres: { url, poolSize: 5, statementTimeoutMs: 5_000 },
        lease: { ...LEASE, ...options.lease },
        clock: options.clock ?? clock,
        backoff: options.backoff,
      });
      stores.push(store);
      return store;
    },
    async close(): Promise<void> {
      for (const store of stores) await store.close().catch(() => {});
      await audit.close();
      await dropTestDatabase(url);
    },
  };
}

/** Creates an empty database for one test file; fails loudly, never skips, when there is no server. */
export async function createTestDatabase(): Promise<string> {
  const admin = postgres(TEST_SERVER_URL, { max: 1, connect_timeout: 5, onnotice: () => {} });
  const name = `portcullis_test_${randomBytes(6).toString("hex")}`;
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } catch (error) {
    const server = new URL(TEST_SERVER_URL);
    throw new Error(
      `PostgreSQL is not reachable at ${server.host} (${error instanceof Error ? error.message : String(error)}). ` +
        "The store tests need it: start it with `pg_ctlcluster --skip-systemctl-redirect 15 main start`, " +
        "or set PORTCULLIS_TEST_DATABASE_URL to a server where this role may CREATE DATABASE.",
      { cause: error },
    );
  } finally {
    await admin.end({ timeout: 1 });
  }
  const url = new URL(TEST_SERVER_URL);
  url.pathname = `/${name}`;
  return url.href;
}

export async function dropTestDatabase(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  const admin = postgres(TEST_SERVER_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await admin.end({ timeout: 1 });
  }
}

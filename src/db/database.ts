import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import BetterSqlite3 from "better-sqlite3";
import { drizzle, type BetterSQLite3Database } from "drizzle-orm/better-sqlite3";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import * as schema from "./schema";

export type ORM = BetterSQLite3Database<typeof schema>;

export interface Database {
  orm: ORM;
  /** The raw handle, for the few hot statements prepared once (session lookup). */
  sqlite: BetterSqlite3.Database;
  path: string;
  /** True when the database answers a trivial query. */
  isHealthy(): boolean;
  close(): void;
}

const MIGRATIONS = resolve(dirname(fileURLToPath(import.meta.url)), "../../db/migrations");

/**
 * Opens (creating when needed) the SQLite file, sets the pragmas the security model relies
 * on and applies drizzle-kit's migrations.
 */
export function openDatabase(path: string): Database {
  if (path !== ":memory:") {
    mkdirSync(dirname(resolve(path)), { recursive: true, mode: 0o700 });
    // SQLite gives the -wal and -shm files the mode of the database file, so creating the
    // file 0600 before SQLite opens it keeps provider ciphertexts away from other users.
    for (const file of [path, `${path}-wal`, `${path}-shm`]) {
      if (!existsSync(file)) {
        closeSync(openSync(file, "a", 0o600));
      }
      chmodSync(file, 0o600);
    }
  }
  const sqlite = new BetterSqlite3(path);
  sqlite.pragma("journal_mode = WAL");
  sqlite.pragma("synchronous = NORMAL");
  sqlite.pragma("foreign_keys = ON");
  // Deleted sessions and tickets are overwritten with zeros, not left in free pages.
  sqlite.pragma("secure_delete = ON");
  sqlite.pragma("busy_timeout = 5000");

  const orm = drizzle(sqlite, { schema });
  migrate(orm, { migrationsFolder: MIGRATIONS });

  const ping = sqlite.prepare("SELECT 1 AS ok");
  return {
    orm,
    sqlite,
    path,
    isHealthy(): boolean {
      try {
        return sqlite.open && ping.get() !== undefined;
      } catch {
        return false;
      }
    },
    close(): void {
      if (sqlite.open) {
        sqlite.pragma("wal_checkpoint(TRUNCATE)");
        sqlite.close();
      }
    },
  };
}

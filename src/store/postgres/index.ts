import type { AuditLog } from "../../audit/log";
import type { SessionStoreOptions } from "../../auth/session";
import type { Clock, RandomBytes } from "../../clock";
import type { TokenCipher } from "../../crypto/token-cipher";
import { openPostgres, type PostgresDatabase, type PostgresOptions } from "../../db/postgres";
import { PollingRefreshLease, type LeaseOptions } from "../lease";
import type { Store } from "../types";
import { PostgresAccounts } from "./accounts";
import { PostgresEventBus, type Backoff } from "./bus";
import { PostgresLeaseTable } from "./lease";
import { PostgresLoginAttempts } from "./login-attempts";
import { PostgresSessions } from "./sessions";
import { PostgresTickets } from "./tickets";

export interface PostgresStoreOptions {
  postgres: PostgresOptions;
  cipher: TokenCipher;
  audit: AuditLog;
  clock: Clock;
  randomBytes: RandomBytes;
  sessions: SessionStoreOptions;
  ticketTTLSeconds: number;
  lease?: LeaseOptions;
  backoff?: Backoff;
  /** Problems the node's operator should see: a lost listener, a NOTIFY that failed. */
  onError?: (error: unknown) => void;
}

/**
 * The engine for more than one node: migrates (once across nodes, under an advisory lock),
 * opens this node's pool and its listening connection, and serves every repository from them.
 */
export async function createPostgresStore(options: PostgresStoreOptions): Promise<Store & { db: PostgresDatabase; bus: PostgresEventBus }> {
  const { cipher, audit, clock, randomBytes } = options;
  const db = await openPostgres(options.postgres);
  const bus = new PostgresEventBus({
    url: options.postgres.url,
    sql: db.sql,
    randomBytes,
    backoff: options.backoff,
    onListenerError: options.onError,
  });
  try {
    await bus.start();
  } catch (error) {
    await db.close();
    throw error;
  }
  return {
    engine: "postgres",
    db,
    bus,
    sessions: new PostgresSessions(db.orm, cipher, bus, audit, clock, randomBytes, options.sessions, options.onError),
    accounts: new PostgresAccounts(db.orm, clock, randomBytes),
    loginAttempts: new PostgresLoginAttempts(db.orm, cipher, clock, randomBytes),
    tickets: new PostgresTickets(db.orm, clock, randomBytes, options.ticketTTLSeconds),
    refreshLease: new PollingRefreshLease(new PostgresLeaseTable(db.orm), clock, randomBytes, options.lease),
    events: bus,
    isHealthy: () => db.isHealthy(),
    close: async () => {
      await bus.close();
      await db.close();
    },
  };
}

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
import { PostgresLogoutTokenJTIs } from "./logout-token-jtis";
import { PostgresOperatorActions } from "./operator-actions";
import { PostgresSocketSlots } from "./socket-slots";
import { isStoreUnavailable } from "../errors";

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
  /**
   * How long a socket slot outlives its node's last renewal (the registry renews on each
   * recheck, every 30 s): the sockets of a node that died stop counting after this.
   */
  socketSlotTTLMs?: number;
  /** Problems the node's operator should see: a lost listener, a NOTIFY that failed. */
  onError?: (error: unknown) => void;
}

/** Three registry rechecks (30 s each): a node that misses two in a row is presumed dead. */
export const DEFAULT_SOCKET_SLOT_TTL_MS = 90_000;

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
    tickets: new PostgresTickets(db.orm, db.sql, clock, randomBytes, options.ticketTTLSeconds),
    refreshLease: new PollingRefreshLease(new PostgresLeaseTable(db.orm), clock, randomBytes, options.lease),
    events: bus,
    logoutTokenJTIs: new PostgresLogoutTokenJTIs(db.orm, clock),
    operatorActions: new PostgresOperatorActions(db.orm, bus, clock),
    socketSlots: new PostgresSocketSlots(db.orm, db.sql, bus.nodeId, clock, randomBytes, options.socketSlotTTLMs ?? DEFAULT_SOCKET_SLOT_TTL_MS),
    isUnavailableError: isStoreUnavailable,
    isHealthy: () => db.isHealthy(),
    close: async () => {
      await bus.close();
      await db.close();
    },
  };
}

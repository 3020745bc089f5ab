import { AccountStore } from "../../auth/accounts";
import { LoginAttemptStore } from "../../auth/login-attempts";
import { SessionStore, type SessionStoreOptions } from "../../auth/session";
import { SessionEvents } from "../../auth/session-events";
import type { AuditLog } from "../../audit/log";
import type { Clock, RandomBytes } from "../../clock";
import type { TokenCipher } from "../../crypto/token-cipher";
import type { Database } from "../../db/database";
import { LogoutTokenJTIStore } from "../../auth/logout-token";
import { TicketStore } from "../../ws/tickets";
import { isStoreUnavailable } from "../errors";
import { MemorySocketSlots } from "../memory-slots";
import { SqliteOperatorActions } from "./operator-actions";
import { LocalEventBus } from "../local-bus";
import { MemoryLeaseTable, PollingRefreshLease, type LeaseOptions } from "../lease";
import type {
  AccountRepository,
  LogoutTokenJTIRepository,
  LoginAttemptRepository,
  RefreshLease,
  SessionEventBus,
  SessionRepository,
  SocketSlots,
  Store,
  TicketRepository,
} from "../types";

export interface SqliteStoreOptions {
  db: Database;
  cipher: TokenCipher;
  audit: AuditLog;
  clock: Clock;
  randomBytes: RandomBytes;
  sessions: SessionStoreOptions;
  ticketTTLSeconds: number;
  /** This process's bus; one is made when absent. */
  bus?: LocalEventBus;
  /** Shared by every store of this process (tests open several on one file); one is made when absent. */
  leaseTable?: MemoryLeaseTable;
  /** Shared like the lease table; one is made when absent. */
  socketSlots?: MemorySocketSlots;
  lease?: LeaseOptions;
}

/**
 * The embedded engine: the existing synchronous classes, unchanged, behind the async
 * interface. One process is one node, so the bus and the refresh lease live in its memory.
 */
export function createSqliteStore(options: SqliteStoreOptions): Store & SqliteHandles {
  const { db, cipher, audit, clock, randomBytes } = options;
  const bus = options.bus ?? new LocalEventBus(new SessionEvents());
  const sessionStore = new SessionStore(db, cipher, bus.events, audit, clock, randomBytes, options.sessions);
  const accountStore = new AccountStore(db, clock, randomBytes);
  const attemptStore = new LoginAttemptStore(db, cipher, clock, randomBytes);
  const ticketStore = new TicketStore(db, clock, randomBytes, options.ticketTTLSeconds);
  const jtiStore = new LogoutTokenJTIStore(db, clock);

  // Each method: the synchronous call inside an async function, so a throw becomes a rejection.
  const sessions: SessionRepository = {
    create: async (input) => sessionStore.create(input),
    validate: async (token, o) => sessionStore.validate(token, o),
    authenticate: async (token, o) => {
      const session = sessionStore.validate(token, o);
      const account = session === null ? null : accountStore.find(session.accountId, session.provider);
      return session === null || account === null ? null : { session, account };
    },
    touch: async (sessionId, at) => sessionStore.touch(sessionId, at),
    findLive: async (id) => sessionStore.findLive(id),
    list: async (accountId, currentId) => sessionStore.list(accountId, currentId),
    revoke: async (accountId, sessionId, reason) => sessionStore.revoke(accountId, sessionId, reason),
    revokeOthers: async (accountId, currentId) => sessionStore.revokeOthers(accountId, currentId),
    end: async (sessionId, accountId, reason) => sessionStore.end(sessionId, accountId, reason),
    endByProviderSession: async (provider, match) => sessionStore.endByProviderSession(provider, match),
    adoptEnded: async (row, reason) => sessionStore.adoptEnded(row, reason),
    countLive: async () => sessionStore.countLive(),
    sweepExpired: async () => sessionStore.sweepExpired(),
    setGrantRevoker: (revoker) => sessionStore.setGrantRevoker(revoker),
    revocationsSettled: () => sessionStore.revocationsSettled(),
    readTokens: async (sessionId) => sessionStore.readTokens(sessionId),
    checkTokens: async (session) => sessionStore.checkTokens(session),
    replaceTokens: async (sessionId, expected, tokens) => sessionStore.replaceTokens(sessionId, expected, tokens),
    version: async (sessionId) => sessionStore.version(sessionId),
  };
  const accounts: AccountRepository = {
    findOrCreate: async (identity, provider) => accountStore.findOrCreate(identity, provider),
    find: async (id, provider) => accountStore.find(id, provider),
    isBlocked: async (id) => accountStore.isBlocked(id),
    findIdByIdentity: async (issuer, subject) => accountStore.findIdByIdentity(issuer, subject),
  };
  const logoutTokenJTIs: LogoutTokenJTIRepository = {
    remember: async (issuer, jti, expiresAt) => jtiStore.remember(issuer, jti, expiresAt),
    sweep: async () => jtiStore.sweep(),
  };
  const loginAttempts: LoginAttemptRepository = {
    start: async (input) => attemptStore.start(input),
    consume: async (handle, state) => attemptStore.consume(handle, state),
    pending: async (handle) => attemptStore.pending(handle),
  };
  const tickets: TicketRepository = {
    issue: async (sessionId) => ticketStore.issue(sessionId),
    redeem: async (ticket) => ticketStore.redeem(ticket),
    sweep: async () => ticketStore.sweep(),
  };
  const memorySlots = options.socketSlots ?? new MemorySocketSlots(randomBytes);
  const socketSlots: SocketSlots = {
    claim: (sessionId, cap) => memorySlots.claim(sessionId, cap),
    release: (slot) => memorySlots.release(slot),
    renew: () => memorySlots.renew(),
    admit: async (ticket, sessionId, cap) => {
      const redeemed = ticketStore.redeem(ticket);
      if (redeemed.status !== "valid") return redeemed;
      if (redeemed.sessionId !== sessionId) return { status: "wrong_session" };
      const slot = await memorySlots.claim(sessionId, cap);
      return slot === null ? { status: "full" } : { status: "admitted", slot };
    },
  };
  const refreshLease: RefreshLease = new PollingRefreshLease(options.leaseTable ?? new MemoryLeaseTable(), clock, randomBytes, options.lease);
  const events: SessionEventBus = bus;
  return {
    engine: "sqlite",
    db,
    sessionStore,
    ticketStore,
    sessionEvents: bus.events,
    sessions,
    accounts,
    loginAttempts,
    tickets,
    refreshLease,
    events,
    logoutTokenJTIs,
    operatorActions: new SqliteOperatorActions(db, clock),
    socketSlots,
    isUnavailableError: isStoreUnavailable,
    isHealthy: async () => db.isHealthy(),
    close: async () => db.close(),
  };
}

/** The embedded engine's synchronous classes, for tests that look into the file. */
export interface SqliteHandles {
  db: Database;
  sessionStore: SessionStore;
  ticketStore: TicketStore;
  sessionEvents: SessionEvents;
}

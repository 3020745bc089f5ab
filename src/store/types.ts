import type { Account } from "../auth/accounts";
import type { LoginAttempt } from "../auth/login-attempts";
import type { ProviderIdentity } from "../auth/providers";
import type { GrantRevoker, ProviderTokens, Session, SessionListing } from "../auth/session";
import type { SessionEnded, SessionEndReason } from "../auth/session-events";
import type { TicketRedemption } from "../ws/tickets";

/**
 * Everything the gate, the middleware, the login and the relays keep between requests, behind
 * one async interface (STYLE.md 13). `sqlite/` wraps the embedded single-node classes;
 * `postgres/` serves any number of nodes on one database. Nothing above this interface knows
 * which engine runs. The semantics are the SQLite classes' (src/auth/session.ts and friends):
 * one parametrised suite (test/store/store.test.ts) holds both to them.
 */
export interface Store {
  readonly engine: "sqlite" | "postgres";
  readonly sessions: SessionRepository;
  readonly accounts: AccountRepository;
  readonly loginAttempts: LoginAttemptRepository;
  readonly tickets: TicketRepository;
  readonly refreshLease: RefreshLease;
  readonly events: SessionEventBus;
  readonly logoutTokenJTIs: LogoutTokenJTIRepository;
  readonly operatorActions: OperatorActionQueue;
  readonly socketSlots: SocketSlots;
  /**
   * True when `error` says the database cannot be reached or cannot take the statement
   * now (connection lost or refused, busy, read-only, statement timeout): the caller
   * answers 503 and the client retries. Anything else is a bug (500).
   */
  isUnavailableError(error: unknown): boolean;
  /** True when the database answers a trivial query now (for `/readyz`). */
  isHealthy(): Promise<boolean>;
  /** Stops the listener and closes every connection this store opened. */
  close(): Promise<void>;
}

/** Server-side sessions; each method keeps the rules of `SessionStore` in src/auth/session.ts. */
export interface SessionRepository {
  /** A new session (never a reused one: ASVS 7.2.4) and its cookie token `id.secret`. */
  create(input: { accountId: string; provider: string; userAgent: string; tokens: ProviderTokens; providerSid?: string | null }): Promise<{
    session: Session;
    token: string;
  }>;
  /** The session a token names, or null (unknown, forged or expired: expiry ends it). Slides the idle window once a minute at most. */
  validate(token: string, options: { slide: boolean }): Promise<Session | null>;
  /**
   * {@link validate}, then the session's account as `AccountRepository.find(session.accountId,
   * session.provider)` finds it; null when either is missing (a blocked account's session
   * opens nothing). What every request with a cookie asks: one round trip on PostgreSQL.
   */
  authenticate(token: string, options: { slide: boolean }): Promise<{ session: Session; account: Account } | null>;
  /** Activity seen on a relayed socket at `at`; never revives an idle session. */
  touch(sessionId: string, at: number): Promise<void>;
  /** The session by id if it still lives, without sliding (the socket recheck). */
  findLive(id: string): Promise<Session | null>;
  list(accountId: string, currentId: string): Promise<SessionListing[]>;
  revoke(accountId: string, sessionId: string, reason: SessionEndReason): Promise<boolean>;
  revokeOthers(accountId: string, currentId: string): Promise<number>;
  /** Deletes the session if it is `accountId`'s, publishes its end on {@link Store.events} and revokes its refresh token. */
  end(sessionId: string, accountId: string, reason: SessionEndReason): Promise<boolean>;
  /**
   * OIDC Back-Channel Logout 1.0 2.7: ends the sessions of `provider` a logout token names
   * (its provider session `sid`, its subject's account, or both); returns how many.
   */
  endByProviderSession(provider: string, match: { sid: string | null; accountId: string | null }): Promise<number>;
  /**
   * Announces a session another process already deleted (the operator's command): audit
   * event, session-ended event on every node, refresh token revoked, as if it ended here.
   */
  adoptEnded(row: { id: string; accountId: string; provider: string; refreshToken: string | null }, reason: SessionEndReason): Promise<void>;
  /** Sessions neither idle nor past their absolute expiry now (the metrics gauge). */
  countLive(): Promise<number>;
  sweepExpired(): Promise<number>;
  /** The one function that revokes an ended session's refresh token at its provider (SECURITY.md I43). */
  setGrantRevoker(revoker: GrantRevoker): void;
  revocationsSettled(): Promise<void>;
  /** Opens the provider tokens (AES-256-GCM, SECURITY.md D17); throws DecryptionError on tampering. */
  readTokens(sessionId: string): Promise<ProviderTokens | null>;
  /** Throws DecryptionError when a stored provider token no longer authenticates; reveals none. */
  checkTokens(session: Session): Promise<void>;
  /** Compare-and-swap on `version`: false when another writer refreshed first or the session is gone. */
  replaceTokens(sessionId: string, expectedVersion: number, tokens: ProviderTokens): Promise<boolean>;
  version(sessionId: string): Promise<number | null>;
}

/** Accounts keyed by (issuer, subject), OIDC Core 5.7. */
export interface AccountRepository {
  findOrCreate(identity: ProviderIdentity, provider: string): Promise<{ account: Account; created: boolean }>;
  /** The account with its subject at `provider`; null when there is none or it is blocked. */
  find(id: string, provider: string): Promise<Account | null>;
  /** True when an operator has blocked the account. */
  isBlocked(id: string): Promise<boolean>;
  /** The account id an (issuer, subject) identity leads to, blocked or not; null when unknown. */
  findIdByIdentity(issuer: string, subject: string): Promise<string | null>;
}

/** The `jti` of every accepted back-channel logout token (OIDC BCL 1.0 2.6 item 9), shared by every node. */
export interface LogoutTokenJTIRepository {
  /** Records the jti; false when it was already there (a replay), on whichever node it was seen. */
  remember(issuer: string, jti: string, expiresAt: number): Promise<boolean>;
  /** Forgets jtis whose tokens would now be refused as too old anyway. */
  sweep(): Promise<number>;
}

/** One row the operator's command wrote (src/admin/operator-store.ts). */
export interface OperatorActionRow {
  id: number;
  action: string;
  accountId: string;
  sessionId: string | null;
  provider: string | null;
  /** An ended session's refresh token, still sealed for its session. */
  refreshToken: string | null;
  operator: string;
  detail: string | null;
  at: number;
}

/** The hand-over table between the operator's command and the running nodes. */
export interface OperatorActionQueue {
  /**
   * Marks up to `limit` pending actions handled (their sealed refresh tokens wiped from the
   * table) and returns them as they were, oldest first. Each action is claimed by exactly
   * one node, once.
   */
  claim(limit: number): Promise<OperatorActionRow[]>;
  /** Forgets actions handled more than `keepMs` ago. */
  sweep(keepMs: number): Promise<number>;
  /**
   * Calls `changed` once now and whenever the command may have written something: on
   * SQLite when `PRAGMA data_version` moves (looked at every `pollMs`), on PostgreSQL on the
   * command's NOTIFY (and every `fallbackMs`, for a notification missed while the listener
   * was away). Returns the function that stops watching.
   */
  watch(changed: () => void, options: { pollMs: number; fallbackMs: number }): () => void;
}

/**
 * WS_MAX_SOCKETS_PER_SESSION across nodes: a slot per open (or opening) socket. SQLite: a
 * count in this process (one node). PostgreSQL: a `live_sockets` row per socket, claimed
 * under the session row's lock, renewed by its node, lapsing when its node died.
 */
export interface SocketSlots {
  /** A slot for one more socket of the session, or null when it already holds `cap`. */
  claim(sessionId: string, cap: number): Promise<string | null>;
  /**
   * The upgrade's steps 4-6 (SECURITY.md E22) in this order: spends the one-time ticket
   * (whatever follows, it is spent), checks that it is `sessionId`'s, then claims a slot as
   * {@link claim} does. One round trip on PostgreSQL.
   */
  admit(ticket: string, sessionId: string, cap: number): Promise<SocketAdmission>;
  release(slot: string): Promise<void>;
  /** Keeps this node's slots from lapsing (called on every registry recheck). */
  renew(): Promise<void>;
}

/** What {@link SocketSlots.admit} decided: a slot, or which step refused. */
export type SocketAdmission =
  | { status: "admitted"; slot: string }
  /** The ticket: never issued, already spent, or past its expiry (and now spent). */
  | { status: "unknown" | "expired" }
  /** The ticket was another session's (and is now spent). */
  | { status: "wrong_session" }
  /** The session holds `cap` sockets already. */
  | { status: "full" };

/** Logins in progress; each is consumed once (RFC 9700 4.7.1). */
export interface LoginAttemptRepository {
  start(input: {
    provider: string;
    returnTo: string;
    handle: string | null;
    previousSession: { id: string; accountId: string } | null;
  }): Promise<{ handle: string; attempt: LoginAttempt }>;
  consume(handle: string, state: string): Promise<LoginAttempt | null>;
  pending(handle: string): Promise<number>;
}

/** One-time WebSocket tickets (SECURITY.md E23, I41): spent once on whichever node. */
export interface TicketRepository {
  issue(sessionId: string): Promise<{ ticket: string; expiresIn: number }>;
  redeem(ticket: string): Promise<TicketRedemption>;
  sweep(): Promise<number>;
}

export type LeaseOutcome<T> =
  /** This node held the lease and ran the refresh. */
  | { ran: true; value: T }
  /**
   * Another node held it; it has released it (or the session has ended, or `maxWaitMs`
   * passed). The caller re-reads the session's tokens: they are the holder's result.
   */
  | { ran: false };

/**
 * The provider-token refresh runs on one node at a time per session (SECURITY.md I41;
 * RFC 9700 4.14.2: a rotated refresh token used twice may revoke the whole grant). A lease,
 * not only the `version` compare-and-swap: the others must not even call the provider.
 * A lease lives `ttlMs` by the injected clock, so a holder that died (kill -9 mid-refresh)
 * holds nobody up for longer than that; one of the waiters then takes the lease over.
 */
export interface RefreshLease {
  run<T>(sessionId: string, refresh: () => Promise<T>): Promise<LeaseOutcome<T>>;
}

/**
 * How news of a session's end travels (STYLE.md 14): every way a session ends publishes
 * here, one subscriber (the socket registry) closes sockets and held requests. The
 * PostgreSQL bus also carries it to every other node (LISTEN/NOTIFY).
 */
export interface SessionEventBus {
  /** Delivers to this node's subscribers at once; resolves once other nodes have been told (if any). */
  publish(event: SessionEnded): Promise<void>;
  subscribe(listener: (event: SessionEnded) => void): () => void;
  /**
   * Called after the bus lost its connection to other nodes and got it back: events may
   * have been missed meanwhile, so the subscriber rechecks every live socket's session.
   */
  onResync(listener: () => void): () => void;
  /** False while other nodes' events cannot reach this one (the listener is reconnecting). */
  readonly connected: boolean;
}

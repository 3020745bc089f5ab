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
  /** True when the database answers a trivial query now (for `/readyz`). */
  isHealthy(): Promise<boolean>;
  /** Stops the listener and closes every connection this store opened. */
  close(): Promise<void>;
}

/** Server-side sessions; each method keeps the rules of `SessionStore` in src/auth/session.ts. */
export interface SessionRepository {
  /** A new session (never a reused one: ASVS 7.2.4) and its cookie token `id.secret`. */
  create(input: { accountId: string; provider: string; userAgent: string; tokens: ProviderTokens }): Promise<{
    session: Session;
    token: string;
  }>;
  /** The session a token names, or null (unknown, forged or expired: expiry ends it). Slides the idle window once a minute at most. */
  validate(token: string, options: { slide: boolean }): Promise<Session | null>;
  /** Activity seen on a relayed socket at `at`; never revives an idle session. */
  touch(sessionId: string, at: number): Promise<void>;
  /** The session by id if it still lives, without sliding (the socket recheck). */
  findLive(id: string): Promise<Session | null>;
  list(accountId: string, currentId: string): Promise<SessionListing[]>;
  revoke(accountId: string, sessionId: string, reason: SessionEndReason): Promise<boolean>;
  revokeOthers(accountId: string, currentId: string): Promise<number>;
  /** Deletes the session if it is `accountId`'s, publishes its end on {@link Store.events} and revokes its refresh token. */
  end(sessionId: string, accountId: string, reason: SessionEndReason): Promise<boolean>;
  sweepExpired(): Promise<number>;
  /** The one function that revokes an ended session's refresh token at its provider (SECURITY.md I43). */
  setGrantRevoker(revoker: GrantRevoker): void;
  revocationsSettled(): Promise<void>;
  /** Opens the provider tokens (AES-256-GCM, SECURITY.md D17); throws DecryptionError on tampering. */
  readTokens(sessionId: string): Promise<ProviderTokens | null>;
  /** Compare-and-swap on `version`: false when another writer refreshed first or the session is gone. */
  replaceTokens(sessionId: string, expectedVersion: number, tokens: ProviderTokens): Promise<boolean>;
  version(sessionId: string): Promise<number | null>;
}

/** Accounts keyed by (issuer, subject), OIDC Core 5.7. */
export interface AccountRepository {
  findOrCreate(identity: ProviderIdentity, provider: string): Promise<{ account: Account; created: boolean }>;
  find(id: string, provider: string): Promise<Account | null>;
}

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

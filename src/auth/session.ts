import { and, eq, lte, ne, or, sql, type SQL } from "drizzle-orm";
import type { Statement } from "better-sqlite3";
import type { AuditLog } from "../audit/log";
import type { Clock, RandomBytes } from "../clock";
import { DecryptionError, TokenCipher } from "../crypto/token-cipher";
import { constantTimeEqual, sha256 } from "../crypto/hash";
import { randomToken } from "../crypto/random";
import type { Database } from "../db/database";
import { sessions, type SessionRow } from "../db/schema";
import { RecentMap } from "../recent-map";
import type { SessionEndReason, SessionEvents } from "./session-events";

/** A validated, live session. Provider tokens are not part of it: see {@link SessionStore.readTokens}. */
export interface Session {
  id: string;
  accountId: string;
  provider: string;
  createdAt: number;
  lastSeenAt: number;
  expiresAt: number;
  idleExpiresAt: number;
  userAgent: string;
  accessTokenExpiresAt: number | null;
  version: number;
}

export interface ProviderTokens {
  accessToken: string;
  /** Milliseconds since the epoch, when the provider said. */
  accessTokenExpiresAt: number | null;
  refreshToken: string | null;
  refreshTokenExpiresAt: number | null;
  idToken: string | null;
}

export interface SessionListing {
  id: string;
  createdAt: number;
  lastSeenAt: number;
  userAgent: string;
  current: boolean;
}

/** A provider refresh token whose session has ended, to be revoked at the provider. */
export interface EndedGrant {
  sessionId: string;
  provider: string;
  refreshToken: string;
}

/** Revokes an ended session's refresh token at its provider; rejects when that failed. */
export type GrantRevoker = (grant: EndedGrant) => Promise<void>;

export interface SessionStoreOptions {
  idleTimeoutSeconds: number;
  absoluteTimeoutSeconds: number;
}

// ID: 16 bytes (128 bits) in base32, 26 characters; public within the user's own list.
export const ID_BYTES = 16;
// Secret: 25 bytes from the CSPRNG, 200 bits of entropy, 40 base32 characters. Only its
// SHA-256 is stored, so a copy of the database cannot be turned into a cookie (ASVS 7.2.3).
export const SECRET_BYTES = 25;
export const TOKEN_PATTERN = /^([a-z2-7]{26})\.([a-z2-7]{40})$/;

/** The id and secret of a cookie token `id.secret`; null when it is not one. */
export function parseToken(token: string): { id: string; secret: string } | null {
  const match = TOKEN_PATTERN.exec(token);
  return match === null ? null : { id: match[1] as string, secret: match[2] as string };
}

// ASVS 7.3.1 wants idle expiry; writing last_seen_at on every request would turn every read
// into a write, so the sliding window moves at most once a minute per session.
export const SLIDE_THROTTLE_MS = 60_000;
export const USER_AGENT_MAX = 256;

export type TokenField = "access_token" | "refresh_token" | "id_token";

/** Sessions whose checked ciphertexts are remembered at most; the oldest go first. */
const INTACT_ENTRIES = 10_000;

/** A session row's sealed provider tokens. */
type SealedRow = { accessToken: string | null; refreshToken: string | null; idToken: string | null };

/**
 * The tamper check of both engines' `checkTokens` (SECURITY.md D17), for routes that send no
 * provider token. AES-GCM over the same ciphertext and associated data answers the same every
 * time, so the exact ciphertexts that passed once are remembered (ciphertext only, never a
 * plaintext) and only a changed one is opened again: three decryptions per /api request cost
 * a tenth of the relay's CPU (issue 14). The row a request's session was validated from is
 * remembered with the session, so an unchanged one needs no second read.
 */
export class TokenTamperCheck {
  /** The exact ciphertexts that authenticated, by session. */
  private readonly intact = new RecentMap<string, string>(INTACT_ENTRIES);
  /** The ciphertexts in the row each validated session was read from. */
  private readonly sealedAtValidation = new WeakMap<Session, string>();

  constructor(private readonly cipher: TokenCipher) {}

  /** `session` was validated from `row`. */
  validated(session: Session, row: SealedRow): void {
    this.sealedAtValidation.set(session, sealedTokens(row));
  }

  /** True when the row `session` was validated from holds ciphertexts that passed before: nothing to read or open. */
  passedAtValidation(session: Session): boolean {
    const seen = this.sealedAtValidation.get(session);
    // Stryker: equivalent (`seen !== undefined` → `true`) — every session that reaches
    // checkTokens comes from authenticate(), which records it here.
    return seen !== undefined && this.intact.get(session.id) === seen;
  }

  /** Opens `row`'s tokens unless these exact ciphertexts passed before; throws {@link DecryptionError} on tampering. */
  verify(sessionId: string, row: SealedRow): void {
    if (row.accessToken === null) return;
    const sealed = sealedTokens(row);
    // Stryker: equivalent for security (the comparison → `false`) — every check would open
    // the tokens again: as safe, three decryptions slower (the cache exists for issue 14).
    if (this.intact.get(sessionId) === sealed) return;
    this.cipher.open(row.accessToken, associatedData(sessionId, "access_token"));
    if (row.refreshToken !== null) this.cipher.open(row.refreshToken, associatedData(sessionId, "refresh_token"));
    if (row.idToken !== null) this.cipher.open(row.idToken, associatedData(sessionId, "id_token"));
    this.intact.set(sessionId, sealed);
  }
}

/** The columns of a session row both engines share: the session's own, and its sealed tokens. */
type SessionRowColumns = SealedRow & Omit<Session, "idleExpiresAt">;

/** The session a row of either engine holds, its idle expiry `idleMs` after it was last seen. */
export function sessionFromRow(row: SessionRowColumns, idleMs: number): Session {
  return {
    id: row.id,
    accountId: row.accountId,
    provider: row.provider,
    createdAt: row.createdAt,
    lastSeenAt: row.lastSeenAt,
    expiresAt: row.expiresAt,
    idleExpiresAt: Math.min(row.lastSeenAt + idleMs, row.expiresAt),
    userAgent: row.userAgent,
    accessTokenExpiresAt: row.accessTokenExpiresAt,
    version: row.version,
  };
}

/** The provider tokens' columns, each sealed with the session id and its field as associated data (SECURITY.md D17). */
export function sealTokens(cipher: TokenCipher, sessionId: string, tokens: ProviderTokens): SealedRow & { accessToken: string; accessTokenExpiresAt: number | null } {
  const sealOptional = (value: string | null, field: TokenField): string | null => (value === null ? null : cipher.seal(value, associatedData(sessionId, field)));
  return {
    accessToken: cipher.seal(tokens.accessToken, associatedData(sessionId, "access_token")),
    accessTokenExpiresAt: tokens.accessTokenExpiresAt,
    refreshToken: sealOptional(tokens.refreshToken, "refresh_token"),
    idToken: sealOptional(tokens.idToken, "id_token"),
  };
}

/** Opens a row's provider tokens; null when it has none. Throws {@link DecryptionError} on tampering. */
export function openTokens(cipher: TokenCipher, sessionId: string, row: SealedRow & { accessTokenExpiresAt: number | null }): ProviderTokens | null {
  if (row.accessToken === null) return null;
  const openOptional = (value: string | null, field: TokenField): string | null => (value === null ? null : cipher.open(value, associatedData(sessionId, field)));
  return {
    accessToken: cipher.open(row.accessToken, associatedData(sessionId, "access_token")),
    accessTokenExpiresAt: row.accessTokenExpiresAt,
    refreshToken: openOptional(row.refreshToken, "refresh_token"),
    refreshTokenExpiresAt: null,
    idToken: openOptional(row.idToken, "id_token"),
  };
}

/** The audit event of a session's end. */
export function sessionEndEvent(reason: SessionEndReason): "session.logged_out" | "session.expired" | "session.revoked" {
  return reason === "logout" ? "session.logged_out" : reason === "expired" ? "session.expired" : "session.revoked";
}

/**
 * Hands an ended session's refresh token to the revoker (SECURITY.md I43), for both engines.
 * Best effort and never awaited: a slow or unreachable provider must not hold up a logout, a
 * callback or a request that found its session expired. A failure is audited; the session
 * is over either way (ASVS 7.4.1).
 */
export class GrantReleaser {
  private revoker: GrantRevoker | null = null;
  private readonly revocations = new Set<Promise<void>>();

  constructor(
    private readonly cipher: TokenCipher,
    private readonly audit: AuditLog,
  ) {}

  /** The one function that revokes a grant at its provider (the token refresher's). */
  setRevoker(revoker: GrantRevoker): void {
    this.revoker = revoker;
  }

  /** Resolves once every revocation started so far has been answered or has failed. */
  async settled(): Promise<void> {
    await Promise.all([...this.revocations]);
  }

  /** The session `row` (its refresh token still sealed) ended for `reason`. */
  release(row: { id: string; provider: string; refreshToken: string | null }, reason: SessionEndReason): void {
    // The provider refused this grant itself: nothing left to revoke.
    if (reason === "refresh_refused" || row.refreshToken === null || this.revoker === null) {
      return;
    }
    let refreshToken: string;
    try {
      refreshToken = this.cipher.open(row.refreshToken, associatedData(row.id, "refresh_token"));
    } catch (error) {
      if (!(error instanceof DecryptionError)) throw error;
      this.audit.write("crypto.decrypt.failed", { sessionId: row.id, reason: "refresh token at session end", detail: error.message });
      return;
    }
    const revocation: Promise<void> = this.revoker({ sessionId: row.id, provider: row.provider, refreshToken })
      .catch((error: unknown) => {
        this.audit.write("token.revoke.failed", {
          sessionId: row.id,
          provider: row.provider,
          detail: error instanceof Error ? error.message : "revocation failed",
        });
      })
      .finally(() => this.revocations.delete(revocation));
    this.revocations.add(revocation);
  }
}

/**
 * Server-side sessions (Copenhagen Book; Lucia's `validateSessionToken`). Unknown, expired or
 * forged tokens are expected outcomes and return null; a broken database throws.
 */
export class SessionStore {
  private readonly selectById: Statement<[string], SessionRow | undefined>;
  private readonly touchStatement: Statement<[{ at: number; id: string; throttle: number; idle: number }]>;
  private readonly countLiveStatement: Statement<[number, number], { n: number }>;
  private readonly idleMs: number;
  private readonly absoluteMs: number;
  private readonly grants: GrantReleaser;
  private readonly tamperCheck: TokenTamperCheck;

  constructor(
    private readonly db: Database,
    private readonly cipher: TokenCipher,
    private readonly events: SessionEvents,
    private readonly audit: AuditLog,
    private readonly clock: Clock,
    private readonly randomBytes: RandomBytes,
    options: SessionStoreOptions,
  ) {
    this.idleMs = options.idleTimeoutSeconds * 1000;
    this.absoluteMs = options.absoluteTimeoutSeconds * 1000;
    this.tamperCheck = new TokenTamperCheck(cipher);
    this.grants = new GrantReleaser(cipher, audit);
    // The session lookup is on every request and every upgrade: one prepared statement.
    this.selectById = db.sqlite.prepare(
      `SELECT id, account_id AS accountId, secret_hash AS secretHash, provider, created_at AS createdAt,
              last_seen_at AS lastSeenAt, expires_at AS expiresAt, user_agent AS userAgent,
              access_token AS accessToken, access_token_expires_at AS accessTokenExpiresAt,
              refresh_token AS refreshToken, id_token AS idToken, version
         FROM sessions WHERE id = ?`,
    ) as Statement<[string], SessionRow | undefined>;
    // Slides last_seen_at to `at` only if that is a minute or more later (the same throttle as
    // HTTP requests) and the session had not already gone idle by then: activity cannot revive it.
    this.touchStatement = db.sqlite.prepare(
      "UPDATE sessions SET last_seen_at = @at WHERE id = @id AND last_seen_at <= @at - @throttle AND last_seen_at + @idle > @at",
    );
    this.countLiveStatement = db.sqlite.prepare("SELECT count(*) AS n FROM sessions WHERE expires_at > ? AND last_seen_at > ?") as Statement<
      [number, number],
      { n: number }
    >;
  }

  /** Sessions neither idle nor past their absolute expiry now (the metrics gauge). */
  countLive(): number {
    const now = this.clock.now();
    return this.countLiveStatement.get(now, now - this.idleMs)?.n ?? 0;
  }

  /** Creates a new session (never reuses one: ASVS 7.2.4) and returns it with its token. */
  create(input: { accountId: string; provider: string; userAgent: string; tokens: ProviderTokens; providerSid?: string | null }): {
    session: Session;
    token: string;
  } {
    const now = this.clock.now();
    const id = randomToken(this.randomBytes, ID_BYTES);
    const secret = randomToken(this.randomBytes, SECRET_BYTES);
    // BBA: the session must not outlive the provider's refresh token, when we know its lifetime.
    const refreshCap = input.tokens.refreshTokenExpiresAt ?? Number.POSITIVE_INFINITY;
    const expiresAt = Math.min(now + this.absoluteMs, refreshCap);
    this.db.orm
      .insert(sessions)
      .values({
        id,
        accountId: input.accountId,
        secretHash: sha256(secret),
        provider: input.provider,
        createdAt: now,
        lastSeenAt: now,
        expiresAt,
        userAgent: input.userAgent.slice(0, USER_AGENT_MAX),
        ...sealTokens(this.cipher, id, input.tokens),
        providerSid: input.providerSid ?? null,
      })
      .run();
    this.audit.write("session.created", { sessionId: id, accountId: input.accountId, provider: input.provider });
    const row = this.selectById.get(id);
    // Stryker: untested (the message) — only another process deleting the row inserted just
    // above, between these two synchronous statements, could get here.
    if (row === undefined) {
      throw new Error("session vanished right after insert");
    }
    return { session: sessionFromRow(row, this.idleMs), token: `${id}.${secret}` };
  }

  /**
   * The session a cookie names, or null. Slides the idle window unless `slide` is false.
   */
  validate(token: string, options: { slide: boolean }): Session | null {
    const parsed = parseToken(token);
    if (parsed === null) {
      return null;
    }
    const { id, secret } = parsed;
    const row = this.selectById.get(id);
    if (row === undefined) {
      return null;
    }
    if (!constantTimeEqual(sha256(secret), row.secretHash)) {
      return null;
    }
    const now = this.clock.now();
    if (now >= row.expiresAt || now >= row.lastSeenAt + this.idleMs) {
      this.end(row.id, row.accountId, "expired");
      return null;
    }
    if (options.slide && now - row.lastSeenAt >= SLIDE_THROTTLE_MS) {
      this.db.orm.update(sessions).set({ lastSeenAt: now }).where(eq(sessions.id, row.id)).run();
      row.lastSeenAt = now;
    }
    const session = sessionFromRow(row, this.idleMs);
    this.tamperCheck.validated(session, row);
    return session;
  }

  /** Records activity seen elsewhere (game messages on a relayed socket) at time `at`. */
  touch(sessionId: string, at: number): void {
    if (at > this.clock.now()) return;
    this.touchStatement.run({ at, id: sessionId, throttle: SLIDE_THROTTLE_MS, idle: this.idleMs });
  }

  /** The session by id if it still lives, without sliding it (for the socket recheck). */
  findLive(id: string): Session | null {
    const row = this.selectById.get(id);
    if (row === undefined) {
      return null;
    }
    const now = this.clock.now();
    if (now >= row.expiresAt || now >= row.lastSeenAt + this.idleMs) {
      this.end(row.id, row.accountId, "expired");
      return null;
    }
    return sessionFromRow(row, this.idleMs);
  }

  list(accountId: string, currentId: string): SessionListing[] {
    const now = this.clock.now();
    return this.db.orm
      .select({
        id: sessions.id,
        createdAt: sessions.createdAt,
        lastSeenAt: sessions.lastSeenAt,
        userAgent: sessions.userAgent,
        expiresAt: sessions.expiresAt,
      })
      .from(sessions)
      .where(eq(sessions.accountId, accountId))
      .orderBy(sessions.createdAt)
      .all()
      .filter((row) => now < row.expiresAt && now < row.lastSeenAt + this.idleMs)
      .map((row) => ({
        id: row.id,
        createdAt: row.createdAt,
        lastSeenAt: row.lastSeenAt,
        userAgent: row.userAgent,
        current: row.id === currentId,
      }));
  }

  /** Ends one of the account's own sessions; false when it is not theirs or already gone. */
  revoke(accountId: string, sessionId: string, reason: SessionEndReason): boolean {
    return this.end(sessionId, accountId, reason);
  }

  /** Ends every other session of the account; returns how many. */
  revokeOthers(accountId: string, currentId: string): number {
    return this.remove(and(eq(sessions.accountId, accountId), ne(sessions.id, currentId)), "revoked");
  }

  /** Deletes the session row if it belongs to `accountId`; publishes its end. */
  end(sessionId: string, accountId: string, reason: SessionEndReason): boolean {
    return this.remove(and(eq(sessions.id, sessionId), eq(sessions.accountId, accountId)), reason) > 0;
  }

  /**
   * OIDC Back-Channel Logout 1.0 2.7: ends the sessions a logout token names, all of them
   * of `provider`. With a `sid`, the sessions the provider's session `sid` created (and,
   * when the token also names the subject, only those of that account); with only a
   * subject, every session of that account from this provider. Returns how many ended.
   */
  endByProviderSession(provider: string, match: { sid: string | null; accountId: string | null }): number {
    if (match.sid === null && match.accountId === null) return 0;
    return this.remove(
      and(
        eq(sessions.provider, provider),
        match.sid === null ? undefined : eq(sessions.providerSid, match.sid),
        match.accountId === null ? undefined : eq(sessions.accountId, match.accountId),
      ),
      "backchannel_logout",
    );
  }

  /**
   * Announces a session another process has already deleted (the operator's command, which
   * hands its work over through the `operator_actions` table): audit event, sockets closed,
   * refresh token revoked, exactly as if it had ended here.
   */
  adoptEnded(row: { id: string; accountId: string; provider: string; refreshToken: string | null }, reason: SessionEndReason): void {
    this.announce(row.id, row.accountId, reason);
    this.grants.release(row, reason);
  }

  /** Deletes every session past its idle or absolute expiry. */
  sweepExpired(): number {
    const now = this.clock.now();
    return this.remove(or(lte(sessions.expiresAt, now), lte(sql`${sessions.lastSeenAt} + ${this.idleMs}`, now)), "expired");
  }

  /**
   * Sets the one function that revokes a refresh token at its provider. Every way a session
   * ends goes through {@link remove}, which calls it: logout, revocation, expiry (lazy and
   * swept), a new login replacing the session (SECURITY.md I43).
   */
  setGrantRevoker(revoker: GrantRevoker): void {
    this.grants.setRevoker(revoker);
  }

  /** Resolves once every revocation started so far has been answered or has failed. */
  revocationsSettled(): Promise<void> {
    return this.grants.settled();
  }

  /** Throws {@link DecryptionError} when a stored provider token no longer authenticates (see {@link TokenTamperCheck}). */
  checkTokens(session: Session): void {
    // Stryker: equivalent for security (→ `false`) — the row is read again (one local SQLite
    // read) and checked in full; the PostgreSQL store's round trip is what round-trips.test.ts counts.
    if (this.tamperCheck.passedAtValidation(session)) return;
    const row = this.selectById.get(session.id);
    if (row !== undefined) this.tamperCheck.verify(session.id, row);
  }

  /** Opens the session's provider tokens. Throws {@link DecryptionError} on tampering. */
  readTokens(sessionId: string): ProviderTokens | null {
    const row = this.selectById.get(sessionId);
    return row === undefined ? null : openTokens(this.cipher, sessionId, row);
  }

  /**
   * Stores refreshed tokens if nobody else refreshed since `expectedVersion` was read
   * (compare-and-swap on `version`, so two processes cannot both rotate a refresh token).
   * Returns false when the swap lost.
   */
  replaceTokens(sessionId: string, expectedVersion: number, tokens: ProviderTokens): boolean {
    const refreshCap = tokens.refreshTokenExpiresAt;
    const result = this.db.orm
      .update(sessions)
      .set({
        ...sealTokens(this.cipher, sessionId, tokens),
        version: sql`${sessions.version} + 1`,
        ...(refreshCap === null ? {} : { expiresAt: sql`min(${sessions.expiresAt}, ${refreshCap})` }),
      })
      .where(and(eq(sessions.id, sessionId), eq(sessions.version, expectedVersion)))
      .run();
    return result.changes === 1;
  }

  /** The current version of a session row, or null when it is gone. */
  version(sessionId: string): number | null {
    return this.selectById.get(sessionId)?.version ?? null;
  }

  /**
   * The only place this process deletes session rows (the operator's command, another
   * process, hands its deletions over: {@link adoptEnded}). Each ended session is announced (audit event,
   * its sockets close) and its refresh token, read in the same statement that deletes the
   * row, is handed to the revoker.
   */
  private remove(where: SQL | undefined, reason: SessionEndReason): number {
    const ended = this.db.orm
      .delete(sessions)
      .where(where)
      .returning({ id: sessions.id, accountId: sessions.accountId, provider: sessions.provider, refreshToken: sessions.refreshToken })
      .all();
    for (const row of ended) {
      this.announce(row.id, row.accountId, reason);
      this.grants.release(row, reason);
    }
    return ended.length;
  }

  private announce(sessionId: string, accountId: string, reason: SessionEndReason): void {
    this.audit.write(sessionEndEvent(reason), { sessionId, accountId, reason });
    this.events.publishEnded({ sessionId, accountId, reason });
  }

}

/**
 * A session row's three token ciphertexts as one string, to compare with what passed before.
 * Stryker: equivalent (the `""` for a missing token → any other text with a space or not in
 * base64url) — it only has to differ from every ciphertext, and no ciphertext is empty or
 * holds a space.
 */
function sealedTokens(row: SealedRow): string {
  return `${row.accessToken ?? ""} ${row.refreshToken ?? ""} ${row.idToken ?? ""}`;
}

/** SECURITY.md D17: associated data = session id + field name. */
export function associatedData(sessionId: string, field: TokenField): string {
  return `portcullis/session/${sessionId}/${field}`;
}

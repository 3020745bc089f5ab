import { and, eq, gt, lte, ne, or, sql, type SQL } from "drizzle-orm";
import type { Account } from "../../auth/accounts";
import type { AuditLog } from "../../audit/log";
import {
  GrantReleaser,
  ID_BYTES,
  openTokens,
  parseToken,
  sealTokens,
  SECRET_BYTES,
  sessionEndEvent,
  sessionFromRow,
  SLIDE_THROTTLE_MS,
  TokenTamperCheck,
  USER_AGENT_MAX,
  type GrantRevoker,
  type ProviderTokens,
  type Session,
  type SessionListing,
  type SessionStoreOptions,
} from "../../auth/session";
import type { SessionEndReason } from "../../auth/session-events";
import type { Clock, RandomBytes } from "../../clock";
import { constantTimeEqual, sha256 } from "../../crypto/hash";
import { randomToken } from "../../crypto/random";
import { DecryptionError, type TokenCipher } from "../../crypto/token-cipher";
import type { PgORM } from "../../db/postgres";
import { accounts, refreshLeases, sessions } from "../../db/schema-pg";
import type { SessionRepository } from "../types";
import { accountFields, accountNotBlocked } from "./accounts";
import type { PostgresEventBus } from "./bus";

type SessionRow = typeof sessions.$inferSelect;

/**
 * The statements every request runs, prepared (issue 13). drizzle hands postgres.js an
 * unnamed statement otherwise, and postgres.js then asks the server to describe its
 * parameters first: two round trips and a parse and plan each time. Prepared, it is one
 * round trip once a connection has seen the statement.
 */
function preparedStatements(orm: PgORM) {
  return {
    byId: orm.select().from(sessions).where(eq(sessions.id, sql.placeholder("id"))).limit(1).prepare("session_by_id"),
    byIdWithAccount: orm
      .select({ session: sessions, account: accountFields(orm, sessions.provider) })
      .from(sessions)
      .leftJoin(accounts, and(eq(accounts.id, sessions.accountId), accountNotBlocked(orm)))
      .where(eq(sessions.id, sql.placeholder("id")))
      .limit(1)
      .prepare("session_with_account"),
    slide: orm
      .update(sessions)
      .set({ lastSeenAt: sql`${sql.placeholder("now")}::bigint` })
      .where(eq(sessions.id, sql.placeholder("id")))
      .prepare("session_slide"),
    // Only a minute or more later than the last slide, and never reviving a session already idle at `at`.
    touch: orm
      .update(sessions)
      .set({ lastSeenAt: sql`${sql.placeholder("at")}::bigint` })
      .where(
        and(
          eq(sessions.id, sql.placeholder("id")),
          lte(sessions.lastSeenAt, sql.placeholder("slidBefore")),
          gt(sessions.lastSeenAt, sql.placeholder("idleBefore")),
        ),
      )
      .prepare("session_touch"),
  };
}

/**
 * Server-side sessions on PostgreSQL, rule for rule those of `SessionStore` (src/auth/
 * session.ts): only the secret's SHA-256 is stored and compared in constant time, provider
 * tokens are sealed with the session id and field as associated data, token refreshes are a
 * compare-and-swap on `version`, and every way a session ends goes through {@link remove},
 * which publishes the end to every node and revokes the refresh token (SECURITY.md I43).
 */
export class PostgresSessions implements SessionRepository {
  private readonly idleMs: number;
  private readonly absoluteMs: number;
  private readonly grants: GrantReleaser;
  private readonly statements: ReturnType<typeof preparedStatements>;
  private readonly tamperCheck: TokenTamperCheck;

  constructor(
    private readonly orm: PgORM,
    private readonly cipher: TokenCipher,
    private readonly events: PostgresEventBus,
    private readonly audit: AuditLog,
    private readonly clock: Clock,
    private readonly randomBytes: RandomBytes,
    options: SessionStoreOptions,
    /** Told when other nodes could not be notified of an ended session (their periodic recheck still closes its sockets). */
    private readonly onPublishFailed: (error: unknown) => void = () => {},
  ) {
    this.idleMs = options.idleTimeoutSeconds * 1000;
    this.absoluteMs = options.absoluteTimeoutSeconds * 1000;
    this.statements = preparedStatements(orm);
    this.tamperCheck = new TokenTamperCheck(cipher);
    this.grants = new GrantReleaser(cipher, audit);
  }

  async create(input: { accountId: string; provider: string; userAgent: string; tokens: ProviderTokens; providerSid?: string | null }): Promise<{
    session: Session;
    token: string;
  }> {
    const now = this.clock.now();
    const id = randomToken(this.randomBytes, ID_BYTES);
    const secret = randomToken(this.randomBytes, SECRET_BYTES);
    // BBA: the session must not outlive the provider's refresh token, when we know its lifetime.
    const refreshCap = input.tokens.refreshTokenExpiresAt ?? Number.POSITIVE_INFINITY;
    const [row] = await this.orm
      .insert(sessions)
      .values({
        id,
        accountId: input.accountId,
        secretHash: sha256(secret),
        provider: input.provider,
        createdAt: now,
        lastSeenAt: now,
        expiresAt: Math.min(now + this.absoluteMs, refreshCap),
        userAgent: input.userAgent.slice(0, USER_AGENT_MAX),
        ...sealTokens(this.cipher, id, input.tokens),
        providerSid: input.providerSid ?? null,
      })
      .returning();
    if (row === undefined) {
      throw new Error("session insert returned no row");
    }
    this.audit.write("session.created", { sessionId: id, accountId: input.accountId, provider: input.provider });
    return { session: sessionFromRow(row, this.idleMs), token: `${id}.${secret}` };
  }

  async validate(token: string, options: { slide: boolean }): Promise<Session | null> {
    const parsed = parseToken(token);
    if (parsed === null) {
      return null;
    }
    const row = await this.row(parsed.id);
    return row === null ? null : this.liveSession(row, parsed.secret, options);
  }

  /**
   * {@link validate} and `accounts.find(session.accountId, session.provider)` in one
   * statement: every request with a cookie asks both, and each round trip to the server
   * costs the node more than the rest of its work on the request (issue 13).
   */
  async authenticate(token: string, options: { slide: boolean }): Promise<{ session: Session; account: Account } | null> {
    const parsed = parseToken(token);
    if (parsed === null) {
      return null;
    }
    const [found] = await this.statements.byIdWithAccount.execute({ id: parsed.id });
    if (found === undefined) {
      return null;
    }
    const session = await this.liveSession(found.session, parsed.secret, options);
    const { account } = found;
    // The account is missing or blocked (see accountFields): the session stands, but opens nothing.
    if (session === null || account === null) {
      return null;
    }
    return { session, account };
  }

  /** The session `row` is, when `secret` is its secret and it has not expired (which ends it); slid when asked. */
  private async liveSession(row: SessionRow, secret: string, options: { slide: boolean }): Promise<Session | null> {
    if (!constantTimeEqual(sha256(secret), row.secretHash)) {
      return null;
    }
    const now = this.clock.now();
    if (this.expired(row, now)) {
      await this.end(row.id, row.accountId, "expired");
      return null;
    }
    if (options.slide && now - row.lastSeenAt >= SLIDE_THROTTLE_MS) {
      await this.statements.slide.execute({ id: row.id, now });
      row.lastSeenAt = now;
    }
    const session = sessionFromRow(row, this.idleMs);
    this.tamperCheck.validated(session, row);
    return session;
  }

  async touch(sessionId: string, at: number): Promise<void> {
    if (at > this.clock.now()) return;
    await this.statements.touch.execute({ id: sessionId, at, slidBefore: at - SLIDE_THROTTLE_MS, idleBefore: at - this.idleMs });
  }

  async findLive(id: string): Promise<Session | null> {
    const row = await this.row(id);
    if (row === null) {
      return null;
    }
    if (this.expired(row, this.clock.now())) {
      await this.end(row.id, row.accountId, "expired");
      return null;
    }
    return sessionFromRow(row, this.idleMs);
  }

  async list(accountId: string, currentId: string): Promise<SessionListing[]> {
    const now = this.clock.now();
    const rows = await this.orm
      .select({
        id: sessions.id,
        createdAt: sessions.createdAt,
        lastSeenAt: sessions.lastSeenAt,
        userAgent: sessions.userAgent,
        expiresAt: sessions.expiresAt,
      })
      .from(sessions)
      .where(eq(sessions.accountId, accountId))
      .orderBy(sessions.createdAt);
    return rows
      .filter((row) => now < row.expiresAt && now < row.lastSeenAt + this.idleMs)
      .map((row) => ({
        id: row.id,
        createdAt: row.createdAt,
        lastSeenAt: row.lastSeenAt,
        userAgent: row.userAgent,
        current: row.id === currentId,
      }));
  }

  revoke(accountId: string, sessionId: string, reason: SessionEndReason): Promise<boolean> {
    return this.end(sessionId, accountId, reason);
  }

  revokeOthers(accountId: string, currentId: string): Promise<number> {
    return this.remove(and(eq(sessions.accountId, accountId), ne(sessions.id, currentId)), "revoked");
  }

  async end(sessionId: string, accountId: string, reason: SessionEndReason): Promise<boolean> {
    return (await this.remove(and(eq(sessions.id, sessionId), eq(sessions.accountId, accountId)), reason)) > 0;
  }

  endByProviderSession(provider: string, match: { sid: string | null; accountId: string | null }): Promise<number> {
    if (match.sid === null && match.accountId === null) return Promise.resolve(0);
    return this.remove(
      and(
        eq(sessions.provider, provider),
        match.sid === null ? undefined : eq(sessions.providerSid, match.sid),
        match.accountId === null ? undefined : eq(sessions.accountId, match.accountId),
      ),
      "backchannel_logout",
    );
  }

  async adoptEnded(row: { id: string; accountId: string; provider: string; refreshToken: string | null }, reason: SessionEndReason): Promise<void> {
    await this.announce(row.id, row.accountId, reason);
    this.grants.release(row, reason);
  }

  async countLive(): Promise<number> {
    const now = this.clock.now();
    const [row] = await this.orm
      .select({ n: sql<number>`count(*)::int` })
      .from(sessions)
      .where(and(gt(sessions.expiresAt, now), gt(sql`${sessions.lastSeenAt} + ${this.idleMs}::bigint`, now)));
    return row?.n ?? 0;
  }

  async sweepExpired(): Promise<number> {
    const now = this.clock.now();
    // Leases whose holder died without releasing them (a node killed mid-refresh).
    await this.orm.delete(refreshLeases).where(lte(refreshLeases.expiresAt, now));
    return this.remove(or(lte(sessions.expiresAt, now), lte(sql`${sessions.lastSeenAt} + ${this.idleMs}::bigint`, now)), "expired");
  }

  setGrantRevoker(revoker: GrantRevoker): void {
    this.grants.setRevoker(revoker);
  }

  revocationsSettled(): Promise<void> {
    return this.grants.settled();
  }

  async readTokens(sessionId: string): Promise<ProviderTokens | null> {
    const row = await this.row(sessionId);
    return row === null ? null : openTokens(this.cipher, sessionId, row);
  }

  /** Throws {@link DecryptionError} when a stored provider token no longer authenticates (see {@link TokenTamperCheck}). */
  async checkTokens(session: Session): Promise<void> {
    if (this.tamperCheck.passedAtValidation(session)) return;
    const row = await this.row(session.id);
    if (row !== null) this.tamperCheck.verify(session.id, row);
  }

  async replaceTokens(sessionId: string, expectedVersion: number, tokens: ProviderTokens): Promise<boolean> {
    const refreshCap = tokens.refreshTokenExpiresAt;
    const swapped = await this.orm
      .update(sessions)
      .set({
        ...sealTokens(this.cipher, sessionId, tokens),
        version: sql`${sessions.version} + 1`,
        ...(refreshCap === null ? {} : { expiresAt: sql`least(${sessions.expiresAt}, ${refreshCap}::bigint)` }),
      })
      .where(and(eq(sessions.id, sessionId), eq(sessions.version, expectedVersion)))
      .returning({ id: sessions.id });
    return swapped.length === 1;
  }

  async version(sessionId: string): Promise<number | null> {
    return (await this.row(sessionId))?.version ?? null;
  }

  private async row(id: string): Promise<SessionRow | null> {
    const [row] = await this.statements.byId.execute({ id });
    return row ?? null;
  }

  private expired(row: SessionRow, now: number): boolean {
    return now >= row.expiresAt || now >= row.lastSeenAt + this.idleMs;
  }

  /**
   * The only place session rows are deleted. One statement deletes the rows, reads their
   * refresh tokens and NOTIFYs every node of each end, so the notifications go out with the
   * commit and only with it: no node crash between the two loses the event (the others'
   * recheck would close the sockets, but not within 1 s), and a delete that fails tells
   * nobody. Of two nodes ending one session at once only one deletes it, so only one
   * announces it and revokes its grant. This node's subscribers hear each end once the
   * statement has committed, before the caller is answered.
   */
  private async remove(where: SQL | undefined, reason: SessionEndReason): Promise<number> {
    // drizzle's and() of nothing: a caller bug, never "every session".
    if (where === undefined) throw new Error("a session end needs a condition");
    const ended = await this.orm.execute<{ id: string; account_id: string; provider: string; refresh_token: string | null }>(sql`
      WITH ended AS (
        DELETE FROM ${sessions} WHERE ${where}
        RETURNING ${sessions.id}, ${sessions.accountId}, ${sessions.provider}, ${sessions.refreshToken}
      )
      SELECT id, account_id, provider, refresh_token, ${this.events.notifyEnded({ sessionId: sql`id`, accountId: sql`account_id` }, reason)}
      FROM ended`);
    for (const row of ended) {
      this.audit.write(sessionEndEvent(reason), { sessionId: row.id, accountId: row.account_id, reason });
      this.events.deliverLocally({ sessionId: row.id, accountId: row.account_id, reason });
      this.grants.release({ id: row.id, provider: row.provider, refreshToken: row.refresh_token }, reason);
    }
    return ended.length;
  }

  /** Audit event, then the end published on every node (this one's sockets close at once). */
  private announce(sessionId: string, accountId: string, reason: SessionEndReason): Promise<void> {
    this.audit.write(sessionEndEvent(reason), { sessionId, accountId, reason });
    return this.events.publish({ sessionId, accountId, reason }).catch(this.onPublishFailed);
  }

}


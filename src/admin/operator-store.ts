import { and, eq } from "drizzle-orm";
import type { Clock } from "../clock";
import type { Database } from "../db/database";
import { accountBlocks, accounts, identities, operatorActions, sessions } from "../db/schema";

/** How an operator names a player: our account id, or the provider's name and subject. */
export type AccountRef = { accountId: string } | { provider: string; subject: string };

export interface AccountSummary {
  id: string;
  displayName: string;
  identities: { provider: string; issuer: string; subject: string }[];
  blocked: { at: number; by: string; reason: string } | null;
}

export interface SessionSummary {
  id: string;
  provider: string;
  createdAt: number;
  lastSeenAt: number;
  expiresAt: number;
  userAgent: string;
}

/**
 * What the operator's command does to the database, from a process of its own while the
 * server may be running. Every change is one transaction that also writes an
 * `operator_actions` row saying who did what; the server notices the commit
 * (`PRAGMA data_version`), audits the action with the operator's name, closes the ended
 * sessions' sockets and revokes their refresh tokens (src/admin/operator-watch.ts). The
 * session rows are deleted here, at once, so they are refused everywhere even before the
 * server has looked; their refresh tokens travel to the server still sealed, as this
 * process has no keys and needs none.
 */
export class OperatorStore {
  constructor(
    private readonly db: Database,
    private readonly clock: Clock,
    private readonly operator: string,
  ) {}

  /** The account a reference names, or null. */
  findAccount(ref: AccountRef): AccountSummary | null {
    const accountId =
      "accountId" in ref
        ? ref.accountId
        : (this.db.orm
            .select({ accountId: identities.accountId })
            .from(identities)
            .where(and(eq(identities.provider, ref.provider), eq(identities.subject, ref.subject)))
            .get()?.accountId ?? null);
    if (accountId === null) return null;
    const account = this.db.orm.select().from(accounts).where(eq(accounts.id, accountId)).get();
    if (account === undefined) return null;
    const block = this.db.orm.select().from(accountBlocks).where(eq(accountBlocks.accountId, accountId)).get();
    return {
      id: account.id,
      displayName: account.displayName,
      identities: this.db.orm
        .select({ provider: identities.provider, issuer: identities.issuer, subject: identities.subject })
        .from(identities)
        .where(eq(identities.accountId, accountId))
        .all(),
      blocked: block === undefined ? null : { at: block.blockedAt, by: block.blockedBy, reason: block.reason },
    };
  }

  /** The account's session rows (expired ones included until the server sweeps them). Audited. */
  listSessions(accountId: string): SessionSummary[] {
    return this.db.orm.transaction((tx) => {
      const rows = tx
        .select({
          id: sessions.id,
          provider: sessions.provider,
          createdAt: sessions.createdAt,
          lastSeenAt: sessions.lastSeenAt,
          expiresAt: sessions.expiresAt,
          userAgent: sessions.userAgent,
        })
        .from(sessions)
        .where(eq(sessions.accountId, accountId))
        .orderBy(sessions.createdAt)
        .all();
      tx.insert(operatorActions).values(this.action("sessions.listed", accountId, { detail: String(rows.length) })).run();
      return rows;
    });
  }

  /** Ends every session of the account; returns how many. */
  endSessions(accountId: string): number {
    return this.db.orm.transaction((tx) => {
      const ended = this.deleteSessions(tx, accountId);
      tx.insert(operatorActions).values(this.action("sessions.ended", accountId, { detail: String(ended) })).run();
      return ended;
    });
  }

  /** Blocks the account and ends its sessions; returns how many ended (0 when already blocked). */
  block(accountId: string, reason: string): { ended: number; alreadyBlocked: boolean } {
    return this.db.orm.transaction((tx) => {
      const inserted = tx
        .insert(accountBlocks)
        .values({ accountId, blockedAt: this.clock.now(), blockedBy: this.operator, reason })
        .onConflictDoNothing()
        .run();
      // Already blocked: there can be no session left to end, but look anyway (a session
      // created in the instant before the block was written).
      const ended = this.deleteSessions(tx, accountId);
      tx.insert(operatorActions)
        .values(this.action("account.blocked", accountId, { detail: inserted.changes === 1 ? reason : `already blocked; ${reason}` }))
        .run();
      return { ended, alreadyBlocked: inserted.changes === 0 };
    });
  }

  /** Lifts a block; false when the account was not blocked. */
  unblock(accountId: string): boolean {
    return this.db.orm.transaction((tx) => {
      const removed = tx.delete(accountBlocks).where(eq(accountBlocks.accountId, accountId)).run().changes;
      tx.insert(operatorActions)
        .values(this.action("account.unblocked", accountId, removed === 0 ? { detail: "was not blocked" } : {}))
        .run();
      return removed > 0;
    });
  }

  private deleteSessions(tx: Parameters<Parameters<Database["orm"]["transaction"]>[0]>[0], accountId: string): number {
    const ended = tx
      .delete(sessions)
      .where(eq(sessions.accountId, accountId))
      .returning({ id: sessions.id, provider: sessions.provider, refreshToken: sessions.refreshToken })
      .all();
    for (const row of ended) {
      tx.insert(operatorActions)
        .values(this.action("session.ended", accountId, { sessionId: row.id, provider: row.provider, refreshToken: row.refreshToken }))
        .run();
    }
    return ended.length;
  }

  private action(
    action: OperatorAction,
    accountId: string,
    extra: { sessionId?: string; provider?: string; refreshToken?: string | null; detail?: string },
  ): typeof operatorActions.$inferInsert {
    return { action, accountId, operator: this.operator, at: this.clock.now(), ...extra };
  }
}

/** The kinds of `operator_actions` rows. */
export type OperatorAction = "sessions.listed" | "sessions.ended" | "session.ended" | "account.blocked" | "account.unblocked";

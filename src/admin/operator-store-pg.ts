import { and, asc, eq, sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres, { type Sql } from "postgres";
import type { Clock } from "../clock";
import type { PgORM } from "../db/postgres";
import * as schema from "../db/schema-pg";
import { accountBlocks, accounts, identities, operatorActions, sessions } from "../db/schema-pg";
import { OPERATOR_ACTIONS_CHANNEL } from "../store/postgres/bus";
import type { AccountRef, AccountSummary, OperatorAction, SessionSummary } from "./operator-store";

type Tx = Parameters<Parameters<PgORM["transaction"]>[0]>[0];

// The command says what it cannot reach within this time rather than postgres.js's 30 s.
const CONNECT_TIMEOUT_SECONDS = 5;
// One statement of the command never holds the session rows' locks longer than this.
const STATEMENT_TIMEOUT_MS = 10_000;

/**
 * {@link OperatorStore} on PostgreSQL: the same tables, the same transactions, the same
 * `operator_actions` rows, for a cluster. Each transaction that writes rows also runs
 * `pg_notify('portcullis_operator_actions')`: PostgreSQL delivers a NOTIFY only when its
 * transaction commits, so a node never looks before the rows are there. Every node
 * listens; one claims each row (FOR UPDATE SKIP LOCKED, src/store/postgres/operator-actions.ts),
 * audits it, and publishes each ended session's end on the bus, which closes its sockets on
 * every node with 4401. A node whose listener was away at that moment still finds the rows
 * on its next look (every 5 s, and at once when its listener comes back).
 *
 * The session rows are deleted here, in the command's transaction: from its commit on, no
 * node validates them (the same rows every node reads), whatever the notification does.
 * Their refresh tokens are handed over still sealed: the command has no keys and needs none.
 */
export class PostgresOperatorStore {
  private constructor(
    private readonly client: Sql,
    private readonly orm: PgORM,
    private readonly clock: Clock,
    private readonly operator: string,
  ) {}

  /** One connection for the command's few statements; no migration (the nodes own the schema). */
  static open(url: string, clock: Clock, operator: string): PostgresOperatorStore {
    const client = postgres(url, {
      max: 1,
      connect_timeout: CONNECT_TIMEOUT_SECONDS,
      connection: { statement_timeout: STATEMENT_TIMEOUT_MS, application_name: "portcullis-operator" },
      onnotice: () => {},
    });
    return new PostgresOperatorStore(client, drizzle(client, { schema }), clock, operator);
  }

  async close(): Promise<void> {
    await this.client.end({ timeout: 5 });
  }

  async findAccount(ref: AccountRef): Promise<AccountSummary | null> {
    let accountId: string | null;
    if ("accountId" in ref) {
      accountId = ref.accountId;
    } else {
      const [found] = await this.orm
        .select({ accountId: identities.accountId })
        .from(identities)
        .where(and(eq(identities.provider, ref.provider), eq(identities.subject, ref.subject)))
        .limit(1);
      accountId = found?.accountId ?? null;
    }
    if (accountId === null) return null;
    const [account] = await this.orm.select().from(accounts).where(eq(accounts.id, accountId)).limit(1);
    if (account === undefined) return null;
    const [block] = await this.orm.select().from(accountBlocks).where(eq(accountBlocks.accountId, accountId)).limit(1);
    return {
      id: account.id,
      displayName: account.displayName,
      identities: await this.orm
        .select({ provider: identities.provider, issuer: identities.issuer, subject: identities.subject })
        .from(identities)
        .where(eq(identities.accountId, accountId))
        .orderBy(asc(identities.createdAt)),
      blocked: block === undefined ? null : { at: block.blockedAt, by: block.blockedBy, reason: block.reason },
    };
  }

  async listSessions(accountId: string): Promise<SessionSummary[]> {
    return this.orm.transaction(async (tx) => {
      const rows = await tx
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
        .orderBy(asc(sessions.createdAt));
      await tx.insert(operatorActions).values(this.action("sessions.listed", accountId, { detail: String(rows.length) }));
      await notify(tx);
      return rows;
    });
  }

  async endSessions(accountId: string): Promise<number> {
    return this.orm.transaction(async (tx) => {
      const ended = await this.deleteSessions(tx, accountId);
      await tx.insert(operatorActions).values(this.action("sessions.ended", accountId, { detail: String(ended) }));
      await notify(tx);
      return ended;
    });
  }

  async block(accountId: string, reason: string): Promise<{ ended: number; alreadyBlocked: boolean }> {
    return this.orm.transaction(async (tx) => {
      const inserted = await tx
        .insert(accountBlocks)
        .values({ accountId, blockedAt: this.clock.now(), blockedBy: this.operator, reason })
        .onConflictDoNothing()
        .returning({ accountId: accountBlocks.accountId });
      // After the block row: a login that creates a session from here on is refused by
      // every node (a blocked account is not found); one that slipped in before is ended here.
      const ended = await this.deleteSessions(tx, accountId);
      await tx
        .insert(operatorActions)
        .values(this.action("account.blocked", accountId, { detail: inserted.length === 1 ? reason : `already blocked; ${reason}` }));
      await notify(tx);
      return { ended, alreadyBlocked: inserted.length === 0 };
    });
  }

  async unblock(accountId: string): Promise<boolean> {
    return this.orm.transaction(async (tx) => {
      const removed = await tx.delete(accountBlocks).where(eq(accountBlocks.accountId, accountId)).returning({ accountId: accountBlocks.accountId });
      await tx.insert(operatorActions).values(this.action("account.unblocked", accountId, removed.length === 0 ? { detail: "was not blocked" } : {}));
      await notify(tx);
      return removed.length > 0;
    });
  }

  private async deleteSessions(tx: Tx, accountId: string): Promise<number> {
    const ended = await tx
      .delete(sessions)
      .where(eq(sessions.accountId, accountId))
      .returning({ id: sessions.id, provider: sessions.provider, refreshToken: sessions.refreshToken });
    if (ended.length > 0) {
      await tx
        .insert(operatorActions)
        .values(ended.map((row) => this.action("session.ended", accountId, { sessionId: row.id, provider: row.provider, refreshToken: row.refreshToken })));
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

/** Delivered to every node's listener when the transaction commits, not before; no payload (the rows are the message). */
async function notify(tx: Tx): Promise<void> {
  await tx.execute(sql`SELECT pg_notify(${OPERATOR_ACTIONS_CHANNEL}, '')`);
}

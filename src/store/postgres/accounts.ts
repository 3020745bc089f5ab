import { and, asc, eq, notExists, sql, type SQL, type SQLWrapper } from "drizzle-orm";
import type { Account } from "../../auth/accounts";
import type { ProviderIdentity } from "../../auth/providers";
import type { Clock, RandomBytes } from "../../clock";
import { randomToken } from "../../crypto/random";
import type { PgORM } from "../../db/postgres";
import { accountBlocks, accounts, identities } from "../../db/schema-pg";
import type { AccountRepository } from "../types";

/** Another node created this identity's account between our look and our insert. */
class LostRace extends Error {}

/** An {@link Account}'s columns, its subject being its first identity at `provider` (a column or a placeholder). */
export function accountFields(orm: PgORM, provider: SQLWrapper) {
  const subject = orm
    .select({ subject: identities.subject })
    .from(identities)
    .where(and(eq(identities.accountId, accounts.id), eq(identities.provider, provider)))
    .orderBy(asc(identities.createdAt))
    .limit(1);
  return { id: accounts.id, displayName: accounts.displayName, providerSubject: sql<string | null>`(${subject})` };
}

/**
 * A blocked account is not found: its sessions are refused everywhere from the moment the
 * block is written, on every node, even before they are deleted.
 */
export function accountNotBlocked(orm: PgORM): SQL {
  return notExists(orm.select({ one: sql`1` }).from(accountBlocks).where(eq(accountBlocks.accountId, accounts.id)));
}

/** Accounts and their (issuer, subject) identities (OIDC Core 5.7), as `AccountStore`. */
export class PostgresAccounts implements AccountRepository {
  /** Prepared (see sessions.ts); a request's session lookup joins the same columns (`authenticate`). */
  private readonly findStatement;

  constructor(
    private readonly orm: PgORM,
    private readonly clock: Clock,
    private readonly randomBytes: RandomBytes,
  ) {
    this.findStatement = orm
      .select(accountFields(orm, sql.placeholder("provider")))
      .from(accounts)
      .where(and(eq(accounts.id, sql.placeholder("id")), accountNotBlocked(orm)))
      .limit(1)
      .prepare("account_find");
  }

  /**
   * One account per identity even when two nodes see its first login at the same moment:
   * the identity insert does nothing when the other node's committed first, and then this
   * transaction (with the account it made) rolls back and the lookup is run again.
   */
  async findOrCreate(identity: ProviderIdentity, provider: string): Promise<{ account: Account; created: boolean }> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.orm.transaction(async (tx) => {
          const [existing] = await tx
            .select({ id: accounts.id, displayName: accounts.displayName })
            .from(identities)
            .innerJoin(accounts, eq(accounts.id, identities.accountId))
            .where(and(eq(identities.issuer, identity.issuer), eq(identities.subject, identity.subject)))
            .limit(1);
          if (existing !== undefined) {
            if (existing.displayName !== identity.displayName) {
              await tx.update(accounts).set({ displayName: identity.displayName }).where(eq(accounts.id, existing.id));
            }
            return { account: { id: existing.id, displayName: identity.displayName, providerSubject: identity.subject }, created: false };
          }
          const now = this.clock.now();
          const id = randomToken(this.randomBytes, 10);
          await tx.insert(accounts).values({ id, displayName: identity.displayName, createdAt: now });
          const inserted = await tx
            .insert(identities)
            .values({ issuer: identity.issuer, subject: identity.subject, accountId: id, provider, createdAt: now })
            .onConflictDoNothing()
            .returning({ accountId: identities.accountId });
          if (inserted.length === 0) throw new LostRace();
          return { account: { id, displayName: identity.displayName, providerSubject: identity.subject }, created: true };
        });
      } catch (error) {
        if (!(error instanceof LostRace) || attempt > 0) throw error;
      }
    }
  }

  async find(id: string, provider: string): Promise<Account | null> {
    const [row] = await this.findStatement.execute({ id, provider });
    return row ?? null;
  }

  async isBlocked(id: string): Promise<boolean> {
    const [row] = await this.orm.select({ id: accountBlocks.accountId }).from(accountBlocks).where(eq(accountBlocks.accountId, id)).limit(1);
    return row !== undefined;
  }

  async findIdByIdentity(issuer: string, subject: string): Promise<string | null> {
    const [row] = await this.orm
      .select({ accountId: identities.accountId })
      .from(identities)
      .where(and(eq(identities.issuer, issuer), eq(identities.subject, subject)))
      .limit(1);
    return row?.accountId ?? null;
  }
}

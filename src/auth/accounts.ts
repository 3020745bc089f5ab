import type { Statement } from "better-sqlite3";
import { and, eq } from "drizzle-orm";
import type { Clock, RandomBytes } from "../clock";
import { randomToken } from "../crypto/random";
import type { Database } from "../db/database";
import { accountBlocks, accounts, identities } from "../db/schema";
import type { ProviderIdentity } from "./providers";

export interface Account {
  id: string;
  displayName: string;
  /** The subject at the provider the account was looked up for (the session's); null if it has none there. */
  providerSubject: string | null;
}

/** Accounts and the (issuer, subject) identities that lead to them (OIDC Core 5.7). */
export class AccountStore {
  private readonly selectById: Statement<[string, string], Account | undefined>;

  constructor(
    private readonly db: Database,
    private readonly clock: Clock,
    private readonly randomBytes: RandomBytes,
  ) {
    // Every authenticated request and upgrade looks its account up: prepared once, not
    // rebuilt by the query builder each time. A blocked account is not found: its sessions
    // are refused everywhere (/auth/me, tickets, upgrades, /api) from the moment the block
    // is written, whichever process wrote it, even before those sessions are deleted.
    this.selectById = db.sqlite.prepare(
      "SELECT id, display_name AS displayName, " +
        "(SELECT subject FROM identities WHERE account_id = accounts.id AND provider = ? ORDER BY created_at LIMIT 1) AS providerSubject " +
        "FROM accounts WHERE id = ? AND NOT EXISTS (SELECT 1 FROM account_blocks WHERE account_blocks.account_id = accounts.id)",
    ) as Statement<[string, string], Account | undefined>;
  }

  /**
   * The account of this identity; a new account is created right away on its first login.
   * One transaction, so two simultaneous first logins cannot make two accounts.
   */
  findOrCreate(identity: ProviderIdentity, provider: string): { account: Account; created: boolean } {
    return this.db.orm.transaction((tx) => {
      const existing = tx
        .select({ id: accounts.id, displayName: accounts.displayName })
        .from(identities)
        .innerJoin(accounts, eq(accounts.id, identities.accountId))
        .where(and(eq(identities.issuer, identity.issuer), eq(identities.subject, identity.subject)))
        .get();
      if (existing !== undefined) {
        if (existing.displayName !== identity.displayName) {
          tx.update(accounts).set({ displayName: identity.displayName }).where(eq(accounts.id, existing.id)).run();
        }
        return { account: { id: existing.id, displayName: identity.displayName, providerSubject: identity.subject }, created: false };
      }
      const now = this.clock.now();
      const id = randomToken(this.randomBytes, 10);
      tx.insert(accounts).values({ id, displayName: identity.displayName, createdAt: now }).run();
      tx.insert(identities).values({ issuer: identity.issuer, subject: identity.subject, accountId: id, provider, createdAt: now }).run();
      return { account: { id, displayName: identity.displayName, providerSubject: identity.subject }, created: true };
    });
  }

  /**
   * The account, with its subject at `provider` (the session's provider, for the assertion's
   * `idp_sub`); null when there is none or it is blocked.
   */
  find(id: string, provider: string): Account | null {
    return this.selectById.get(provider, id) ?? null;
  }

  /** True when an operator has blocked the account (`npm run portcullis -- block`). */
  isBlocked(id: string): boolean {
    return this.db.orm.select({ id: accountBlocks.accountId }).from(accountBlocks).where(eq(accountBlocks.accountId, id)).get() !== undefined;
  }

  /** The account id an (issuer, subject) identity leads to, blocked or not; null when unknown. */
  findIdByIdentity(issuer: string, subject: string): string | null {
    return (
      this.db.orm
        .select({ accountId: identities.accountId })
        .from(identities)
        .where(and(eq(identities.issuer, issuer), eq(identities.subject, subject)))
        .get()?.accountId ?? null
    );
  }
}

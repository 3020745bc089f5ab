import { and, eq, lte } from "drizzle-orm";
import type { PgORM } from "../../db/postgres";
import { refreshLeases } from "../../db/schema-pg";
import type { LeaseTable } from "../lease";

/**
 * The refresh lease as a row every node sees. Taking it is one upsert that writes only when
 * there is no row or the row's lease has expired; of nodes racing for it, PostgreSQL makes
 * the later ones wait on the first one's row lock and then re-check the condition, which
 * the fresh lease fails: exactly one gets RETURNING's row.
 */
export class PostgresLeaseTable implements LeaseTable {
  constructor(private readonly orm: PgORM) {}

  async tryAcquire(sessionId: string, holder: string, now: number, expiresAt: number): Promise<boolean> {
    const taken = await this.orm
      .insert(refreshLeases)
      .values({ sessionId, holder, expiresAt })
      .onConflictDoUpdate({ target: refreshLeases.sessionId, set: { holder, expiresAt }, setWhere: lte(refreshLeases.expiresAt, now) })
      .returning({ holder: refreshLeases.holder });
    return taken.length === 1;
  }

  async release(sessionId: string, holder: string): Promise<void> {
    await this.orm.delete(refreshLeases).where(and(eq(refreshLeases.sessionId, sessionId), eq(refreshLeases.holder, holder)));
  }

  async state(sessionId: string, now: number): Promise<"free" | "held" | "expired"> {
    const [row] = await this.orm.select({ expiresAt: refreshLeases.expiresAt }).from(refreshLeases).where(eq(refreshLeases.sessionId, sessionId));
    return row === undefined ? "free" : row.expiresAt > now ? "held" : "expired";
  }
}

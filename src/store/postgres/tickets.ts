import { eq, lte, sql } from "drizzle-orm";
import type { Clock, RandomBytes } from "../../clock";
import { sha256Hex } from "../../crypto/hash";
import { randomToken } from "../../crypto/random";
import type { Sql } from "postgres";
import type { PgORM } from "../../db/postgres";
import { wsTickets } from "../../db/schema-pg";
import { TICKET_BYTES, TICKET_PATTERN, type TicketRedemption } from "../../ws/tickets";
import type { TicketRepository } from "../types";

/**
 * One-time WebSocket tickets (SECURITY.md E23, I41), as `TicketStore`. Redeeming deletes the
 * row in the statement that reads it: of concurrent DELETEs of one row on any number of
 * nodes, PostgreSQL lets one delete it and the others, after waiting on its row lock, find
 * it gone (READ COMMITTED rechecks the row), so exactly one upgrade wins.
 */
export class PostgresTickets implements TicketRepository {
  /** Prepared, one round trip (see sessions.ts). The upgrade itself spends its ticket in `socketSlots.admit`. */
  private readonly take;

  constructor(
    private readonly orm: PgORM,
    /** postgres.js itself: its tagged statements are prepared (drizzle's `execute` is not). */
    private readonly client: Sql,
    private readonly clock: Clock,
    private readonly randomBytes: RandomBytes,
    private readonly ttlSeconds: number,
  ) {
    this.take = orm
      .delete(wsTickets)
      .where(eq(wsTickets.hash, sql.placeholder("hash")))
      .returning({ sessionId: wsTickets.sessionId, expiresAt: wsTickets.expiresAt })
      .prepare("ticket_take");
  }

  /** Committed asynchronously (db/migrations-pg/0003 says why a lost ticket is harmless). */
  async issue(sessionId: string): Promise<{ ticket: string; expiresIn: number }> {
    const ticket = randomToken(this.randomBytes, TICKET_BYTES);
    await this.client`SELECT portcullis_issue_ticket(${sha256Hex(ticket)}, ${sessionId}, ${this.clock.now() + this.ttlSeconds * 1000})`;
    return { ticket, expiresIn: this.ttlSeconds };
  }

  async redeem(ticket: string): Promise<TicketRedemption> {
    if (!TICKET_PATTERN.test(ticket)) {
      return { status: "unknown" };
    }
    const [row] = await this.take.execute({ hash: sha256Hex(ticket) });
    if (row === undefined) {
      return { status: "unknown" };
    }
    if (row.expiresAt <= this.clock.now()) {
      return { status: "expired" };
    }
    return { status: "valid", sessionId: row.sessionId };
  }

  async sweep(): Promise<number> {
    const gone = await this.orm.delete(wsTickets).where(lte(wsTickets.expiresAt, this.clock.now())).returning({ hash: wsTickets.hash });
    return gone.length;
  }
}

import { and, isNotNull, lte, sql } from "drizzle-orm";
import type { Clock } from "../../clock";
import type { PgORM } from "../../db/postgres";
import { operatorActions } from "../../db/schema-pg";
import type { OperatorActionQueue, OperatorActionRow } from "../types";
import type { PostgresEventBus } from "./bus";

/**
 * The operator's hand-over table on PostgreSQL. Every node watches it; a row is claimed by
 * the one statement that marks it handled, with FOR UPDATE SKIP LOCKED, so two nodes
 * looking at once take different rows, never the same one, and the audit line and the
 * refresh-token revocation happen once across the cluster. The node that claims a
 * `session.ended` row publishes the end on the bus, which closes its sockets everywhere.
 */
export class PostgresOperatorActions implements OperatorActionQueue {
  constructor(
    private readonly orm: PgORM,
    private readonly bus: PostgresEventBus,
    private readonly clock: Clock,
  ) {}

  async claim(limit: number): Promise<OperatorActionRow[]> {
    // The CTE returns the rows as they were (with the sealed refresh token) while the UPDATE
    // wipes the token from the table.
    const rows = await this.orm.execute<{
      id: string;
      action: string;
      account_id: string;
      session_id: string | null;
      provider: string | null;
      refresh_token: string | null;
      operator: string;
      detail: string | null;
      at: string;
    }>(sql`
      WITH picked AS (
        SELECT * FROM ${operatorActions} WHERE handled_at IS NULL ORDER BY id LIMIT ${limit} FOR UPDATE SKIP LOCKED
      )
      UPDATE ${operatorActions} AS o SET handled_at = ${this.clock.now()}::bigint, refresh_token = NULL
        FROM picked WHERE o.id = picked.id
      RETURNING picked.id, picked.action, picked.account_id, picked.session_id, picked.provider,
                picked.refresh_token, picked.operator, picked.detail, picked.at`);
    return [...rows]
      .map((row) => ({
        id: Number(row.id),
        action: row.action,
        accountId: row.account_id,
        sessionId: row.session_id,
        provider: row.provider,
        refreshToken: row.refresh_token,
        operator: row.operator,
        detail: row.detail,
        at: Number(row.at),
      }))
      .sort((x, y) => x.id - y.id);
  }

  async sweep(keepMs: number): Promise<number> {
    const gone = await this.orm
      .delete(operatorActions)
      .where(and(isNotNull(operatorActions.handledAt), lte(operatorActions.handledAt, this.clock.now() - keepMs)))
      .returning({ id: operatorActions.id });
    return gone.length;
  }

  watch(changed: () => void, options: { fallbackMs: number }): () => void {
    const stop = this.bus.onOperatorActions(changed);
    changed();
    const timer = setInterval(changed, options.fallbackMs);
    timer.unref();
    return () => {
      stop();
      clearInterval(timer);
    };
  }
}

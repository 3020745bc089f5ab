import { and, asc, eq, isNotNull, isNull, lte } from "drizzle-orm";
import type { Clock } from "../../clock";
import type { Database } from "../../db/database";
import { operatorActions } from "../../db/schema";
import type { OperatorActionQueue, OperatorActionRow } from "../types";

/**
 * The operator's hand-over table on SQLite. The command is another process on the same
 * file; `PRAGMA data_version` changes on this connection whenever another connection
 * commits, and it is a read of a counter in shared memory, not a query of a table, so
 * polling it every 250 ms costs next to nothing.
 */
export class SqliteOperatorActions implements OperatorActionQueue {
  constructor(
    private readonly db: Database,
    private readonly clock: Clock,
  ) {}

  async claim(limit: number): Promise<OperatorActionRow[]> {
    return this.db.orm.transaction((tx) => {
      const pending = tx.select().from(operatorActions).where(isNull(operatorActions.handledAt)).orderBy(asc(operatorActions.id)).limit(limit).all();
      for (const row of pending) {
        // Marked in the statement's transaction: an action is never handled twice. The
        // sealed refresh token leaves the table at once; secure_delete zeroes its bytes.
        tx.update(operatorActions).set({ handledAt: this.clock.now(), refreshToken: null }).where(eq(operatorActions.id, row.id)).run();
      }
      return pending;
    });
  }

  async sweep(keepMs: number): Promise<number> {
    return this.db.orm
      .delete(operatorActions)
      .where(and(isNotNull(operatorActions.handledAt), lte(operatorActions.handledAt, this.clock.now() - keepMs)))
      .run().changes;
  }

  watch(changed: () => void, options: { pollMs: number }): () => void {
    let lastVersion: number | null = null;
    const look = (): void => {
      try {
        const version = this.db.sqlite.pragma("data_version", { simple: true });
        if (typeof version !== "number" || version === lastVersion) return;
        // Read before handling: a commit that lands while the handler works changes it again.
        lastVersion = version;
        changed();
      } catch (error) {
        // A failing database must not take the process down from a timer; the next tick retries.
        lastVersion = null;
        process.stderr.write(`operator actions could not be read: ${error instanceof Error ? error.message : String(error)}\n`);
      }
    };
    look();
    const timer = setInterval(look, options.pollMs);
    timer.unref();
    return () => clearInterval(timer);
  }
}

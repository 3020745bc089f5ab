import { and, asc, eq, isNotNull, isNull, lte } from "drizzle-orm";
import type { AuditLog } from "../audit/log";
import type { SessionStore } from "../auth/session";
import type { Clock } from "../clock";
import type { Database } from "../db/database";
import { operatorActions } from "../db/schema";

// The operator's command must close sockets within 1 s of returning: a quarter of that
// for noticing, the rest for the close handshake. `PRAGMA data_version` is a read of a
// counter in shared memory, not a query of a table, so polling it costs next to nothing.
const POLL_MS = 250;
const BATCH = 500;
// Handled actions stay a week: the audit log is the record; the table is a hand-over.
const KEEP_HANDLED_MS = 7 * 24 * 3600 * 1000;

/**
 * The server's side of the operator's command (src/admin/operator-store.ts). SQLite's
 * `PRAGMA data_version` changes on this connection whenever another connection (another
 * process) commits; on a change, the pending `operator_actions` rows are handled in order:
 * each is audited with the operator's name, and each ended session goes through the
 * store's normal ended path (session.revoked audit event, its sockets close with 4401,
 * its refresh token is revoked at the provider). Pending rows are also handled at start,
 * so a command run while the server was down is audited and revoked when it comes up.
 */
export class OperatorActionWatcher {
  private timer: NodeJS.Timeout | null = null;
  private lastVersion: number | null = null;

  constructor(
    private readonly db: Database,
    private readonly sessions: SessionStore,
    private readonly audit: AuditLog,
    private readonly clock: Clock,
  ) {}

  start(options: { pollMs?: number } = {}): void {
    this.stop();
    this.poll();
    this.timer = setInterval(() => this.poll(), options.pollMs ?? POLL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** One look: handles pending actions if anything else has committed since the last look. */
  poll(): void {
    try {
      const version = this.db.sqlite.pragma("data_version", { simple: true });
      if (typeof version !== "number" || version === this.lastVersion) return;
      // Read before handling: a commit that lands while we work changes it again.
      this.lastVersion = version;
      while (this.drain() === BATCH) {
        // A long backlog (a command run while the server was down): keep going.
      }
    } catch (error) {
      // A failing database must not take the process down from a timer; the next tick retries.
      this.lastVersion = null;
      process.stderr.write(`operator actions could not be read: ${error instanceof Error ? error.message : String(error)}\n`);
    }
  }

  /** Forgets actions handled long ago. */
  sweep(): number {
    return this.db.orm
      .delete(operatorActions)
      .where(and(isNotNull(operatorActions.handledAt), lte(operatorActions.handledAt, this.clock.now() - KEEP_HANDLED_MS)))
      .run().changes;
  }

  private drain(): number {
    const pending = this.db.orm
      .select()
      .from(operatorActions)
      .where(isNull(operatorActions.handledAt))
      .orderBy(asc(operatorActions.id))
      .limit(BATCH)
      .all();
    for (const row of pending) {
      // Marked first: whatever happens while handling it, an action is never handled twice
      // (twice would mean a second revocation and a duplicate audit line). The sealed
      // refresh token goes from the table at once; secure_delete zeroes its bytes.
      this.db.orm
        .update(operatorActions)
        .set({ handledAt: this.clock.now(), refreshToken: null })
        .where(eq(operatorActions.id, row.id))
        .run();
      this.handle(row);
    }
    return pending.length;
  }

  private handle(row: typeof operatorActions.$inferSelect): void {
    const who = { accountId: row.accountId, operator: row.operator };
    switch (row.action) {
      case "session.ended":
        if (row.sessionId !== null && row.provider !== null) {
          this.sessions.adoptEnded(
            { id: row.sessionId, accountId: row.accountId, provider: row.provider, refreshToken: row.refreshToken },
            "operator",
          );
        }
        return;
      case "sessions.listed":
        this.audit.write("operator.sessions.listed", { ...who, count: Number(row.detail ?? 0) });
        return;
      case "sessions.ended":
        this.audit.write("operator.sessions.ended", { ...who, count: Number(row.detail ?? 0) });
        return;
      case "account.blocked":
        this.audit.write("operator.account.blocked", { ...who, ...(row.detail === null ? {} : { reason: row.detail }) });
        return;
      case "account.unblocked":
        this.audit.write("operator.account.unblocked", { ...who, ...(row.detail === null ? {} : { detail: row.detail }) });
        return;
      default:
        process.stderr.write(`unknown operator action ${JSON.stringify(row.action)} (id ${row.id}) skipped\n`);
    }
  }
}

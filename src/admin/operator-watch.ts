import type { AuditLog } from "../audit/log";
import type { OperatorActionQueue, OperatorActionRow, SessionRepository } from "../store/types";

// The operator's command must close sockets within 1 s of returning: a quarter of that
// for noticing on SQLite (the store polls `PRAGMA data_version`), the rest for the close.
const POLL_MS = 250;
// On PostgreSQL the command NOTIFYs; a look this often catches a notification missed
// while this node's listener was away.
const FALLBACK_MS = 5_000;
const BATCH = 500;
// Handled actions stay a week: the audit log is the record; the table is a hand-over.
const KEEP_HANDLED_MS = 7 * 24 * 3600 * 1000;

/**
 * The server's side of the operator's command (src/admin/operator-store.ts), the same on
 * either engine: when the store says the command may have written, the pending
 * `operator_actions` rows are claimed (each by one node, once) and handled in order: each
 * is audited with the operator's name, and each ended session goes through the store's
 * normal ended path (session.revoked audit event, its sockets close with 4401 on every
 * node, its refresh token is revoked at the provider). Pending rows are also handled at
 * start, so a command run while the server was down is audited and revoked when it comes up.
 */
export class OperatorActionWatcher {
  private stopWatching: (() => void) | null = null;
  private draining: Promise<void> | null = null;
  private again = false;

  constructor(
    private readonly actions: OperatorActionQueue,
    private readonly sessions: SessionRepository,
    private readonly audit: AuditLog,
  ) {}

  start(options: { pollMs?: number } = {}): void {
    this.stop();
    this.stopWatching = this.actions.watch(() => void this.poll(), { pollMs: options.pollMs ?? POLL_MS, fallbackMs: FALLBACK_MS });
  }

  stop(): void {
    this.stopWatching?.();
    this.stopWatching = null;
  }

  /** Handles every pending action; a call while a drain runs gets one more drain after it. */
  poll(): Promise<void> {
    if (this.draining !== null) {
      this.again = true;
      return this.draining;
    }
    this.draining = this.drainAll().finally(() => {
      this.draining = null;
      if (this.again) {
        this.again = false;
        void this.poll();
      }
    });
    return this.draining;
  }

  /** Forgets actions handled long ago. */
  sweep(): Promise<number> {
    return this.actions.sweep(KEEP_HANDLED_MS);
  }

  private async drainAll(): Promise<void> {
    try {
      for (;;) {
        const claimed = await this.actions.claim(BATCH);
        for (const row of claimed) await this.handle(row);
        // A long backlog (a command run while the server was down): keep going.
        if (claimed.length < BATCH) return;
      }
    } catch (error) {
      // A failing database must not take the process down from a timer; the next look retries.
      process.stderr.write(`operator actions could not be read: ${error instanceof Error ? error.message : String(error)}\n`);
    }
  }

  private async handle(row: OperatorActionRow): Promise<void> {
    const who = { accountId: row.accountId, operator: row.operator };
    switch (row.action) {
      case "session.ended":
        if (row.sessionId !== null && row.provider !== null) {
          await this.sessions.adoptEnded({ id: row.sessionId, accountId: row.accountId, provider: row.provider, refreshToken: row.refreshToken }, "operator");
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

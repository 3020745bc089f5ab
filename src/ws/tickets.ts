import type { Statement } from "better-sqlite3";
import type { Clock, RandomBytes } from "../clock";
import { sha256Hex } from "../crypto/hash";
import { randomToken } from "../crypto/random";
import type { Database } from "../db/database";

export type TicketRedemption = { status: "valid"; sessionId: string } | { status: "expired" } | { status: "unknown" };

// 20 bytes from the CSPRNG: 160 bits, 32 base32 characters, valid in a subprotocol token.
export const TICKET_BYTES = 20;
export const TICKET_PATTERN = /^[a-z2-7]{32}$/;

/**
 * One-time WebSocket tickets (SECURITY.md E23). Only the SHA-256 of a ticket is stored, it
 * is bound to the session that asked for it, and redeeming it deletes it in the same
 * statement that reads it, so of fifty parallel upgrades with one ticket exactly one wins.
 */
export class TicketStore {
  private readonly insert: Statement<[string, string, number]>;
  private readonly take: Statement<[string], { sessionId: string; expiresAt: number } | undefined>;
  private readonly deleteExpired: Statement<[number]>;

  constructor(
    db: Database,
    private readonly clock: Clock,
    private readonly randomBytes: RandomBytes,
    private readonly ttlSeconds: number,
  ) {
    this.insert = db.sqlite.prepare("INSERT INTO ws_tickets (hash, session_id, expires_at) VALUES (?, ?, ?)");
    this.take = db.sqlite.prepare(
      "DELETE FROM ws_tickets WHERE hash = ? RETURNING session_id AS sessionId, expires_at AS expiresAt",
    ) as Statement<[string], { sessionId: string; expiresAt: number } | undefined>;
    this.deleteExpired = db.sqlite.prepare("DELETE FROM ws_tickets WHERE expires_at <= ?");
  }

  issue(sessionId: string): { ticket: string; expiresIn: number } {
    const ticket = randomToken(this.randomBytes, TICKET_BYTES);
    this.insert.run(sha256Hex(ticket), sessionId, this.clock.now() + this.ttlSeconds * 1000);
    return { ticket, expiresIn: this.ttlSeconds };
  }

  redeem(ticket: string): TicketRedemption {
    // Stryker: equivalent (this check and TICKET_PATTERN's anchors) — every issued ticket
    // matches the pattern, so a string that does not cannot hash to a stored SHA-256; the
    // lookup would answer "unknown" too. The check only spares the query.
    if (!TICKET_PATTERN.test(ticket)) {
      return { status: "unknown" };
    }
    const row = this.take.get(sha256Hex(ticket));
    if (row === undefined) {
      return { status: "unknown" };
    }
    if (row.expiresAt <= this.clock.now()) {
      return { status: "expired" };
    }
    return { status: "valid", sessionId: row.sessionId };
  }

  sweep(): number {
    return this.deleteExpired.run(this.clock.now()).changes;
  }
}

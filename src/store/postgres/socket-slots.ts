import { and, eq, inArray } from "drizzle-orm";
import type { Sql } from "postgres";
import type { Clock, RandomBytes } from "../../clock";
import { randomToken } from "../../crypto/random";
import type { PgORM } from "../../db/postgres";
import { liveSockets } from "../../db/schema-pg";
import { sha256Hex } from "../../crypto/hash";
import { TICKET_PATTERN } from "../../ws/tickets";
import type { SocketAdmission, SocketSlots } from "../types";

/**
 * WS_MAX_SOCKETS_PER_SESSION across nodes: one `live_sockets` row per socket. A claim is
 * one call of `portcullis_claim_socket` (db/migrations-pg/0002): inside the server it locks
 * the session's row, so claims of one session on any number of nodes run one after the
 * other and each counts the rows the previous committed: the cap cannot be overrun by
 * parallel upgrades on different nodes. One round trip, and the lock is held for the
 * server's few microseconds rather than across the client's round trips (it was a
 * six-statement transaction: issue 13). Rows carry this node's id and an expiry the node
 * pushes forward on each recheck; a node killed with its sockets open leaves rows that
 * stop counting `ttlMs` later (the players reconnecting elsewhere meanwhile are counted
 * twice for at most that long).
 */
export class PostgresSocketSlots implements SocketSlots {
  /** The slots this node holds: only they are renewed (a release the database missed lapses). */
  private readonly held = new Set<string>();

  constructor(
    private readonly orm: PgORM,
    /** postgres.js itself: its tagged statements are prepared (drizzle's `execute` is not). */
    private readonly client: Sql,
    private readonly node: string,
    private readonly clock: Clock,
    private readonly randomBytes: RandomBytes,
    private readonly ttlMs: number,
  ) {
  }

  async claim(sessionId: string, cap: number): Promise<string | null> {
    const id = randomToken(this.randomBytes, 16);
    const now = this.clock.now();
    const [row] = await this.client<{ slot: string | null }[]>`
      SELECT portcullis_claim_socket(${sessionId}, ${id}, ${this.node}, ${now}, ${now + this.ttlMs}, ${cap}) AS slot`;
    const slot = row?.slot ?? null;
    if (slot !== null) this.held.add(slot);
    return slot;
  }

  async admit(ticket: string, sessionId: string, cap: number): Promise<SocketAdmission> {
    if (!TICKET_PATTERN.test(ticket)) {
      return { status: "unknown" };
    }
    const id = randomToken(this.randomBytes, 16);
    const now = this.clock.now();
    const [row] = await this.client<{ outcome: string }[]>`
      SELECT portcullis_admit_socket(${sha256Hex(ticket)}, ${sessionId}, ${id}, ${this.node}, ${now}, ${now + this.ttlMs}, ${cap}) AS outcome`;
    const outcome = row?.outcome;
    if (outcome === id) {
      this.held.add(id);
      return { status: "admitted", slot: id };
    }
    if (outcome === "unknown" || outcome === "expired" || outcome === "wrong_session" || outcome === "full") {
      return { status: outcome };
    }
    throw new Error(`portcullis_admit_socket answered ${String(outcome)}`);
  }

  async release(slot: string): Promise<void> {
    this.held.delete(slot);
    await this.client`SELECT portcullis_release_socket(${slot})`;
  }

  async renew(): Promise<void> {
    if (this.held.size === 0) return;
    await this.orm
      .update(liveSockets)
      .set({ expiresAt: this.clock.now() + this.ttlMs })
      .where(and(eq(liveSockets.node, this.node), inArray(liveSockets.id, [...this.held])));
  }
}

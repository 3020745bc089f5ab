import { and, eq, gt, inArray, lte, sql } from "drizzle-orm";
import type { Clock, RandomBytes } from "../../clock";
import { randomToken } from "../../crypto/random";
import type { PgORM } from "../../db/postgres";
import { liveSockets, sessions } from "../../db/schema-pg";
import type { SocketSlots } from "../types";

/**
 * WS_MAX_SOCKETS_PER_SESSION across nodes: one `live_sockets` row per socket. A claim
 * locks the session's row first (SELECT … FOR UPDATE), so claims of one session on any
 * number of nodes run one after the other and each counts the rows the previous committed:
 * the cap cannot be overrun by parallel upgrades on different nodes. Rows carry this
 * node's id and an expiry the node pushes forward on each recheck; a node killed with its
 * sockets open leaves rows that stop counting `ttlMs` later (the players reconnecting
 * elsewhere meanwhile are counted twice for at most that long).
 */
export class PostgresSocketSlots implements SocketSlots {
  /** The slots this node holds: only they are renewed (a release the database missed lapses). */
  private readonly held = new Set<string>();

  constructor(
    private readonly orm: PgORM,
    private readonly node: string,
    private readonly clock: Clock,
    private readonly randomBytes: RandomBytes,
    private readonly ttlMs: number,
  ) {}

  async claim(sessionId: string, cap: number): Promise<string | null> {
    const slot = await this.orm.transaction(async (tx) => {
      const [session] = await tx.select({ id: sessions.id }).from(sessions).where(eq(sessions.id, sessionId)).for("update");
      // The session ended meanwhile: no slot (the gate refuses, the cascade would drop the row anyway).
      if (session === undefined) return null;
      const now = this.clock.now();
      await tx.delete(liveSockets).where(and(eq(liveSockets.sessionId, sessionId), lte(liveSockets.expiresAt, now)));
      const [held] = await tx
        .select({ n: sql<number>`count(*)::int` })
        .from(liveSockets)
        .where(and(eq(liveSockets.sessionId, sessionId), gt(liveSockets.expiresAt, now)));
      if ((held?.n ?? 0) >= cap) return null;
      const id = randomToken(this.randomBytes, 16);
      await tx.insert(liveSockets).values({ id, sessionId, node: this.node, expiresAt: now + this.ttlMs });
      return id;
    });
    if (slot !== null) this.held.add(slot);
    return slot;
  }

  async release(slot: string): Promise<void> {
    this.held.delete(slot);
    await this.orm.delete(liveSockets).where(eq(liveSockets.id, slot));
  }

  async renew(): Promise<void> {
    if (this.held.size === 0) return;
    await this.orm
      .update(liveSockets)
      .set({ expiresAt: this.clock.now() + this.ttlMs })
      .where(and(eq(liveSockets.node, this.node), inArray(liveSockets.id, [...this.held])));
  }
}

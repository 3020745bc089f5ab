import { lte } from "drizzle-orm";
import type { Clock } from "../../clock";
import type { PgORM } from "../../db/postgres";
import { logoutTokenJTIs } from "../../db/schema-pg";
import type { LogoutTokenJTIRepository } from "../types";

/**
 * Accepted logout tokens' `jti`, as `LogoutTokenJTIStore`: one INSERT … ON CONFLICT DO
 * NOTHING, so of one token posted to two nodes at once the primary key lets exactly one
 * insert, and the other refuses it as a replay.
 */
export class PostgresLogoutTokenJTIs implements LogoutTokenJTIRepository {
  constructor(
    private readonly orm: PgORM,
    private readonly clock: Clock,
  ) {}

  async remember(issuer: string, jti: string, expiresAt: number): Promise<boolean> {
    const inserted = await this.orm.insert(logoutTokenJTIs).values({ issuer, jti, expiresAt }).onConflictDoNothing().returning({ jti: logoutTokenJTIs.jti });
    return inserted.length === 1;
  }

  async sweep(): Promise<number> {
    const gone = await this.orm.delete(logoutTokenJTIs).where(lte(logoutTokenJTIs.expiresAt, this.clock.now())).returning({ jti: logoutTokenJTIs.jti });
    return gone.length;
  }
}

import { and, desc, eq, gt, lte, notInArray, sql } from "drizzle-orm";
import {
  attemptFromRow,
  HANDLE_MAX,
  LOGIN_ATTEMPT_TTL_SECONDS,
  MAX_ATTEMPTS_PER_BROWSER,
  sealAttemptSecrets,
  SECRET_BYTES,
  type LoginAttempt,
} from "../../auth/login-attempts";
import type { Clock, RandomBytes } from "../../clock";
import { sha256Hex } from "../../crypto/hash";
import { randomBase64URL } from "../../crypto/random";
import type { TokenCipher } from "../../crypto/token-cipher";
import type { PgORM } from "../../db/postgres";
import { loginAttempts } from "../../db/schema-pg";
import type { LoginAttemptRepository } from "../types";

/**
 * Logins in progress, as `LoginAttemptStore`: found by the hashes of `state` and of the
 * browser's handle together, verifier and nonce sealed, and consumed by the statement that
 * reads them (DELETE … RETURNING), so a replayed callback finds nothing on any node.
 */
export class PostgresLoginAttempts implements LoginAttemptRepository {
  constructor(
    private readonly orm: PgORM,
    private readonly cipher: TokenCipher,
    private readonly clock: Clock,
    private readonly randomBytes: RandomBytes,
  ) {}

  async start(input: {
    provider: string;
    returnTo: string;
    handle: string | null;
    previousSession: { id: string; accountId: string } | null;
  }): Promise<{ handle: string; attempt: LoginAttempt }> {
    const now = this.clock.now();
    await this.orm.delete(loginAttempts).where(lte(loginAttempts.expiresAt, now));
    const handle =
      input.handle !== null && (await this.pending(input.handle)) > 0 ? input.handle : randomBase64URL(this.randomBytes, SECRET_BYTES);
    const browser = sha256Hex(handle);
    const attempt: LoginAttempt = {
      provider: input.provider,
      returnTo: input.returnTo,
      state: randomBase64URL(this.randomBytes, SECRET_BYTES),
      codeVerifier: randomBase64URL(this.randomBytes, SECRET_BYTES),
      nonce: randomBase64URL(this.randomBytes, SECRET_BYTES),
      previousSession: input.previousSession,
    };
    const id = sha256Hex(attempt.state);
    await this.orm.insert(loginAttempts).values({
      id,
      browser,
      provider: input.provider,
      ...sealAttemptSecrets(this.cipher, id, attempt),
      returnTo: input.returnTo,
      previousSessionId: input.previousSession?.id ?? null,
      previousAccountId: input.previousSession?.accountId ?? null,
      expiresAt: now + LOGIN_ATTEMPT_TTL_SECONDS * 1000,
    });
    // Newest first; `seq` breaks ties when the clock has not moved between starts.
    const kept = (
      await this.orm
        .select({ id: loginAttempts.id })
        .from(loginAttempts)
        .where(eq(loginAttempts.browser, browser))
        .orderBy(desc(loginAttempts.expiresAt), desc(loginAttempts.seq))
        .limit(MAX_ATTEMPTS_PER_BROWSER)
    ).map((row) => row.id);
    await this.orm.delete(loginAttempts).where(and(eq(loginAttempts.browser, browser), notInArray(loginAttempts.id, kept)));
    return { handle, attempt };
  }

  async consume(handle: string, state: string): Promise<LoginAttempt | null> {
    if (handle.length > HANDLE_MAX || state.length > HANDLE_MAX) {
      return null;
    }
    const id = sha256Hex(state);
    const [row] = await this.orm
      .delete(loginAttempts)
      .where(and(eq(loginAttempts.id, id), eq(loginAttempts.browser, sha256Hex(handle))))
      .returning();
    if (row === undefined || row.expiresAt <= this.clock.now()) {
      return null;
    }
    return attemptFromRow(this.cipher, id, state, row);
  }

  async pending(handle: string): Promise<number> {
    if (handle.length > HANDLE_MAX) {
      return 0;
    }
    const [row] = await this.orm
      .select({ n: sql<number>`count(*)::int` })
      .from(loginAttempts)
      .where(and(eq(loginAttempts.browser, sha256Hex(handle)), gt(loginAttempts.expiresAt, this.clock.now())));
    return row?.n ?? 0;
  }
}

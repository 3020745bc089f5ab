import { and, desc, eq, gt, lte, notInArray, sql } from "drizzle-orm";
import type { Clock, RandomBytes } from "../clock";
import { sha256Hex } from "../crypto/hash";
import { randomBase64URL } from "../crypto/random";
import type { TokenCipher } from "../crypto/token-cipher";
import type { Database } from "../db/database";
import { loginAttempts } from "../db/schema";

export interface LoginAttempt {
  provider: string;
  returnTo: string;
  state: string;
  codeVerifier: string;
  nonce: string;
  /** The session the browser had when the login started; it ends when the login succeeds. */
  previousSession: { id: string; accountId: string } | null;
}

/** The login-state cookie lives 600 s (CONTRACT.md), and so does its row. */
export const LOGIN_ATTEMPT_TTL_SECONDS = 600;
/**
 * Logins one browser may have in progress at once (two tabs, a retry after closing the
 * provider's page); starting one more drops the oldest.
 */
export const MAX_ATTEMPTS_PER_BROWSER = 3;
// RFC 9700 2.1.1 / 4.7.1: state, PKCE verifier and nonce are 32 random bytes each.
export const SECRET_BYTES = 32;
export const HANDLE_MAX = 100;

/** A login attempt's verifier and nonce, sealed with the attempt's id (its state's SHA-256) and the field as associated data. */
export function sealAttemptSecrets(cipher: TokenCipher, id: string, attempt: { codeVerifier: string; nonce: string }): { codeVerifier: string; nonce: string } {
  return {
    codeVerifier: cipher.seal(attempt.codeVerifier, `portcullis/login/${id}/verifier`),
    nonce: cipher.seal(attempt.nonce, `portcullis/login/${id}/nonce`),
  };
}

/** The attempt a consumed row of either engine holds (`id` = SHA-256 of `state`), its secrets opened. */
export function attemptFromRow(
  cipher: TokenCipher,
  id: string,
  state: string,
  row: { provider: string; returnTo: string; codeVerifier: string; nonce: string; previousSessionId: string | null; previousAccountId: string | null },
): LoginAttempt {
  return {
    provider: row.provider,
    returnTo: row.returnTo,
    state,
    codeVerifier: cipher.open(row.codeVerifier, `portcullis/login/${id}/verifier`),
    nonce: cipher.open(row.nonce, `portcullis/login/${id}/nonce`),
    previousSession: row.previousSessionId !== null && row.previousAccountId !== null ? { id: row.previousSessionId, accountId: row.previousAccountId } : null,
  };
}

/**
 * Logins in progress, kept server-side. The Lax login-state cookie holds only a random
 * handle naming the browser; each row is one login of that browser, found by the hash of
 * its `state` and of the handle together, with the verifier and nonce sealed. A callback
 * deletes only the row its state names, in the same statement that reads it: a replay finds
 * nothing (single use), and a stray callback with another state (a second tab, or a
 * cross-site navigation an attacker starts) leaves the real login alone.
 */
export class LoginAttemptStore {
  constructor(
    private readonly db: Database,
    private readonly cipher: TokenCipher,
    private readonly clock: Clock,
    private readonly randomBytes: RandomBytes,
  ) {}

  /**
   * Starts a login. `handle` is the login-state cookie the browser sent, if any: it is kept
   * when it still names a live login (so a second tab does not orphan the first), and
   * replaced by a fresh one otherwise.
   */
  start(input: {
    provider: string;
    returnTo: string;
    handle: string | null;
    previousSession: { id: string; accountId: string } | null;
  }): { handle: string; attempt: LoginAttempt } {
    const now = this.clock.now();
    this.db.orm.delete(loginAttempts).where(lte(loginAttempts.expiresAt, now)).run();
    const handle =
      input.handle !== null && this.pending(input.handle) > 0 ? input.handle : randomBase64URL(this.randomBytes, SECRET_BYTES);
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
    this.db.orm
      .insert(loginAttempts)
      .values({
        id,
        browser,
        provider: input.provider,
        ...sealAttemptSecrets(this.cipher, id, attempt),
        returnTo: input.returnTo,
        previousSessionId: input.previousSession?.id ?? null,
        previousAccountId: input.previousSession?.accountId ?? null,
        expiresAt: now + LOGIN_ATTEMPT_TTL_SECONDS * 1000,
      })
      .run();
    // Newest first (rowid breaks ties when the clock has not moved between starts).
    const kept = this.db.orm
      .select({ id: loginAttempts.id })
      .from(loginAttempts)
      .where(eq(loginAttempts.browser, browser))
      .orderBy(desc(loginAttempts.expiresAt), desc(sql`rowid`))
      .limit(MAX_ATTEMPTS_PER_BROWSER)
      .all()
      .map((row) => row.id);
    this.db.orm
      .delete(loginAttempts)
      .where(and(eq(loginAttempts.browser, browser), notInArray(loginAttempts.id, kept)))
      .run();
    return { handle, attempt };
  }

  /**
   * Deletes and returns this browser's attempt that `state` names; null when there is none
   * or it expired. Other attempts of the browser are untouched.
   */
  consume(handle: string, state: string): LoginAttempt | null {
    // Stryker: equivalent (this check and its bound) — every handle and state this store
    // issues is 43 characters, so a longer one cannot hash to a stored row; the lookup would
    // find nothing too. The check only spares two hashes and a query.
    if (handle.length > HANDLE_MAX || state.length > HANDLE_MAX) {
      return null;
    }
    // The row is found by hashes of two 256-bit secrets, so the lookup's timing reveals
    // nothing an attacker could use to guess either.
    const id = sha256Hex(state);
    const row = this.db.orm
      .delete(loginAttempts)
      .where(and(eq(loginAttempts.id, id), eq(loginAttempts.browser, sha256Hex(handle))))
      .returning()
      .get();
    if (row === undefined || row.expiresAt <= this.clock.now()) {
      return null;
    }
    return attemptFromRow(this.cipher, id, state, row);
  }

  /** How many live logins the browser holding `handle` still has in progress. */
  pending(handle: string): number {
    // Stryker: equivalent — as in consume(): a handle longer than any issued one counts nothing.
    if (handle.length > HANDLE_MAX) {
      return 0;
    }
    const row = this.db.orm
      .select({ n: sql<number>`count(*)` })
      .from(loginAttempts)
      .where(and(eq(loginAttempts.browser, sha256Hex(handle)), gt(loginAttempts.expiresAt, this.clock.now())))
      .get();
    return row?.n ?? 0;
  }
}

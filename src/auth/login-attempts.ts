import { eq, lte } from "drizzle-orm";
import type { Clock, RandomBytes } from "../clock";
import { constantTimeEqual, sha256, sha256Hex } from "../crypto/hash";
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
}

/** The login-state cookie lives 600 s (CONTRACT.md), and so does its row. */
export const LOGIN_ATTEMPT_TTL_SECONDS = 600;
// RFC 9700 2.1.1 / 4.7.1: state, PKCE verifier and nonce are 32 random bytes each.
const SECRET_BYTES = 32;

/**
 * Logins in progress, kept server-side. The Lax login-state cookie holds only a random
 * handle; the row it names holds the hash of `state`, and the verifier and nonce sealed.
 * Consuming deletes the row in the same statement that reads it, so a replayed callback
 * finds nothing (single use).
 */
export class LoginAttemptStore {
  constructor(
    private readonly db: Database,
    private readonly cipher: TokenCipher,
    private readonly clock: Clock,
    private readonly randomBytes: RandomBytes,
  ) {}

  start(provider: string, returnTo: string): { handle: string; attempt: LoginAttempt } {
    const handle = randomBase64URL(this.randomBytes, SECRET_BYTES);
    const id = sha256Hex(handle);
    const attempt: LoginAttempt = {
      provider,
      returnTo,
      state: randomBase64URL(this.randomBytes, SECRET_BYTES),
      codeVerifier: randomBase64URL(this.randomBytes, SECRET_BYTES),
      nonce: randomBase64URL(this.randomBytes, SECRET_BYTES),
    };
    const now = this.clock.now();
    this.db.orm.delete(loginAttempts).where(lte(loginAttempts.expiresAt, now)).run();
    this.db.orm
      .insert(loginAttempts)
      .values({
        id,
        stateHash: sha256(attempt.state),
        provider,
        codeVerifier: this.cipher.seal(attempt.codeVerifier, `portcullis/login/${id}/verifier`),
        nonce: this.cipher.seal(attempt.nonce, `portcullis/login/${id}/nonce`),
        returnTo,
        expiresAt: now + LOGIN_ATTEMPT_TTL_SECONDS * 1000,
      })
      .run();
    return { handle, attempt };
  }

  /**
   * Deletes and returns the attempt the cookie names if `state` matches; null when there is
   * none, it expired, or the state differs (the row is gone either way).
   */
  consume(handle: string, state: string): LoginAttempt | null {
    if (handle.length > 100) {
      return null;
    }
    const id = sha256Hex(handle);
    const row = this.db.orm.delete(loginAttempts).where(eq(loginAttempts.id, id)).returning().get();
    if (row === undefined || row.expiresAt <= this.clock.now()) {
      return null;
    }
    if (!constantTimeEqual(sha256(state), row.stateHash)) {
      return null;
    }
    return {
      provider: row.provider,
      returnTo: row.returnTo,
      state,
      codeVerifier: this.cipher.open(row.codeVerifier, `portcullis/login/${id}/verifier`),
      nonce: this.cipher.open(row.nonce, `portcullis/login/${id}/nonce`),
    };
  }
}

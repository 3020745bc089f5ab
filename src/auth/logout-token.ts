import { createRemoteJWKSet, customFetch, decodeJwt, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from "jose";
import { lte, sql } from "drizzle-orm";
import type { Clock } from "../clock";
import type { Database } from "../db/database";
import { logoutTokenJTIs } from "../db/schema";
import type { LogoutTokenJTIRepository } from "../store/types";

/** OIDC Back-Channel Logout 1.0 2.4: the event a logout token must carry. */
export const BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout";

/**
 * How old a logout token may be (its `iat`). The specification leaves the window to us
 * (2.6 item 7); a provider sends the token as the user signs out, so minutes are plenty,
 * and the replay store need only remember a `jti` this long.
 */
export const LOGOUT_TOKEN_MAX_AGE_SECONDS = 300;
/** Clock skew tolerated between us and the provider, for `iat` in the future and `exp`. */
export const LOGOUT_TOKEN_SKEW_SECONDS = 30;
// Only public-key algorithms: the keys come from the provider's JWKS, and a MAC algorithm
// would let anyone who knows our client secret (or a confused verifier) sign for it.
// jose never accepts `alg: none` in jwtVerify. Stryker: enforces nothing (removing one name) —
// that only refuses a provider's tokens in one more public-key algorithm; the tests sign with RS256.
const ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"];
// jose's JWKS cache: a key set is reused for 10 minutes, and an unknown `kid` (the provider
// rotated its keys) triggers a refetch at most every 30 s, so a flood of tokens with made-up
// key ids cannot make us hammer the provider.
const JWKS_CACHE_MAX_AGE_MS = 600_000;
const JWKS_COOLDOWN_MS = 30_000;
const JWKS_TIMEOUT_MS = 5_000;
const MAX_CLAIM_LENGTH = 255;

/** What a valid logout token says. */
export interface LogoutToken {
  issuer: string;
  subject: string | null;
  sid: string | null;
  jti: string;
}

/** A logout token was refused; `reason` is for the audit log (never the token itself). */
export class LogoutTokenError extends Error {
  constructor(
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(reason, options);
    // Stryker: enforces nothing (the name) — callers test `instanceof` and read `reason`.
    this.name = "LogoutTokenError";
  }
}

export interface LogoutTokenVerifierOptions {
  issuer: string;
  clientId: string;
  jwksURI: string;
  clock: Clock;
  jtis: LogoutTokenJTIRepository;
  fetch?: typeof fetch;
}

/**
 * Validates a logout token as OIDC Back-Channel Logout 1.0 section 2.6 says, item by item:
 * signature against the provider's JWKS (1–3), `iss`, `aud`, `iat` and `exp` (4–5, 7),
 * the `events` member (6: it is what tells a logout token from an ID token), `sid` or
 * `sub` (5), no `nonce` (8: an ID token pasted here is refused), and a `jti` never seen
 * before (9, replay). The `jti` is recorded only once everything else holds, so a forged
 * token cannot burn the `jti` of a genuine one.
 */
export class LogoutTokenVerifier {
  private readonly keys: JWTVerifyGetKey;

  constructor(private readonly options: LogoutTokenVerifierOptions) {
    this.keys = createRemoteJWKSet(new URL(options.jwksURI), {
      cacheMaxAge: JWKS_CACHE_MAX_AGE_MS,
      cooldownDuration: JWKS_COOLDOWN_MS,
      timeoutDuration: JWKS_TIMEOUT_MS,
      ...(options.fetch === undefined ? {} : { [customFetch]: options.fetch }),
    });
  }

  /** The token's claims; throws {@link LogoutTokenError} for anything the specification refuses. */
  async verify(token: string): Promise<LogoutToken> {
    let payload: JWTPayload;
    try {
      const verified = await jwtVerify(token, this.keys, {
        issuer: this.options.issuer,
        audience: this.options.clientId,
        algorithms: ALGORITHMS,
        currentDate: new Date(this.options.clock.now()),
        clockTolerance: LOGOUT_TOKEN_SKEW_SECONDS,
        maxTokenAge: LOGOUT_TOKEN_MAX_AGE_SECONDS,
        requiredClaims: ["iat", "jti"],
      });
      payload = verified.payload;
      // 2.4: explicit typing; a provider that types its logout tokens types them logout+jwt.
      const typ = verified.protectedHeader.typ;
      if (typ !== undefined && typ.toLowerCase() !== "logout+jwt" && typ.toLowerCase() !== "application/logout+jwt") {
        throw new LogoutTokenError(`typ ${typ} is not logout+jwt`);
      }
    } catch (error) {
      if (error instanceof LogoutTokenError) throw error;
      // Stryker: enforces nothing (`{ cause }` → `{}`) — the chain is for a debugger; the audit line has the reason.
      throw new LogoutTokenError(describeJoseError(error), { cause: error });
    }

    const events = payload.events;
    // Stryker: equivalent (`Array.isArray(events)` → `false`) — a JSON array has no member
    // named by the event URI, so the event check below refuses it all the same.
    if (typeof events !== "object" || events === null || Array.isArray(events)) {
      throw new LogoutTokenError("no events claim");
    }
    const event: unknown = (events as Record<string, unknown>)[BACKCHANNEL_LOGOUT_EVENT];
    if (typeof event !== "object" || event === null || Array.isArray(event)) {
      throw new LogoutTokenError("events claim lacks the back-channel logout event");
    }
    if ("nonce" in payload) {
      throw new LogoutTokenError("nonce present (an ID token, not a logout token)");
    }
    const subject = optionalClaim(payload.sub, "sub");
    const sid = optionalClaim(payload.sid, "sid");
    if (subject === null && sid === null) {
      throw new LogoutTokenError("neither sid nor sub");
    }
    const jti = optionalClaim(payload.jti, "jti");
    const iat = payload.iat;
    // Stryker: equivalent (either condition → `false`) — jwtVerify above already refused a
    // token without `jti` (requiredClaims) or without a numeric `iat` (maxTokenAge makes jose
    // require it as a NumericDate); this only narrows the types.
    if (jti === null || typeof iat !== "number") {
      throw new LogoutTokenError("no jti or iat");
    }
    const rememberUntil = (iat + LOGOUT_TOKEN_MAX_AGE_SECONDS + 2 * LOGOUT_TOKEN_SKEW_SECONDS) * 1000;
    if (!(await this.options.jtis.remember(this.options.issuer, jti, rememberUntil))) {
      throw new LogoutTokenError("jti already used (replay)");
    }
    return { issuer: this.options.issuer, subject, sid, jti };
  }
}

/**
 * The `jti` values of accepted logout tokens, per issuer, in the database (they must
 * survive a restart: a replay an hour after a deploy is still a replay).
 */
export class LogoutTokenJTIStore {
  constructor(
    private readonly db: Database,
    private readonly clock: Clock,
  ) {}

  /** Records the jti; false when it was already there (a replay). One statement: atomic. */
  remember(issuer: string, jti: string, expiresAt: number): boolean {
    const result = this.db.orm.insert(logoutTokenJTIs).values({ issuer, jti, expiresAt }).onConflictDoNothing().run();
    return result.changes === 1;
  }

  /** Forgets jtis whose tokens would now be refused as too old anyway. */
  sweep(): number {
    return this.db.orm
      .delete(logoutTokenJTIs)
      .where(lte(logoutTokenJTIs.expiresAt, sql`${this.clock.now()}`))
      .run().changes;
  }
}

function optionalClaim(value: unknown, name: string): string | null {
  if (value === undefined) return null;
  if (typeof value !== "string" || value === "" || value.length > MAX_CLAIM_LENGTH) {
    throw new LogoutTokenError(`${name} is not a usable string`);
  }
  return value;
}

/** A short, token-free reason for the audit log. */
/**
 * The audit reason of a token jose refused. Stryker: untested (the JWKS timeout's and the
 * last line's texts) — the test provider always answers for its keys, and jose throws only
 * its own errors.
 */
function describeJoseError(error: unknown): string {
  if (error instanceof errors.JWTExpired) return error.claim === "iat" ? "iat too old" : "expired";
  if (error instanceof errors.JWTClaimValidationFailed) return `claim ${error.claim}: ${error.reason}`;
  if (error instanceof errors.JWSSignatureVerificationFailed) return "signature does not verify";
  if (error instanceof errors.JWKSNoMatchingKey) return "no provider key matches";
  if (error instanceof errors.JOSEAlgNotAllowed) return "algorithm not allowed";
  if (error instanceof errors.JWKSTimeout) return "provider keys unreachable (timeout)";
  if (error instanceof errors.JOSEError) return error.code;
  return "unreadable token";
}

/**
 * The provider's session id (`sid`, OIDC Front-/Back-Channel Logout) in an ID token, or
 * null. The ID token was already checked by the login (it came straight from the token
 * endpoint: OIDC Core 3.1.3.7 item 6); this only reads one more claim of it.
 */
export function sidOfIdToken(idToken: string | null): string | null {
  if (idToken === null) return null;
  try {
    const sid = decodeJwt(idToken).sid;
    // Stryker: equivalent (either bound → `true`) — a session stored with an empty or overlong
    // sid is never matched, since a logout token with such a sid is refused (optionalClaim).
    return typeof sid === "string" && sid !== "" && sid.length <= MAX_CLAIM_LENGTH ? sid : null;
  } catch {
    return null;
  }
}

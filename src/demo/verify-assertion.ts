import { createPublicKey, verify, type KeyObject } from "node:crypto";

/**
 * How a game backend trusts Portcullis — the reference a studio copies. The backend never
 * sees a cookie or a provider token: every WebSocket handshake and /api request carries
 * `Authorization: Bearer <JWT>` signed by the BFF with Ed25519. Verify it against the BFF's
 * published keys (/.well-known/jwks.json), pin `alg`, `iss` and `aud`, and honour `exp`.
 */
export interface VerifiedIdentity {
  /** Internal account id: the player. */
  sub: string;
  /** Session id: lets the backend tell two tabs of one player apart. */
  sid: string;
  name: string;
  exp: number;
  jti: string;
}

export class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

export interface AssertionVerifierOptions {
  jwksURL: string;
  issuer: string;
  audience: string;
  now?: () => number;
  fetch?: typeof fetch;
  /** Seconds of clock skew tolerated on exp/nbf. */
  leewaySeconds?: number;
}

const JWKS_REFRESH_MS = 5 * 60_000;
const JWKS_MIN_REFETCH_MS = 10_000;

export class AssertionVerifier {
  private keys = new Map<string, KeyObject>();
  private fetchedAt = 0;
  private inflight: Promise<void> | null = null;

  constructor(private readonly options: AssertionVerifierOptions) {}

  /** The identity in `authorization` (`Bearer …`); throws {@link AssertionError} if it is not a valid assertion. */
  async verifyAuthorization(authorization: string | undefined): Promise<VerifiedIdentity> {
    const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(authorization ?? "");
    if (match?.[1] === undefined) {
      throw new AssertionError("no bearer assertion");
    }
    return this.verify(match[1]);
  }

  async verify(jwt: string): Promise<VerifiedIdentity> {
    const [headerPart, payloadPart, signaturePart] = jwt.split(".");
    if (headerPart === undefined || payloadPart === undefined || signaturePart === undefined) {
      throw new AssertionError("malformed JWT");
    }
    const header = parseJSON(headerPart);
    // Pin the algorithm: never let the token choose how it is verified.
    if (header.alg !== "EdDSA" || typeof header.kid !== "string") {
      throw new AssertionError("unexpected JWT header");
    }
    const key = await this.key(header.kid);
    const signed = Buffer.from(`${headerPart}.${payloadPart}`);
    if (!verify(null, signed, key, Buffer.from(signaturePart, "base64url"))) {
      throw new AssertionError("bad signature");
    }
    const claims = parseJSON(payloadPart);
    const now = Math.floor((this.options.now?.() ?? Date.now()) / 1000);
    const leeway = this.options.leewaySeconds ?? 5;
    if (claims.iss !== this.options.issuer) throw new AssertionError("wrong issuer");
    if (claims.aud !== this.options.audience) throw new AssertionError("wrong audience");
    if (typeof claims.exp !== "number" || claims.exp + leeway <= now) throw new AssertionError("expired");
    if (typeof claims.nbf === "number" && claims.nbf - leeway > now) throw new AssertionError("not yet valid");
    const { sub, sid, name, exp, jti } = claims;
    if (typeof sub !== "string" || typeof sid !== "string" || typeof name !== "string" || typeof jti !== "string") {
      throw new AssertionError("missing claims");
    }
    return { sub, sid, name, exp, jti };
  }

  private async key(kid: string): Promise<KeyObject> {
    const stale = Date.now() - this.fetchedAt > JWKS_REFRESH_MS;
    // An unknown kid may be a freshly rotated key: refetch, but not more than every 10 s.
    if (stale || (!this.keys.has(kid) && Date.now() - this.fetchedAt > JWKS_MIN_REFETCH_MS)) {
      await this.refresh();
    }
    const key = this.keys.get(kid);
    if (key === undefined) {
      throw new AssertionError("unknown signing key");
    }
    return key;
  }

  private refresh(): Promise<void> {
    this.inflight ??= (async () => {
      try {
        const response = await (this.options.fetch ?? fetch)(this.options.jwksURL, { signal: AbortSignal.timeout(5_000) });
        if (!response.ok) throw new AssertionError(`JWKS answered ${response.status}`);
        const body: unknown = await response.json();
        const list = typeof body === "object" && body !== null ? (body as { keys?: unknown }).keys : undefined;
        if (!Array.isArray(list)) throw new AssertionError("JWKS has no keys");
        const keys = new Map<string, KeyObject>();
        for (const jwk of list) {
          if (typeof jwk !== "object" || jwk === null) continue;
          const { kty, crv, x, kid } = jwk as Record<string, unknown>;
          if (kty === "OKP" && crv === "Ed25519" && typeof x === "string" && typeof kid === "string") {
            keys.set(kid, createPublicKey({ key: { kty, crv, x }, format: "jwk" }));
          }
        }
        this.keys = keys;
        this.fetchedAt = Date.now();
      } finally {
        this.inflight = null;
      }
    })();
    return this.inflight;
  }
}

function parseJSON(part: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
    if (typeof value === "object" && value !== null && !Array.isArray(value)) {
      return value as Record<string, unknown>;
    }
  } catch {
    // fall through
  }
  throw new AssertionError("malformed JWT part");
}

import { createHash, createPrivateKey, createPublicKey, sign, type KeyObject } from "node:crypto";
import type { Clock, RandomBytes } from "../clock";
import type { NamedKey } from "../config";
import { RecentMap } from "../recent-map";

export interface AssertionClaims {
  /** The internal account id. */
  sub: string;
  /** The session id. */
  sid: string;
  /** Display name. */
  name: string;
  /** The upstream's configured audience. */
  aud: string;
  /**
   * The configured name of the provider this session logged in with (`google`, `demo`):
   * claim `idp`. Both relays always set it; optional only for tools that sign test assertions.
   */
  idp?: string;
  /**
   * The player's subject at that provider, claim `idp_sub`: with `idp`, the key a studio
   * maps its existing player records by. Null (and the claim left out) only when the
   * account has no identity under that provider name, i.e. the provider was renamed.
   */
  idpSub?: string | null;
}

export interface PublicJWK {
  kty: "OKP";
  crv: "Ed25519";
  x: string;
  kid: string;
  alg: "EdDSA";
  use: "sig";
}

/** Identity assertions live 60 s (CONTRACT.md): long enough for a handshake, useless if leaked from a log. */
export const ASSERTION_TTL_SECONDS = 60;
/**
 * How long one assertion serves the HTTP requests of one session to one audience: half its
 * life, so an upstream always gets one with 30 s or more left. Signing per request cost
 * more CPU than the rest of the relay's own work (issue 14).
 */
export const ASSERTION_REUSE_MS = 30_000;
/** Reusable assertions kept at most (one per live session and audience in use); the oldest go first. */
const REUSE_ENTRIES = 10_000;

// PKCS#8 wrapping of a raw 32-byte Ed25519 seed (RFC 8410 section 7).
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

interface SigningKey {
  id: string;
  privateKey: KeyObject;
  jwk: PublicJWK;
}

/**
 * Signs the short-lived JWT the game backend receives instead of any browser credential
 * (CONTRACT.md "Identity for upstreams"): EdDSA over Ed25519, RFC 8037. The first key
 * signs; all are published at /.well-known/jwks.json so a key can rotate without a gap.
 */
export class AssertionSigner {
  private readonly keys: SigningKey[];
  private readonly jwksBody: string;
  /** Reusable assertions by their claims, in the order they were signed. */
  private readonly reusable = new RecentMap<string, { token: string; signedAt: number }>(REUSE_ENTRIES);

  constructor(
    seeds: NamedKey[],
    private readonly issuer: string,
    private readonly clock: Clock,
    private readonly randomBytes: RandomBytes,
  ) {
    if (seeds.length === 0) {
      throw new Error("AssertionSigner needs at least one key");
    }
    this.keys = seeds.map(({ id, key }) => {
      const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, key]), format: "der", type: "pkcs8" });
      const exported = createPublicKey(privateKey).export({ format: "jwk" });
      if (typeof exported.x !== "string") {
        throw new Error(`key ${id} did not yield an Ed25519 public key`);
      }
      return { id, privateKey, jwk: { kty: "OKP", crv: "Ed25519", x: exported.x, kid: id, alg: "EdDSA", use: "sig" } };
    });
    this.jwksBody = JSON.stringify({ keys: this.keys.map((k) => k.jwk) });
  }

  /** The JSON of the JWK Set, computed once. */
  jwksJSON(): string {
    return this.jwksBody;
  }

  /**
   * An assertion for these claims signed less than {@link ASSERTION_REUSE_MS} ago, or a
   * new one. For HTTP requests, each of which is checked against the live session before it
   * gets here: a session that ended gets no request through, cached assertion or not. Its
   * `jti` then names the assertion, not the request (X-Request-Id names the request). The
   * WebSocket handshake signs a fresh one (`sign`).
   */
  signReusable(claims: AssertionClaims): string {
    const key = JSON.stringify([claims.sub, claims.sid, claims.name, claims.aud, claims.idp ?? null, claims.idpSub ?? null]);
    const now = this.clock.now();
    const kept = this.reusable.get(key);
    if (kept !== undefined && now >= kept.signedAt && now - kept.signedAt < ASSERTION_REUSE_MS) return kept.token;
    const token = this.sign(claims);
    this.reusable.set(key, { token, signedAt: now });
    return token;
  }

  sign(claims: AssertionClaims): string {
    const key = this.keys[0] as SigningKey;
    const iat = Math.floor(this.clock.now() / 1000);
    const header = { alg: "EdDSA", typ: "JWT", kid: key.id };
    const payload = {
      iss: this.issuer,
      aud: claims.aud,
      sub: claims.sub,
      sid: claims.sid,
      name: claims.name,
      // Named as Microsoft Entra ID and Duende IdentityServer name the provider claim; not
      // `iss` or `sub`, which are ours. Nothing else from the ID token is passed on.
      ...(claims.idp === undefined ? {} : { idp: claims.idp }),
      ...(claims.idpSub === undefined || claims.idpSub === null ? {} : { idp_sub: claims.idpSub }),
      iat,
      nbf: iat,
      exp: iat + ASSERTION_TTL_SECONDS,
      jti: this.randomBytes(16).toString("base64url"),
    };
    const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
    const signature = sign(null, Buffer.from(signingInput), key.privateKey).toString("base64url");
    return `${signingInput}.${signature}`;
  }
}

/** RFC 7638 thumbprint, a stable kid for generated keys. */
export function jwkThumbprint(x: string): string {
  return createHash("sha256").update(JSON.stringify({ crv: "Ed25519", kty: "OKP", x })).digest("base64url");
}

function base64url(text: string): string {
  return Buffer.from(text, "utf8").toString("base64url");
}

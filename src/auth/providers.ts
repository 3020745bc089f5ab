// The one module that knows arctic. Its author deprecated it in July 2026; everything else
// in Portcullis talks to the `Provider` interface below, so replacing arctic means
// rewriting this file only.
import {
  ArcticFetchError,
  CodeChallengeMethod,
  Discord,
  GitHub,
  Google,
  OAuth2Client,
  OAuth2RequestError,
  Twitch,
  decodeIdToken,
  type OAuth2Tokens,
} from "arctic";
import type { Clock } from "../clock";
import type { ProviderConfig } from "../config";
import type { ProviderTokens } from "./session";

export interface ProviderIdentity {
  issuer: string;
  subject: string;
  displayName: string;
}

export interface AuthorizationRequest {
  state: string;
  codeVerifier: string;
  nonce: string;
}

export interface Provider {
  /** The name in the routes: `/auth/login/:name`. */
  name: string;
  label: string;
  /** The issuer identities are keyed by (the OIDC `iss`, or a fixed URL for OAuth-only providers). */
  issuer: string;
  /** Origin of the authorization endpoint, for CSP `form-action`. */
  authorizationOrigin: string;
  /** RFC 9207: the provider sends `iss` on its callback and we must then insist on it. */
  sendsIssuerInCallback: boolean;
  authorizationURL(request: AuthorizationRequest): URL;
  /** Exchanges the code and identifies the user; throws {@link ProviderError}. */
  completeLogin(code: string, request: AuthorizationRequest): Promise<{ tokens: ProviderTokens; identity: ProviderIdentity }>;
  /** Throws {@link ProviderError}; `code === "invalid_grant"` means the grant is gone. */
  refresh(refreshToken: string): Promise<ProviderTokens>;
  /** RFC 7009 revocation, when the provider has it. */
  revoke: ((token: string) => Promise<void>) | null;
  /** Our client id at the provider: the `aud` of its tokens, the `client_id` of a logout request. */
  clientId: string;
  /** Where the provider's signing keys are (OIDC Discovery `jwks_uri`), when it is an OIDC provider. */
  jwksURI: string | null;
  /** OIDC RP-Initiated Logout 1.0 `end_session_endpoint`, when the provider has one. */
  endSessionEndpoint: string | null;
  /** The provider advertises `backchannel_logout_supported` (OIDC Back-Channel Logout 1.0 2.1). */
  backchannelLogoutSupported: boolean;
}

/** A provider refused a request (`code` is the OAuth error) or could not be reached (`code` "unreachable"). */
export class ProviderError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "ProviderError";
  }

  get isGrantRevoked(): boolean {
    return this.code === "invalid_grant";
  }

  get isUnreachable(): boolean {
    return this.code === "unreachable";
  }
}

export interface ProviderContext {
  publicOrigin: string;
  clock: Clock;
  fetch?: typeof fetch;
}

/** Builds every configured provider; OIDC issuers are discovered, so this does network I/O. */
export async function createProviders(configs: ProviderConfig[], context: ProviderContext): Promise<Map<string, Provider>> {
  const providers = new Map<string, Provider>();
  const problems: string[] = [];
  for (const config of configs) {
    try {
      providers.set(config.name, await createProvider(config, context));
    } catch (error) {
      problems.push(`${config.name}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  if (problems.length > 0) {
    throw new Error(`Identity providers could not be set up:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
  return providers;
}

function callbackURL(context: ProviderContext, name: string): string {
  return `${context.publicOrigin}/auth/callback/${name}`;
}

async function createProvider(config: ProviderConfig, context: ProviderContext): Promise<Provider> {
  switch (config.kind) {
    case "oidc":
      return createOIDCProvider(config, await discover(config.issuer, context.fetch ?? fetch), context);
    case "google":
      return createGoogleProvider(config, context);
    case "discord":
      return createDiscordProvider(config, context);
    case "github":
      return createGitHubProvider(config, context);
    case "twitch":
      return createTwitchProvider(config, context);
  }
}

export interface OIDCMetadata {
  issuer: string;
  authorizationEndpoint: string;
  tokenEndpoint: string;
  revocationEndpoint: string | null;
  issuerInCallback: boolean;
  jwksURI: string | null;
  endSessionEndpoint: string | null;
  backchannelLogoutSupported: boolean;
}

/** OpenID Connect Discovery 1.0; the document's `issuer` must equal the configured one exactly (section 4.3). */
export async function discover(issuer: string, fetcher: typeof fetch): Promise<OIDCMetadata> {
  const url = `${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
  let body: unknown;
  try {
    const response = await fetcher(url, { headers: { accept: "application/json" }, redirect: "error", signal: AbortSignal.timeout(10_000) });
    if (!response.ok) {
      throw new Error(`HTTP ${response.status}`);
    }
    body = await response.json();
  } catch (cause) {
    throw new Error(`discovery at ${url} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
  if (typeof body !== "object" || body === null) {
    throw new Error(`discovery at ${url} did not answer a JSON object`);
  }
  const field = (name: string): unknown => (body as Record<string, unknown>)[name];
  const discoveredIssuer = field("issuer");
  if (discoveredIssuer !== issuer) {
    throw new Error(`discovery says issuer ${JSON.stringify(discoveredIssuer)}, expected "${issuer}"`);
  }
  const authorizationEndpoint = field("authorization_endpoint");
  const tokenEndpoint = field("token_endpoint");
  if (typeof authorizationEndpoint !== "string" || typeof tokenEndpoint !== "string") {
    throw new Error("discovery lacks authorization_endpoint or token_endpoint");
  }
  const methods = field("code_challenge_methods_supported");
  if (Array.isArray(methods) && !methods.includes("S256")) {
    throw new Error("the provider does not support PKCE S256");
  }
  const revocation = field("revocation_endpoint");
  const jwksURI = field("jwks_uri");
  const endSession = field("end_session_endpoint");
  return {
    issuer,
    authorizationEndpoint,
    tokenEndpoint,
    revocationEndpoint: typeof revocation === "string" ? revocation : null,
    issuerInCallback: field("authorization_response_iss_parameter_supported") === true,
    jwksURI: typeof jwksURI === "string" ? jwksURI : null,
    endSessionEndpoint: typeof endSession === "string" ? endSession : null,
    backchannelLogoutSupported: field("backchannel_logout_supported") === true,
  };
}

function createOIDCProvider(config: ProviderConfig, metadata: OIDCMetadata, context: ProviderContext): Provider {
  const client = new OAuth2Client(config.clientId, config.clientSecret, callbackURL(context, config.name));
  const { revocationEndpoint } = metadata;
  return {
    name: config.name,
    label: config.label,
    issuer: metadata.issuer,
    authorizationOrigin: new URL(metadata.authorizationEndpoint).origin,
    sendsIssuerInCallback: metadata.issuerInCallback,
    authorizationURL(request) {
      const url = client.createAuthorizationURLWithPKCE(
        metadata.authorizationEndpoint,
        request.state,
        CodeChallengeMethod.S256,
        request.codeVerifier,
        config.scopes,
      );
      url.searchParams.set("nonce", request.nonce);
      if (config.scopes.includes("offline_access")) {
        // OIDC Core 11: offline_access is only honoured together with prompt=consent.
        url.searchParams.set("prompt", "consent");
      }
      return url;
    },
    async completeLogin(code, request) {
      const tokens = await call(() => client.validateAuthorizationCode(metadata.tokenEndpoint, code, request.codeVerifier));
      const identity = identityFromIdToken(tokens, {
        issuers: [metadata.issuer],
        clientId: config.clientId,
        nonce: request.nonce,
        now: context.clock.now(),
      });
      return { tokens: toProviderTokens(tokens, context.clock), identity };
    },
    async refresh(refreshToken) {
      return toProviderTokens(await call(() => client.refreshAccessToken(metadata.tokenEndpoint, refreshToken, [])), context.clock);
    },
    revoke: revocationEndpoint === null ? null : (token) => call(() => client.revokeToken(revocationEndpoint, token)),
    clientId: config.clientId,
    jwksURI: metadata.jwksURI,
    endSessionEndpoint: metadata.endSessionEndpoint,
    // Without the provider's keys no logout token can be verified: no route then.
    backchannelLogoutSupported: metadata.backchannelLogoutSupported && metadata.jwksURI !== null,
  };
}

function createGoogleProvider(config: ProviderConfig, context: ProviderContext): Provider {
  const google = new Google(config.clientId, config.clientSecret, callbackURL(context, config.name));
  return {
    name: config.name,
    label: config.label,
    issuer: "https://accounts.google.com",
    authorizationOrigin: "https://accounts.google.com",
    sendsIssuerInCallback: true,
    authorizationURL(request) {
      const url = google.createAuthorizationURL(request.state, request.codeVerifier, config.scopes);
      url.searchParams.set("nonce", request.nonce);
      // Google issues a refresh token only with access_type=offline.
      url.searchParams.set("access_type", "offline");
      return url;
    },
    async completeLogin(code, request) {
      const tokens = await call(() => google.validateAuthorizationCode(code, request.codeVerifier));
      // Google's ID tokens carry either form of its issuer (Google Identity docs, "Validating an ID token").
      const identity = identityFromIdToken(tokens, {
        issuers: ["https://accounts.google.com", "accounts.google.com"],
        clientId: config.clientId,
        nonce: request.nonce,
        now: context.clock.now(),
      });
      return { tokens: toProviderTokens(tokens, context.clock), identity: { ...identity, issuer: "https://accounts.google.com" } };
    },
    async refresh(refreshToken) {
      return toProviderTokens(await call(() => google.refreshAccessToken(refreshToken)), context.clock);
    },
    revoke: (token) => call(() => google.revokeToken(token)),    clientId: config.clientId,
    jwksURI: null,
    endSessionEndpoint: null,
    backchannelLogoutSupported: false,
  };
}

function createDiscordProvider(config: ProviderConfig, context: ProviderContext): Provider {
  const discord = new Discord(config.clientId, config.clientSecret, callbackURL(context, config.name));
  const fetcher = context.fetch ?? fetch;
  return {
    name: config.name,
    label: config.label,
    issuer: "https://discord.com",
    authorizationOrigin: "https://discord.com",
    sendsIssuerInCallback: false,
    authorizationURL(request) {
      return discord.createAuthorizationURL(request.state, request.codeVerifier, config.scopes);
    },
    async completeLogin(code, request) {
      const tokens = await call(() => discord.validateAuthorizationCode(code, request.codeVerifier));
      // Discord has no ID token: the subject is the user id from its API.
      const user = await fetchJSON(fetcher, "https://discord.com/api/users/@me", tokens.accessToken());
      const subject = stringField(user, "id");
      const displayName = stringField(user, "global_name") ?? stringField(user, "username") ?? subject;
      if (subject === null || displayName === null) {
        throw new ProviderError("invalid_user", "Discord's user API answered without an id");
      }
      return { tokens: toProviderTokens(tokens, context.clock), identity: { issuer: "https://discord.com", subject, displayName } };
    },
    async refresh(refreshToken) {
      return toProviderTokens(await call(() => discord.refreshAccessToken(refreshToken)), context.clock);
    },
    revoke: (token) => call(() => discord.revokeToken(token)),    clientId: config.clientId,
    jwksURI: null,
    endSessionEndpoint: null,
    backchannelLogoutSupported: false,
  };
}

function createGitHubProvider(config: ProviderConfig, context: ProviderContext): Provider {
  const github = new GitHub(config.clientId, config.clientSecret, callbackURL(context, config.name));
  const fetcher = context.fetch ?? fetch;
  return {
    name: config.name,
    label: config.label,
    issuer: "https://github.com",
    authorizationOrigin: "https://github.com",
    sendsIssuerInCallback: false,
    // GitHub has no OIDC for users and arctic's GitHub client sends no PKCE: the state
    // parameter alone binds the callback to this browser (RFC 9700 4.7.1).
    authorizationURL(request) {
      return github.createAuthorizationURL(request.state, config.scopes);
    },
    async completeLogin(code) {
      const tokens = await call(() => github.validateAuthorizationCode(code));
      const user = await fetchJSON(fetcher, "https://api.github.com/user", tokens.accessToken());
      const id = user !== null && typeof user === "object" ? (user as Record<string, unknown>).id : undefined;
      const subject = typeof id === "number" ? String(id) : null;
      const displayName = stringField(user, "name") ?? stringField(user, "login") ?? subject;
      if (subject === null || displayName === null) {
        throw new ProviderError("invalid_user", "GitHub's user API answered without a numeric id");
      }
      return { tokens: toProviderTokens(tokens, context.clock), identity: { issuer: "https://github.com", subject, displayName } };
    },
    async refresh(refreshToken) {
      return toProviderTokens(await call(() => github.refreshAccessToken(refreshToken)), context.clock);
    },
    revoke: null,    clientId: config.clientId,
    jwksURI: null,
    endSessionEndpoint: null,
    backchannelLogoutSupported: false,
  };
}

function createTwitchProvider(config: ProviderConfig, context: ProviderContext): Provider {
  const twitch = new Twitch(config.clientId, config.clientSecret, callbackURL(context, config.name));
  const fetcher = context.fetch ?? fetch;
  const issuer = "https://id.twitch.tv/oauth2";
  return {
    name: config.name,
    label: config.label,
    issuer,
    authorizationOrigin: "https://id.twitch.tv",
    sendsIssuerInCallback: false,
    // Twitch's OAuth has no PKCE; its OIDC ID token carries the nonce we check.
    authorizationURL(request) {
      const url = twitch.createAuthorizationURL(request.state, config.scopes);
      url.searchParams.set("nonce", request.nonce);
      url.searchParams.set("claims", JSON.stringify({ id_token: { preferred_username: null } }));
      return url;
    },
    async completeLogin(code, request) {
      const tokens = await call(() => twitch.validateAuthorizationCode(code));
      const identity = identityFromIdToken(tokens, { issuers: [issuer], clientId: config.clientId, nonce: request.nonce, now: context.clock.now() });
      return { tokens: toProviderTokens(tokens, context.clock), identity };
    },
    async refresh(refreshToken) {
      return toProviderTokens(await call(() => twitch.refreshAccessToken(refreshToken)), context.clock);
    },
    revoke: async (token) => {
      const body = new URLSearchParams({ client_id: config.clientId, token });
      const response = await fetcher("https://id.twitch.tv/oauth2/revoke", { method: "POST", body, signal: AbortSignal.timeout(10_000) });
      if (!response.ok) {
        throw new ProviderError("revocation_failed", `Twitch revocation answered ${response.status}`);
      }
    },    clientId: config.clientId,
    jwksURI: null,
    endSessionEndpoint: null,
    backchannelLogoutSupported: false,
  };
}

/**
 * OIDC Core 3.1.3.7 checks on the ID token's claims. The signature is not verified, and
 * need not be: the token came straight from the token endpoint in our own back-channel
 * request over TLS (OIDC Core 3.1.3.7 item 6), never through the browser.
 */
export function validateIdTokenClaims(
  claims: unknown,
  expected: { issuers: string[]; clientId: string; nonce: string; now: number },
): ProviderIdentity {
  if (typeof claims !== "object" || claims === null) {
    throw new ProviderError("invalid_id_token", "the ID token has no claims");
  }
  const record = claims as Record<string, unknown>;
  const { iss, aud, azp, exp, nonce, sub } = record;
  if (typeof iss !== "string" || !expected.issuers.includes(iss)) {
    throw new ProviderError("invalid_id_token", "the ID token's issuer is not the provider's");
  }
  const audiences = typeof aud === "string" ? [aud] : Array.isArray(aud) ? aud : [];
  if (!audiences.includes(expected.clientId)) {
    throw new ProviderError("invalid_id_token", "the ID token was not issued to us (aud)");
  }
  if (audiences.length > 1 && azp !== expected.clientId) {
    throw new ProviderError("invalid_id_token", "the ID token's authorized party is not us (azp)");
  }
  if (typeof exp !== "number" || exp * 1000 <= expected.now) {
    throw new ProviderError("invalid_id_token", "the ID token has expired");
  }
  if (typeof nonce !== "string" || nonce !== expected.nonce) {
    throw new ProviderError("invalid_id_token", "the ID token's nonce does not match this login");
  }
  if (typeof sub !== "string" || sub === "" || sub.length > 255) {
    throw new ProviderError("invalid_id_token", "the ID token has no usable subject");
  }
  const displayName = firstString(record, ["name", "preferred_username", "nickname", "email"]) ?? sub;
  return { issuer: iss, subject: sub, displayName: displayName.slice(0, 64) };
}

function identityFromIdToken(
  tokens: OAuth2Tokens,
  expected: { issuers: string[]; clientId: string; nonce: string; now: number },
): ProviderIdentity {
  let claims: unknown;
  try {
    claims = decodeIdToken(tokens.idToken());
  } catch (cause) {
    throw new ProviderError("invalid_id_token", "the token response has no readable ID token", { cause });
  }
  return validateIdTokenClaims(claims, expected);
}

function toProviderTokens(tokens: OAuth2Tokens, clock: Clock): ProviderTokens {
  const data = tokens.data as Record<string, unknown>;
  const now = clock.now();
  const expiresIn = data.expires_in;
  const refreshExpiresIn = data.refresh_token_expires_in ?? data.refresh_expires_in;
  const idToken = data.id_token;
  let accessToken: string;
  try {
    accessToken = tokens.accessToken();
  } catch (cause) {
    throw new ProviderError("invalid_token_response", "the token response has no access token", { cause });
  }
  return {
    accessToken,
    accessTokenExpiresAt: typeof expiresIn === "number" && expiresIn > 0 ? now + expiresIn * 1000 : null,
    refreshToken: typeof data.refresh_token === "string" && data.refresh_token !== "" ? data.refresh_token : null,
    refreshTokenExpiresAt: typeof refreshExpiresIn === "number" && refreshExpiresIn > 0 ? now + refreshExpiresIn * 1000 : null,
    idToken: typeof idToken === "string" ? idToken : null,
  };
}

/** Runs an arctic call and turns its errors into {@link ProviderError}. */
async function call<T>(request: () => Promise<T>): Promise<T> {
  try {
    return await request();
  } catch (error) {
    if (error instanceof ProviderError) {
      throw error;
    }
    if (error instanceof OAuth2RequestError) {
      throw new ProviderError(error.code, error.description ?? error.code, { cause: error });
    }
    if (error instanceof ArcticFetchError) {
      throw new ProviderError("unreachable", "the identity provider could not be reached", { cause: error });
    }
    throw new ProviderError("unexpected_response", error instanceof Error ? error.message : String(error), { cause: error });
  }
}

async function fetchJSON(fetcher: typeof fetch, url: string, accessToken: string): Promise<unknown> {
  let response: Response;
  try {
    response = await fetcher(url, {
      headers: { authorization: `Bearer ${accessToken}`, accept: "application/json", "user-agent": "Portcullis" },
      redirect: "error",
      signal: AbortSignal.timeout(10_000),
    });
  } catch (cause) {
    throw new ProviderError("unreachable", `${new URL(url).host} could not be reached`, { cause });
  }
  if (!response.ok) {
    throw new ProviderError("invalid_user", `${new URL(url).host} answered ${response.status}`);
  }
  return response.json();
}

function stringField(value: unknown, name: string): string | null {
  if (typeof value !== "object" || value === null) {
    return null;
  }
  const field = (value as Record<string, unknown>)[name];
  return typeof field === "string" && field !== "" ? field : null;
}

function firstString(record: Record<string, unknown>, names: string[]): string | null {
  for (const name of names) {
    const value = stringField(record, name);
    if (value !== null) {
      return value;
    }
  }
  return null;
}

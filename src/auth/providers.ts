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
  /**
   * Why this provider cannot be used yet, in an operator's words (its OIDC discovery keeps
   * failing and is being retried); null when it can.
   */
  unavailable(): string | null;
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

/** Deferred work: discovery retries. Injected so a test fires them instead of waiting. */
export interface Timers {
  schedule(callback: () => Promise<void>, ms: number): { cancel(): void };
}

export const systemTimers: Timers = {
  schedule(callback, ms) {
    const timer = setTimeout(() => void callback(), ms);
    // A retry pending must not keep a stopping process alive.
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
};

export interface ProviderContext {
  publicOrigin: string;
  clock: Clock;
  fetch?: typeof fetch;
  timers?: Timers;
  /** Discovery failures and recoveries, one line each, for the operator (stderr by default). */
  report?: (line: string) => void;
}

export interface Providers {
  /** Every configured provider, usable or not yet ({@link Provider.unavailable}). */
  all: Map<string, Provider>;
  /** Settles when every provider's first discovery attempt is over, whatever its outcome. */
  firstAttempts: Promise<void>;
  /** Cancels the discovery retries still pending. */
  stop(): void;
}

/** Discovery attempt n+1 waits 1 s, 2 s, 4 s … after the n-th failure, at most 5 minutes. */
export function discoveryRetryDelayMs(failures: number): number {
  return Math.min(1_000 * 2 ** Math.max(0, failures - 1), 300_000);
}

/**
 * Builds every configured provider. OIDC issuers are discovered in the background: a
 * provider that is down does not stop the start (a restart while the IdP is down would
 * otherwise take the whole game down with it); discovery is retried with backoff, and
 * until it succeeds that provider's login answers 503 and /readyz names it.
 */
export function createProviders(configs: ProviderConfig[], context: ProviderContext): Providers {
  const all = new Map<string, Provider>();
  const loops: DiscoveryLoop[] = [];
  for (const config of configs) {
    if (config.kind === "oidc") {
      const loop = new DiscoveryLoop(config, context);
      loops.push(loop);
      all.set(config.name, createOIDCProvider(config, loop, context));
    } else {
      all.set(config.name, createPresetProvider(config, context));
    }
  }
  const firstAttempts = Promise.all(loops.map((loop) => loop.attempt())).then(() => undefined);
  return {
    all,
    firstAttempts,
    stop: () => loops.forEach((loop) => loop.stop()),
  };
}

/** One OIDC issuer's discovery, retried with backoff until it succeeds or is stopped. */
class DiscoveryLoop {
  metadata: OIDCMetadata | null = null;
  problem: string | null = "discovery has not run yet";
  private failures = 0;
  private pending: { cancel(): void } | null = null;
  private stopped = false;

  constructor(
    private readonly config: Extract<ProviderConfig, { kind: "oidc" }>,
    private readonly context: ProviderContext,
  ) {}

  async attempt(): Promise<void> {
    this.pending = null;
    const report = this.context.report ?? ((line: string) => process.stderr.write(`${line}\n`));
    try {
      this.metadata = await discover(this.config.issuer, this.context.fetch ?? fetch);
      this.problem = null;
      if (this.failures > 0) report(`identity provider ${this.config.name}: discovery succeeded after ${this.failures} failed attempts`);
    } catch (error) {
      this.failures += 1;
      this.problem = error instanceof Error ? error.message : String(error);
      if (this.stopped) return;
      const delay = discoveryRetryDelayMs(this.failures);
      report(`identity provider ${this.config.name}: ${this.problem}; its logins answer 503, retrying in ${delay / 1000} s`);
      this.pending = (this.context.timers ?? systemTimers).schedule(() => this.attempt(), delay);
    }
  }

  stop(): void {
    this.stopped = true;
    this.pending?.cancel();
    this.pending = null;
  }
}

function callbackURL(context: ProviderContext, name: string): string {
  return `${context.publicOrigin}/auth/callback/${name}`;
}

function createPresetProvider(config: ProviderConfig, context: ProviderContext): Provider {
  switch (config.kind) {
    case "oidc":
      throw new Error("an OIDC provider is not a preset");
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
    // Stryker: enforces nothing (`{ cause }` → `{}`) — the chained error is for a debugger; the
    // operator's line and unavailable() carry the message.
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

function createOIDCProvider(config: Extract<ProviderConfig, { kind: "oidc" }>, discovery: DiscoveryLoop, context: ProviderContext): Provider {
  const client = new OAuth2Client(config.clientId, config.clientSecret, callbackURL(context, config.name));
  // Every use needs the discovered endpoints; before discovery succeeds the provider is
  // treated as down (the login route answers its 503 page before getting here).
  const metadata = (): OIDCMetadata => {
    if (discovery.metadata === null) {
      // Stryker: untested (`"pending"`) — the text before discovery's first attempt has answered.
      throw new ProviderError("unreachable", `the identity provider has not been discovered yet: ${discovery.problem ?? "pending"}`);
    }
    return discovery.metadata;
  };
  const revoke = async (token: string): Promise<void> => {
    const endpoint = metadata().revocationEndpoint;
    if (endpoint !== null) await call(() => client.revokeToken(endpoint, token));
  };
  return {
    name: config.name,
    label: config.label,
    issuer: config.issuer,
    // Until discovery succeeds, the issuer's origin is the best guess for CSP form-action.
    get authorizationOrigin() {
      return new URL(discovery.metadata?.authorizationEndpoint ?? config.issuer).origin;
    },
    get sendsIssuerInCallback() {
      // Stryker: untested (the `false` before discovery) — no login starts or completes then.
      return discovery.metadata?.issuerInCallback ?? false;
    },
    authorizationURL(request) {
      const url = client.createAuthorizationURLWithPKCE(
        metadata().authorizationEndpoint,
        request.state,
        CodeChallengeMethod.S256,
        request.codeVerifier,
        config.scopes,
      );
      url.searchParams.set("nonce", request.nonce);
      // OIDC Core 3.1.2.1: only when configured. `consent` on every login put a consent
      // screen in front of the player each time; providers that honour offline_access only
      // with prompt=consent (OIDC Core 11) get it through OIDC_<NAME>_PROMPT=consent.
      if (config.prompt.length > 0) {
        url.searchParams.set("prompt", config.prompt.join(" "));
      }
      return url;
    },
    async completeLogin(code, request) {
      const { tokenEndpoint, issuer } = metadata();
      const tokens = await call(() => client.validateAuthorizationCode(tokenEndpoint, code, request.codeVerifier));
      const identity = identityFromIdToken(tokens, {
        issuers: [issuer],
        clientId: config.clientId,
        nonce: request.nonce,
        now: context.clock.now(),
        nameClaim: config.nameClaim,
      });
      return { tokens: toProviderTokens(tokens, context.clock), identity };
    },
    async refresh(refreshToken) {
      const { tokenEndpoint } = metadata();
      return toProviderTokens(await call(() => client.refreshAccessToken(tokenEndpoint, refreshToken, [])), context.clock);
    },
    // Known only after discovery; a provider without a revocation endpoint makes this a no-op.
    get revoke() {
      return discovery.metadata !== null && discovery.metadata.revocationEndpoint === null ? null : revoke;
    },
    // Stryker: equivalent (the test → `true`) — the discovery loop clears its problem when it succeeds.
    unavailable: () => (discovery.metadata === null ? discovery.problem : null),
    clientId: config.clientId,
    // Known only after discovery, like the endpoints.
    get jwksURI() {
      return discovery.metadata?.jwksURI ?? null;
    },
    get endSessionEndpoint() {
      return discovery.metadata?.endSessionEndpoint ?? null;
    },
    // Without the provider's keys no logout token can be verified: no route then.
    get backchannelLogoutSupported() {
      return discovery.metadata !== null && discovery.metadata.backchannelLogoutSupported && discovery.metadata.jwksURI !== null;
    },
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
    revoke: (token) => call(() => google.revokeToken(token)),
    unavailable: () => null,
    clientId: config.clientId,
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
    revoke: (token) => call(() => discord.revokeToken(token)),
    unavailable: () => null,
    clientId: config.clientId,
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
    revoke: null,
    unavailable: () => null,
    clientId: config.clientId,
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
    },
    unavailable: () => null,
    clientId: config.clientId,
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
  expected: { issuers: string[]; clientId: string; nonce: string; now: number; nameClaim?: string | null },
): ProviderIdentity {
  if (typeof claims !== "object" || claims === null) {
    throw new ProviderError("invalid_id_token", "the ID token has no claims");
  }
  const record = claims as Record<string, unknown>;
  const { iss, aud, azp, exp, nonce, sub } = record;
  if (typeof iss !== "string" || !expected.issuers.includes(iss)) {
    throw new ProviderError("invalid_id_token", "the ID token's issuer is not the provider's");
  }
  // Stryker: equivalent (the last `[]` → a list of one made-up audience) — it is not our client id either.
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
  // The configured claim (OIDC_<NAME>_NAME_CLAIM) first, then the usual ones, then the subject.
  // Stryker: equivalent (the `[]` → a list of one made-up claim name) — no token carries it.
  const names = [...(expected.nameClaim ? [expected.nameClaim] : []), ...DISPLAY_NAME_CLAIMS];
  const displayName = firstString(record, names) ?? sub;
  return { issuer: iss, subject: sub, displayName: displayName.slice(0, 64) };
}

/** The ID token claims a display name is taken from, in order, when no claim is configured. */
export const DISPLAY_NAME_CLAIMS = ["name", "preferred_username", "nickname", "email"] as const;

function identityFromIdToken(
  tokens: OAuth2Tokens,
  expected: { issuers: string[]; clientId: string; nonce: string; now: number; nameClaim?: string | null },
): ProviderIdentity {
  let claims: unknown;
  try {
    claims = decodeIdToken(tokens.idToken());
  } catch (cause) {
    // Stryker: enforces nothing (`{ cause }` → `{}`, here and for the access token) — the chain is for a debugger.
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

function firstString(record: Record<string, unknown>, names: readonly string[]): string | null {
  for (const name of names) {
    const value = stringField(record, name);
    if (value !== null) {
      return value;
    }
  }
  return null;
}

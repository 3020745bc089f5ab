import { generateKeyPairSync, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import Provider, { interactionPolicy } from "oidc-provider";

export interface DemoIdPOptions {
  /** 0 picks a free port (tests). */
  port: number;
  host?: string;
  clients: {
    clientId: string;
    clientSecret: string;
    redirectURIs: string[];
    /** Where its end-session endpoint may send the browser back to (RP-Initiated Logout 1.0). */
    postLogoutRedirectURIs?: string[];
    /** Where it sends logout tokens when a player signs out here (Back-Channel Logout 1.0). */
    backchannelLogoutURI?: string;
  }[];
  /**
   * Show the name form at every login, even while the provider remembers the player, so that
   * after logging out of the game a player can pick another name (issue 18). The demo sets
   * it; tests that need the provider's single sign-on (a remembered player) leave it off.
   */
  askNameEveryLogin?: boolean;
  /** The RS256 signing key as a private JWK (tests keep it to sign their own logout tokens). */
  signingKey?: Record<string, unknown>;
  cookieKeys?: string[];
  accessTokenTTLSeconds?: number;
  refreshTokenTTLSeconds?: number;
  /** Rotate the refresh token on every use (default true, to exercise rotation). */
  rotateRefreshTokens?: boolean;
}

/** Tokens the provider handed out, read from its own token endpoint answers (for tests). */
export interface IssuedTokens {
  accessTokens: string[];
  refreshTokens: string[];
  idTokens: string[];
}

export interface DemoIdP {
  issuer: string;
  provider: Provider;
  server: Server;
  issued: IssuedTokens;
  /** Token endpoint requests by grant type. */
  tokenRequests: { authorization_code: number; refresh_token: number };
  /** While true, every request is answered by a dropped connection (provider down). */
  setUnreachable(unreachable: boolean): void;
  close(): Promise<void>;
}

const LOGIN_NAME = /^[\p{L}\p{N} _.-]{1,32}$/u;

/**
 * A real OpenID Connect provider (panva's oidc-provider) for development and tests only:
 * any name logs in, no password, no consent screen, refresh tokens issued. With
 * `askNameEveryLogin` its form is shown at every login, even while it remembers the last
 * name, so that a player can switch names after logging out of the game. It listens on
 * 127.0.0.1 while the BFF is on localhost, so logins cross sites as they do in production.
 */
export async function startDemoIdP(options: DemoIdPOptions): Promise<DemoIdP> {
  const host = options.host ?? "127.0.0.1";
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `http://${host}:${port}`;

  const signingKey = options.signingKey ?? {
    ...generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" }),
    kid: "demo-rs256",
    use: "sig",
    alg: "RS256",
  };

  const provider = new Provider(issuer, {
    clients: options.clients.map((c) => ({
      client_id: c.clientId,
      client_secret: c.clientSecret,
      redirect_uris: c.redirectURIs,
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
      ...(c.postLogoutRedirectURIs === undefined ? {} : { post_logout_redirect_uris: c.postLogoutRedirectURIs }),
      ...(c.backchannelLogoutURI === undefined
        ? {}
        : { backchannel_logout_uri: c.backchannelLogoutURI, backchannel_logout_session_required: true }),
    })),
    jwks: { keys: [signingKey] },
    cookies: { keys: options.cookieKeys ?? [randomBytes(32).toString("base64url")] },
    claims: { openid: ["sub"], profile: ["name", "preferred_username"] },
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      // Signing out here (its end-session page) sends a logout token to every client the
      // player used that registered a backchannel_logout_uri; ID tokens then carry `sid`.
      backchannelLogout: { enabled: true },
    },
    // oidc-provider refuses to send logout tokens to loopback and private addresses (SSRF
    // protection, through its own dispatcher). This provider exists to talk to a BFF on
    // localhost, so its outgoing requests use the default one. Development only.
    fetch: (url: string | URL, init: RequestInit & { dispatcher?: unknown }) => {
      const { dispatcher: _ssrfGuard, ...rest } = init;
      return globalThis.fetch(url, rest);
    },
    ttl: {
      AccessToken: options.accessTokenTTLSeconds ?? 600,
      IdToken: 3600,
      RefreshToken: options.refreshTokenTTLSeconds ?? 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
      Session: 14 * 24 * 3600,
      Interaction: 600,
    },
    // oidc-provider drops `offline_access` unless the login says prompt=consent (OIDC Core
    // 11), and Portcullis no longer sends it by default: the demo issues refresh tokens to
    // any client allowed the grant, and keeps them past the provider's own browser session.
    issueRefreshToken: async (_ctx: unknown, client: { grantTypeAllowed(type: string): boolean }) =>
      client.grantTypeAllowed("refresh_token"),
    expiresWithSession: async () => false,
    rotateRefreshToken: () => options.rotateRefreshTokens ?? true,
    findAccount: async (_ctx: unknown, sub: string) => ({
      accountId: sub,
      claims: async () => ({ sub, name: sub, preferred_username: sub }),
    }),
    interactions: { policy: options.askNameEveryLogin ? alwaysAskForName() : interactionPolicy.base(), url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    renderError: async (ctx: { type: string; body: string }, out: Record<string, unknown>) => {
      ctx.type = "html";
      ctx.body = page("Sign-in error", `<p>${escapeHTML(String(out.error_description ?? out.error ?? "error"))}</p>`);
    },
  });

  const issued: IssuedTokens = { accessTokens: [], refreshTokens: [], idTokens: [] };
  const tokenRequests = { authorization_code: 0, refresh_token: 0 };
  // Every token request, answered or refused, counted by grant type.
  const countGrant = (ctx: unknown): void => {
    const grantType = (ctx as { oidc?: { params?: { grant_type?: unknown } } }).oidc?.params?.grant_type;
    if (grantType === "authorization_code" || grantType === "refresh_token") tokenRequests[grantType] += 1;
  };
  provider.on("grant.success", countGrant);
  provider.on("grant.error", countGrant);
  const oidc = provider.callback();
  let unreachable = false;

  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    if (unreachable) {
      req.socket.destroy();
      return;
    }
    const url = new URL(req.url ?? "/", issuer);
    const interaction = /^\/interaction\/([\w-]+)(\/login)?$/.exec(url.pathname);
    if (interaction !== null) {
      handleInteraction(provider, req, res, interaction[2] !== undefined).catch((error: unknown) => {
        res.statusCode = 400;
        res.setHeader("content-type", "text/html; charset=utf-8");
        res.end(page("Sign-in error", `<p>${escapeHTML(error instanceof Error ? error.message : "error")}</p>`));
      });
      return;
    }
    if (url.pathname === "/token" && req.method === "POST") {
      recordTokenResponse(res, issued);
    }
    oidc(req, res);
  });

  return {
    issuer,
    provider,
    server,
    issued,
    tokenRequests,
    setUnreachable(value) {
      unreachable = value;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * The standard policy plus one login check: ask for a name unless this very authorization
 * request was just answered by the form (`result.login`), the same test oidc-provider's own
 * `max_age` check uses, so a fresh login passes and a remembered one does not.
 */
function alwaysAskForName(): ReturnType<typeof interactionPolicy.base> {
  const policy = interactionPolicy.base();
  policy.get("login")?.checks.push(
    new interactionPolicy.Check("demo_pick_name", "the demo asks for a player name at every login", (ctx) =>
      ctx.oidc.result?.login === undefined ? interactionPolicy.Check.REQUEST_PROMPT : interactionPolicy.Check.NO_NEED_TO_PROMPT,
    ),
  );
  return policy;
}

async function handleInteraction(provider: Provider, req: IncomingMessage, res: ServerResponse, isSubmit: boolean): Promise<void> {
  const details = await provider.interactionDetails(req, res);
  if (details.prompt.name === "login") {
    if (!isSubmit || req.method !== "POST") {
      res.setHeader("content-type", "text/html; charset=utf-8");
      res.setHeader("cache-control", "no-store");
      res.end(loginForm(details.uid));
      return;
    }
    const form = new URLSearchParams(await readBody(req, 4096));
    const login = (form.get("login") ?? "").trim();
    if (!LOGIN_NAME.test(login)) {
      res.statusCode = 400;
      res.setHeader("content-type", "text/html; charset=utf-8");
      res.end(loginForm(details.uid, "Pick a name of 1 to 32 letters, digits, spaces, dots, dashes or underscores."));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return;
  }
  // No consent screen in the demo: grant what the client asked for and carry on.
  const accountId = details.session?.accountId;
  const clientId = details.params.client_id;
  if (typeof accountId !== "string" || typeof clientId !== "string") {
    throw new Error("interaction without a logged-in account");
  }
  const grant = new provider.Grant({ accountId, clientId });
  const scope = typeof details.params.scope === "string" ? details.params.scope : "openid";
  grant.addOIDCScope(scope);
  grant.addOIDCClaims(["sub", "name", "preferred_username"]);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

function recordTokenResponse(res: ServerResponse, issued: IssuedTokens): void {
  const chunks: Buffer[] = [];
  const write = res.write.bind(res) as (...args: unknown[]) => boolean;
  const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
  res.write = ((chunk: unknown, ...rest: unknown[]) => {
    if (chunk !== undefined && chunk !== null && typeof chunk !== "function") chunks.push(Buffer.from(chunk as string));
    return write(chunk, ...rest);
  }) as typeof res.write;
  res.end = ((chunk?: unknown, ...rest: unknown[]) => {
    if (chunk !== undefined && chunk !== null && typeof chunk !== "function") chunks.push(Buffer.from(chunk as string));
    try {
      const body: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      if (typeof body === "object" && body !== null) {
        const record = body as Record<string, unknown>;
        if (typeof record.access_token === "string") issued.accessTokens.push(record.access_token);
        if (typeof record.refresh_token === "string") issued.refreshTokens.push(record.refresh_token);
        if (typeof record.id_token === "string") issued.idTokens.push(record.id_token);
      }
    } catch {
      // Not JSON: an error page; nothing to record.
    }
    return end(chunk, ...rest);
  }) as typeof res.end;
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new Error("form too large"));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function loginForm(uid: string, error?: string): string {
  return page(
    "Sign in to the demo",
    `<p class="hint">Development identity provider. Any name signs in; there is no password.</p>
${error ? `<p class="error">${escapeHTML(error)}</p>` : ""}
<form method="post" action="/interaction/${escapeHTML(uid)}/login">
  <label for="login">Player name</label>
  <input id="login" name="login" type="text" autocomplete="username" autofocus required maxlength="32">
  <button type="submit">Sign in</button>
</form>`,
  );
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHTML(title)}</title><link rel="icon" href="data:,">
<style>
body{font-family:system-ui,sans-serif;background:#1b1530;color:#f3eefc;display:grid;place-items:center;min-height:100vh;margin:0}
main{background:#2a2148;padding:2rem 2.5rem;border-radius:12px;min-width:18rem;box-shadow:0 10px 30px #0008}
h1{font-size:1.3rem;margin-top:0}.hint{color:#b9afd6;font-size:.9rem}.error{color:#ff8a8a}
label{display:block;margin:.8rem 0 .3rem}input{width:100%;padding:.5rem;border-radius:6px;border:1px solid #6b5ca5;background:#15102a;color:inherit;box-sizing:border-box}
button{margin-top:1rem;padding:.55rem 1.2rem;border:0;border-radius:6px;background:#f4b942;color:#1b1530;font-weight:600;cursor:pointer}
</style></head>
<body><main><h1>${escapeHTML(title)}</h1>${body}</main></body></html>`;
}

function escapeHTML(value: string): string {
  return value.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

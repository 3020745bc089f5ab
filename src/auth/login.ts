import { Hono, type Context } from "hono";
import type { AppEnv } from "../app-env";
import type { AuditLog } from "../audit/log";
import { LOGIN_COOKIE, SESSION_COOKIE, expiredLoginCookie, loginCookie, readCookie, sessionCookie } from "./cookies";
import { LOGIN_ATTEMPT_TTL_SECONDS } from "./login-attempts";
import { ProviderError, type Provider } from "./providers";
import { sanitizeReturnTo } from "./return-to";
import type { AccountRepository, LoginAttemptRepository, SessionRepository } from "../store/types";
import type { Clock } from "../clock";
import type { Metrics } from "../metrics/metrics";
import { refuse } from "../http/errors";
import { escapeHTML, noticePage } from "../http/notice-page";
import { DecryptionError } from "../crypto/token-cipher";
import { blockedPage } from "./account-blocks";
import { sidOfIdToken } from "./logout-token";

export interface LoginDeps {
  /** For the failure page: a plain-http origin explains why the browser dropped the cookies. */
  config?: { publicOrigin: string };
  providers: Map<string, Provider>;
  attempts: LoginAttemptRepository;
  accounts: AccountRepository;
  sessions: SessionRepository;
  audit: AuditLog;
  clock: Clock;
  metrics: Metrics;
}

/** The authorization response's parameters (RFC 6749 4.1.2, 4.1.2.1; RFC 9207). */
const CALLBACK_PARAMETERS = ["state", "code", "iss", "error", "error_description", "error_uri"] as const;

/** `GET /auth/login/:provider` and `GET /auth/callback/:provider` (CONTRACT.md, SECURITY.md C). */
export function loginRoutes(deps: LoginDeps): Hono<AppEnv> {
  const routes = new Hono<AppEnv>();

  routes.get("/login/:provider", async (c) => {
    const provider = deps.providers.get(c.req.param("provider"));
    if (provider === undefined) {
      refuse(404, "unknown_provider", "No such identity provider.");
    }
    const unavailable = provider.unavailable();
    if (unavailable !== null) {
      // Discovery is still being retried (the operator's log says why): nothing to redirect to.
      deps.audit.write("login.failure", { provider: provider.name, reason: "provider not discovered", ip: c.var.clientIP });
      c.header("Cache-Control", "no-store");
      c.header("Retry-After", "30");
      return failurePage(c, "provider_down", provider, 503);
    }
    const returnTo = sanitizeReturnTo(c.req.query("returnTo"));
    // Started from the game's own page, this is a same-site navigation and the Strict
    // session cookie is here; the callback, arriving from the provider's site, will not have
    // it (RFC 6265bis 8.8). The session it names ends when this login succeeds: logging
    // in again never leaves the earlier session alive behind the player's back (ASVS 7.2.4).
    const current = c.var.session;
    const { handle, attempt } = await deps.attempts.start({
      provider: provider.name,
      returnTo,
      handle: readCookie(c.req.header("cookie"), LOGIN_COOKIE),
      previousSession: current === null ? null : { id: current.id, accountId: current.accountId },
    });
    deps.audit.write("login.started", { provider: provider.name, ip: c.var.clientIP, requestId: c.var.requestId });
    c.header("Set-Cookie", loginCookie(handle, LOGIN_ATTEMPT_TTL_SECONDS));
    // Stryker: equivalent (→ `""`) — this answer always sets a cookie, and headers.ts makes
    // every such answer no-store; the header says it here too.
    c.header("Cache-Control", "no-store");
    return c.redirect(provider.authorizationURL(attempt).href, 302);
  });

  routes.get("/callback/:provider", async (c) => {
    const provider = deps.providers.get(c.req.param("provider"));
    if (provider === undefined) {
      refuse(404, "unknown_provider", "No such identity provider.");
    }
    c.header("Cache-Control", "no-store");
    const handle = readCookie(c.req.header("cookie"), LOGIN_COOKIE);
    // The login-state cookie goes with the browser's last login in progress: expired on
    // every answer once no other login of this browser is waiting for its callback.
    const settleLoginCookie = async (): Promise<void> => {
      if (handle === null || (await deps.attempts.pending(handle)) === 0) {
        c.header("Set-Cookie", expiredLoginCookie(), { append: true });
      }
    };
    // `reason` (with `detail`) is for the audit log; the player sees what `kind` says to do.
    const fail = async (kind: LoginFailureReason, reason: string, detail?: string): Promise<Response> => {
      deps.audit.write("login.failure", { provider: provider.name, reason, ip: c.var.clientIP, requestId: c.var.requestId, ...(detail ? { detail } : {}) });
      await settleLoginCookie();
      return failurePage(c, kind, provider);
    };

    // RFC 6749 3.1: response parameters must not be repeated. Two `state`, `code` or `iss`
    // leave it to chance which one each check sees (HTTP parameter pollution); refused
    // before the attempt is touched, so the real callback can still complete.
    const repeated = CALLBACK_PARAMETERS.find((name) => (c.req.queries(name)?.length ?? 0) > 1);
    if (repeated !== undefined) {
      return fail("expired", "repeated callback parameter", repeated);
    }
    const state = c.req.query("state");
    if (handle === null) {
      // The browser did not send back the login-state cookie it got a minute ago: cookies
      // are blocked, or (over plain http) the Secure cookie was never stored.
      return fail(isInsecureOrigin(deps.config?.publicOrigin) ? "insecure" : "cookies", "no login-state cookie");
    }
    if (state === undefined) {
      return fail("expired", "no state");
    }
    // Consumed before anything else is looked at, so a replay finds nothing. Only the
    // attempt this state names goes: the browser's other logins stay.
    let attempt;
    try {
      attempt = await deps.attempts.consume(handle, state);
    } catch (error) {
      if (error instanceof DecryptionError) {
        deps.audit.write("crypto.decrypt.failed", { reason: "login attempt", detail: error.message, requestId: c.var.requestId });
        return fail("expired", "login attempt unreadable");
      }
      throw error;
    }
    if (attempt === null) {
      return fail("expired", "unknown, expired, replayed or mismatched state");
    }
    // RFC 9700 4.4: the callback must be the one of the provider the login started with.
    if (attempt.provider !== provider.name) {
      return fail("expired", "callback of another provider", `started with ${attempt.provider}`);
    }
    const providerError = c.req.query("error");
    if (providerError !== undefined) {
      return fail(providerErrorReason(providerError), "provider returned an error", providerError);
    }
    // RFC 9207 2.4: check `iss` when sent, and insist on it when the provider promises it.
    const iss = c.req.query("iss");
    if (iss !== undefined ? iss !== provider.issuer : provider.sendsIssuerInCallback) {
      return fail("provider_refused", "issuer mismatch in callback (RFC 9207)");
    }
    const code = c.req.query("code");
    if (code === undefined || code === "" || code.length > 2048) {
      return fail("expired", "no code");
    }

    let result;
    try {
      result = await provider.completeLogin(code, attempt);
    } catch (error) {
      if (error instanceof ProviderError) {
        return fail(error.isUnreachable ? "provider_down" : "provider_refused", error.code, error.message);
      }
      throw error;
    }
    const { account, created } = await deps.accounts.findOrCreate(result.identity, provider.name);
    // An operator's block keeps the account out (npm run portcullis -- block): no session.
    if (await deps.accounts.isBlocked(account.id)) {
      deps.audit.write("login.failure", { provider: provider.name, accountId: account.id, reason: "account blocked", ip: c.var.clientIP });
      await settleLoginCookie();
      return blockedPage(c);
    }

    // ASVS 7.2.4: always a new session. The session this browser had when the login
    // started is ended (a browser withholds the Strict cookie from this cross-site callback,
    // so it was read at the start); so is a session cookie sent here (a same-site provider,
    // a non-browser client). Either is ended, never adopted; its sockets close and its
    // refresh token is revoked by the store.
    if (attempt.previousSession !== null) {
      await deps.sessions.end(attempt.previousSession.id, attempt.previousSession.accountId, "replaced");
    }
    const previous = readCookie(c.req.header("cookie"), SESSION_COOKIE);
    // Stryker: equivalent (`slide: false` → `true`) — the session is ended on the next line.
    const previousSession = previous === null ? null : await deps.sessions.validate(previous, { slide: false });
    if (previousSession !== null) {
      await deps.sessions.end(previousSession.id, previousSession.accountId, "replaced");
    }
    const { session, token } = await deps.sessions.create({
      accountId: account.id,
      provider: provider.name,
      // Stryker: enforces nothing (the `""` for a client that sends no User-Agent) — a label in the player's list.
      userAgent: c.req.header("user-agent") ?? "",
      tokens: result.tokens,
      providerSid: sidOfIdToken(result.tokens.idToken),
    });
    deps.metrics.sessionCreated();
    deps.audit.write("login.success", {
      provider: provider.name,
      accountId: account.id,
      sessionId: session.id,
      ip: c.var.clientIP,
      requestId: c.var.requestId,
      ...(created ? { detail: "account created" } : {}),
    });
    await settleLoginCookie();
    c.header("Set-Cookie", sessionCookie(token, (session.expiresAt - deps.clock.now()) / 1000), { append: true });
    return continuePage(c, attempt.returnTo);
  });

  return routes;
}

/**
 * RFC 6265bis 8.8: a SameSite=Strict cookie set at the end of a cross-site redirect chain is
 * withheld from a 302 that follows it, so the callback answers 200 and the page navigates
 * same-origin itself. A meta refresh needs no script, so the CSP stays strict.
 */
function continuePage(c: Context<AppEnv>, returnTo: string): Response {
  const target = escapeHTML(returnTo);
  return c.html(
    noticePage({
      title: "Signed in",
      head: `<meta http-equiv="refresh" content="0;url=${target}">\n`,
      main: `<main><h1>Signed in</h1><p><a id="continue" href="${target}">Continue to the game</a></p></main>`,
    }),
    200,
  );
}

/**
 * Why a login failed, as far as the player can act on it. The audit log keeps the exact
 * reason; the page says what to do, without internals (no OAuth error codes, no URLs).
 */
export type LoginFailureReason = "expired" | "cookies" | "insecure" | "denied" | "provider_refused" | "provider_down";

/** What the failure page says for each reason; `{provider}` is the provider's label. */
export const LOGIN_FAILURE_MESSAGES: Record<LoginFailureReason, string> = {
  expired: "This login link has expired or was already used. Please start the login again.",
  cookies: "Your browser did not keep this site's login cookie. Allow cookies for this site (private windows and strict blockers often refuse them), then try again.",
  insecure: "Logging in only works when the game is opened with https://. Open the game's https:// address and log in again.",
  denied: "The login was cancelled at {provider}, or access was not allowed. To play, try again and accept.",
  provider_refused: "{provider} could not confirm who you are. Please try again; if it keeps happening, try again later.",
  provider_down: "{provider} is not answering right now, so logging in with it is not possible at the moment. Please try again in a few minutes.",
};

/** RFC 6749 4.1.2.1 errors the provider sent back to the browser, as the player's situation. */
function providerErrorReason(error: string): LoginFailureReason {
  if (error === "access_denied" || error === "consent_required" || error === "interaction_required" || error === "login_required") return "denied";
  if (error === "temporarily_unavailable" || error === "server_error") return "provider_down";
  return "provider_refused";
}

/** A plain-http origin other than this machine: browsers store no Secure cookie there. */
function isInsecureOrigin(origin: string | undefined): boolean {
  if (origin === undefined) return false;
  const url = new URL(origin);
  return url.protocol === "http:" && !["localhost", "127.0.0.1", "[::1]"].includes(url.hostname);
}

/**
 * The login failure page: 400 for a callback that failed (the attempt is spent), 503 for a
 * login that cannot start because the provider is not discovered yet.
 */
function failurePage(c: Context<AppEnv>, reason: LoginFailureReason, provider: Provider, status: 400 | 503 = 400): Response {
  const text = escapeHTML(LOGIN_FAILURE_MESSAGES[reason]).replaceAll("{provider}", escapeHTML(provider.label));
  const retry = `/auth/login/${encodeURIComponent(provider.name)}`;
  const main =
    `<main data-reason="${reason}"><h1>Login failed</h1><p>${text}</p><p>Nothing was saved.</p>` +
    `<p><a href="${escapeHTML(retry)}">Try again</a> or go <a href="/">back to the game</a>.</p></main>`;
  return c.html(noticePage({ title: "Login failed", main }), status);
}

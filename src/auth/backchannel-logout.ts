import { Hono } from "hono";
import type { AppEnv } from "../app-env";
import type { AuditLog } from "../audit/log";
import type { Clock } from "../clock";
import { refuse } from "../http/errors";
import type { AccountRepository, LogoutTokenJTIRepository, SessionRepository } from "../store/types";
import { LogoutTokenError, LogoutTokenVerifier } from "./logout-token";
import type { Provider } from "./providers";

export interface BackchannelLogoutDeps {
  providers: Map<string, Provider>;
  sessions: SessionRepository;
  accounts: AccountRepository;
  jtis: LogoutTokenJTIRepository;
  audit: AuditLog;
  clock: Clock;
  /** Fetches the providers' JWKS (tests inject nothing; the global fetch by default). */
  fetch?: typeof fetch;
}

// A logout token is a JWT of a few hundred bytes; anything much larger is not one.
const MAX_TOKEN_LENGTH = 16 * 1024;

/**
 * `POST /auth/backchannel-logout/:provider` (OIDC Back-Channel Logout 1.0 2.5–2.8). The
 * provider's server calls it, not a browser: no cookie and no CSRF header are expected
 * (csrf.ts exempts this path), but the rate limit, the body limit and the audit log apply
 * as to every /auth route. Served only for providers that advertise
 * `backchannel_logout_supported` and publish their keys; any other provider name is a 404.
 */
export function backchannelLogoutRoutes(deps: BackchannelLogoutDeps): Hono<AppEnv> {
  const routes = new Hono<AppEnv>();
  // One verifier per provider, made on first use: a provider's keys and its support for
  // back-channel logout are known only once its discovery has succeeded.
  const verifiers = new Map<string, LogoutTokenVerifier>();
  const verifierFor = (provider: Provider): LogoutTokenVerifier | null => {
    if (!provider.backchannelLogoutSupported || provider.jwksURI === null) return null;
    let verifier = verifiers.get(provider.name);
    // Stryker: equivalent for security (→ `true`, a new verifier per token) — the replay check
    // is in the store, not the verifier; only jose's key cache would be lost, a JWKS fetch per token.
    if (verifier === undefined) {
      verifier = new LogoutTokenVerifier({
        issuer: provider.issuer,
        clientId: provider.clientId,
        jwksURI: provider.jwksURI,
        clock: deps.clock,
        jtis: deps.jtis,
        // Stryker: untested (passing an injected fetch on, here and in LogoutTokenVerifier) —
        // nothing that injects one verifies logout tokens; without one, jose's fetch is used.
        ...(deps.fetch === undefined ? {} : { fetch: deps.fetch }),
      });
      verifiers.set(provider.name, verifier);
    }
    return verifier;
  };

  routes.post("/backchannel-logout/:provider", async (c) => {
    const provider = deps.providers.get(c.req.param("provider"));
    const verifier = provider === undefined ? null : verifierFor(provider);
    if (provider === undefined || verifier === null) {
      refuse(404, "unknown_provider", "No back-channel logout for this provider.");
    }
    // 2.8: the answer must not be cached, success or not.
    c.set("noStore", true);
    const refused = (reason: string): never => {
      deps.audit.write("logout.backchannel.refused", { provider: provider.name, reason, ip: c.var.clientIP, status: 400 });
      refuse(400, "invalid_request", "The logout token is missing or invalid.");
    };

    // 2.5: the token arrives as an application/x-www-form-urlencoded POST body.
    // Stryker: equivalent (the `""` for no Content-Type → any other text) — it is not a form type either.
    const contentType = (c.req.header("content-type") ?? "").split(";")[0]?.trim().toLowerCase();
    if (contentType !== "application/x-www-form-urlencoded") {
      return refused("not a form-encoded body");
    }
    const form = new URLSearchParams(await c.req.text());
    const tokens = form.getAll("logout_token");
    // Two tokens leave it to chance which one is checked and which one acted on.
    if (tokens.length > 1) {
      return refused("logout_token repeated");
    }
    if (tokens[0] === undefined || tokens[0] === "") {
      return refused("no logout_token");
    }
    if (tokens[0].length > MAX_TOKEN_LENGTH) {
      return refused("logout_token too long");
    }

    let token;
    try {
      token = await verifier.verify(tokens[0]);
    } catch (error) {
      if (error instanceof LogoutTokenError) return refused(error.reason);
      throw error;
    }

    // 2.7: a `sub` names the user at this issuer; a `sid` names one provider session. A
    // subject we have never seen has no session here: nothing to end, and still a 200 (the
    // logout "succeeded": there is nothing of that user left).
    const accountId = token.subject === null ? null : await deps.accounts.findIdByIdentity(provider.issuer, token.subject);
    const ended =
      token.subject !== null && accountId === null ? 0 : await deps.sessions.endByProviderSession(provider.name, { sid: token.sid, accountId });
    deps.audit.write("logout.backchannel.accepted", {
      provider: provider.name,
      ...(accountId === null ? {} : { accountId }),
      reason: token.sid === null ? "sub" : token.subject === null ? "sid" : "sid+sub",
      count: ended,
      ip: c.var.clientIP,
    });
    return c.body(null, 200);
  });

  return routes;
}

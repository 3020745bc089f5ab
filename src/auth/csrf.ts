import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app-env";
import type { AuditLog } from "../audit/log";
import { refuse } from "../http/errors";

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
// Server-to-server: the identity provider's back-channel logout POST carries no cookie,
// no Origin and no X-CSRF (OIDC Back-Channel Logout 1.0 2.5). CSRF is about a browser
// riding on a session cookie; this route ignores cookies and acts only on a logout token
// signed by the provider, which a cross-site form cannot forge.
const SERVER_TO_SERVER_PREFIX = "/auth/backchannel-logout/";

/**
 * CONTRACT.md CSRF rule, whatever the Content-Type and for empty bodies too (Hono's
 * `csrf()` only looks at form content types, which lets a JSON or text/plain request
 * through): the request needs `X-CSRF: 1` — a header no cross-site form can set and no
 * cross-site fetch can send without a CORS preflight we never grant — and either an
 * allowed Origin or `Sec-Fetch-Site: same-origin`. Applies to every state-changing
 * request, and to every `/api/*` request whatever its method.
 */
export function csrfMiddleware(allowedOrigins: string[], audit: AuditLog): MiddlewareHandler<AppEnv> {
  const allowed = new Set(allowedOrigins);
  return async function csrf(c, next) {
    const method = c.req.method;
    if (SAFE_METHODS.has(method) && !c.req.path.startsWith("/api/")) {
      return next();
    }
    if (method === "POST" && c.req.path.startsWith(SERVER_TO_SERVER_PREFIX)) {
      return next();
    }
    const origin = c.req.header("origin");
    const fetchSite = c.req.header("sec-fetch-site");
    let reason: string | null = null;
    if (c.req.header("x-csrf") !== "1") {
      reason = "missing X-CSRF: 1";
    } else if (origin !== undefined && origin !== "null" && !allowed.has(origin)) {
      // A present, foreign Origin is refused even next to Sec-Fetch-Site: same-origin.
      reason = "origin not allowed";
    } else if (!(origin !== undefined && allowed.has(origin)) && fetchSite !== "same-origin") {
      // Stryker: equivalent (the condition → `true`) — a present Origin other than "null"
      // reaches here only when it is allowed, and then this branch is not taken.
      reason = origin === undefined || origin === "null" ? "no usable Origin and not Sec-Fetch-Site: same-origin" : "origin not allowed";
    }
    if (reason !== null) {
      audit.write("csrf.refused", {
        reason,
        method,
        path: c.req.path,
        origin: origin ?? "(none)",
        ip: c.var.clientIP,
        requestId: c.var.requestId,
        ...(c.var.session ? { sessionId: c.var.session.id } : {}),
      });
      refuse(403, "csrf", "This request must come from the game's own page.");
    }
    return next();
  };
}

import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app-env";

export interface SecurityHeadersOptions {
  publicOrigin: string;
  /** Origins a login form may be submitted to (CSP form-action): the providers'. */
  formActionOrigins: string[];
  /** Extra origins the page may connect to. */
  connectOrigins: string[];
}

/**
 * The fixed security headers of SECURITY.md F, as name/value pairs: what the middleware
 * sets on every answer, and what the refusals written before Hono runs carry too.
 */
export function securityHeaderList(options: SecurityHeadersOptions): [string, string][] {
  const wsOrigin = options.publicOrigin.replace(/^http/, "ws");
  const csp = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    `form-action 'self' ${options.formActionOrigins.join(" ")}`.trim(),
    `connect-src 'self' ${[wsOrigin, ...options.connectOrigins].join(" ")}`.trim(),
  ].join("; ");
  const overTLS = options.publicOrigin.startsWith("https://");
  const fixed: [string, string][] = [
    ["Content-Security-Policy", csp],
    ["X-Content-Type-Options", "nosniff"],
    ["Cross-Origin-Opener-Policy", "same-origin"],
    ["Cross-Origin-Resource-Policy", "same-origin"],
    // Not no-referrer: that would turn the Origin of same-origin form posts into "null".
    ["Referrer-Policy", "strict-origin-when-cross-origin"],
    ["X-Frame-Options", "DENY"],
  ];
  if (overTLS) {
    // The public origin is https (directly or behind a TLS proxy): pin it (ASVS 12.1).
    fixed.push(["Strict-Transport-Security", "max-age=31536000; includeSubDomains"]);
  }
  return fixed;
}

/**
 * SECURITY.md F on every answer, 404s and refusals included: it runs after the handler and
 * after `onError`, so nothing leaves without these headers. (What Node or
 * @hono/node-server refuses before Hono runs gets them in portcullis.ts; an answer a route
 * writes to the socket itself, the /api relay's, gets them from `c.var.finishHeaders`.)
 */
export function securityHeadersMiddleware(options: SecurityHeadersOptions): MiddlewareHandler<AppEnv> {
  const fixed = securityHeaderList(options);
  return async function securityHeaders(c, next) {
    c.set("finishHeaders", (headers) => finishHeaders(headers, fixed, c.var.noStore));
    await next();
    finishHeaders(c.res.headers, fixed, c.var.noStore);
  };
}

function finishHeaders(headers: Headers, fixed: [string, string][], noStore: boolean): void {
  for (const [name, value] of fixed) {
    headers.set(name, value);
  }
  headers.delete("X-Powered-By");
  const type = headers.get("content-type");
  if (type !== null && /^(text\/|application\/(json|javascript|manifest\+json))/i.test(type) && !/charset=/i.test(type)) {
    headers.set("content-type", `${type}; charset=utf-8`);
  }
  // SECURITY.md A7: an answer that sets a cookie is never cached, whatever the handler
  // asked for (RFC 9111 5.2.2.5). The targeted fields go too: CDN-Cache-Control (RFC 9213
  // 2.1) and the older Surrogate-Control override Cache-Control at the caches they name.
  if (headers.has("set-cookie") || noStore) {
    headers.set("Cache-Control", "no-store");
    headers.delete("CDN-Cache-Control");
    headers.delete("Surrogate-Control");
  }
}

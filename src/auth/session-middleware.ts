import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app-env";
import type { SessionRepository } from "../store/types";
import { SESSION_COOKIE, readCookie } from "./cookies";

/**
 * Reads the session from the `__Host-Http-session` cookie and nowhere else (no query
 * parameter, no header: ASVS 7.2.4), and puts it in `c.var.session`. Requests without a
 * valid session carry on with null; routes that need one call {@link requireSession}.
 */
export function sessionMiddleware(sessions: SessionRepository): MiddlewareHandler<AppEnv> {
  return async function session(c, next) {
    c.set("session", null);
    c.set("account", null);
    const token = readCookie(c.req.header("cookie"), SESSION_COOKIE);
    if (token !== null) {
      // Stryker: enforces nothing (the path test → `true`) — `?slide=false` honoured on another
      // route too would only let a session go idle sooner, never live longer.
      const slide = !(c.req.path === "/auth/me" && c.req.query("slide") === "false");
      // A database that cannot answer rejects here: app.ts's error handler answers 503.
      const found = await sessions.authenticate(token, { slide });
      if (found !== null) {
        c.set("session", found.session);
        c.set("account", found.account);
      }
    }
    return next();
  };
}

import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app-env";
import type { AccountRepository, SessionRepository } from "../store/types";
import { SESSION_COOKIE, readCookie } from "./cookies";

/**
 * Reads the session from the `__Host-Http-session` cookie and nowhere else (no query
 * parameter, no header: ASVS 7.2.4), and puts it in `c.var.session`. Requests without a
 * valid session carry on with null; routes that need one call {@link requireSession}.
 */
export function sessionMiddleware(sessions: SessionRepository, accounts: AccountRepository): MiddlewareHandler<AppEnv> {
  return async function session(c, next) {
    c.set("session", null);
    c.set("account", null);
    const token = readCookie(c.req.header("cookie"), SESSION_COOKIE);
    if (token !== null) {
      const slide = !(c.req.path === "/auth/me" && c.req.query("slide") === "false");
      // A database that cannot answer rejects here: app.ts's error handler answers 503.
      const session = await sessions.validate(token, { slide });
      const account = session === null ? null : await accounts.find(session.accountId, session.provider);
      if (session !== null && account !== null) {
        c.set("session", session);
        c.set("account", account);
      }
    }
    return next();
  };
}

import { Hono } from "hono";
import type { AppEnv } from "../app-env";
import type { Account } from "./accounts";
import { expiredSessionCookie } from "./cookies";
import type { Provider } from "./providers";
import type { Session } from "./session";
import type { SessionRepository } from "../store/types";
import { refuse } from "../http/errors";
import type { AuditLog } from "../audit/log";
import { asksForProviderLogout, providerLogoutURL } from "./provider-logout";

export interface SessionRouteDeps {
  sessions: SessionRepository;
  providers: Map<string, Provider>;
  audit: AuditLog;
  config: { publicOrigin: string };
}

/** The session and account of a request that must have one; 401 otherwise. */
export function requireSession(c: { var: AppEnv["Variables"] }): { session: Session; account: Account } {
  const { session, account } = c.var;
  // Stryker: equivalent (`||` → `&&`) — sessionMiddleware sets both or neither (a blocked
  // account is not found, and then the session is not set either); `||` says what is meant.
  if (session === null || account === null) {
    refuse(401, "no_session", "You are not logged in, or your session has ended.");
  }
  return { session, account };
}

/** `/auth/me`, `/auth/logout`, `/auth/sessions` and `/auth/providers`. */
export function sessionRoutes(deps: SessionRouteDeps): Hono<AppEnv> {
  const routes = new Hono<AppEnv>();

  routes.get("/providers", (c) =>
    c.json({ providers: [...deps.providers.values()].map((p) => ({ name: p.name, label: p.label })) }),
  );

  routes.get("/me", (c) => {
    const { session, account } = requireSession(c);
    c.set("noStore", true);
    return c.json({
      user: { id: account.id, displayName: account.displayName, provider: session.provider },
      session: {
        id: session.id,
        expiresAt: new Date(session.expiresAt).toISOString(),
        idleExpiresAt: new Date(session.idleExpiresAt).toISOString(),
      },
    });
  });

  routes.post("/logout", async (c) => {
    const { session } = requireSession(c);
    // Asked to leave the provider too: its logout URL is built from the ID token, which
    // goes with the session row, so it is read first (OIDC RP-Initiated Logout 1.0).
    const withProvider = await asksForProviderLogout(c);
    const logoutURL = withProvider
      ? await providerLogoutURL(session, { ...deps, publicOrigin: deps.config.publicOrigin })
      : null;
    // The row goes first and the answer does not wait for the provider: whatever it says,
    // this session is over (ASVS 7.4.1). The store revokes the refresh token (best effort).
    await deps.sessions.end(session.id, session.accountId, "logout");
    c.header("Set-Cookie", expiredSessionCookie());
    c.header("Clear-Site-Data", '"cookies"');
    if (!withProvider) {
      return c.body(null, 204);
    }
    // Stryker: untested (the detail for a provider without end_session_endpoint) — the test
    // provider has one. Equivalent (`noStore` → false below) — this answer expires the
    // session cookie, and headers.ts makes every answer that sets a cookie no-store.
    deps.audit.write("logout.provider.requested", {
      sessionId: session.id,
      provider: session.provider,
      ...(logoutURL === null ? { detail: "the provider has no end_session_endpoint" } : {}),
    });
    // The URL carries the ID token as id_token_hint: no cache may keep this answer.
    c.set("noStore", true);
    return c.json({ providerLogoutURL: logoutURL });
  });

  routes.get("/sessions", async (c) => {
    const { session, account } = requireSession(c);
    c.set("noStore", true);
    return c.json({
      sessions: (await deps.sessions.list(account.id, session.id)).map((s) => ({
        id: s.id,
        createdAt: new Date(s.createdAt).toISOString(),
        lastSeenAt: new Date(s.lastSeenAt).toISOString(),
        userAgent: s.userAgent,
        current: s.current,
      })),
    });
  });

  routes.delete("/sessions/:id", async (c) => {
    const { session, account } = requireSession(c);
    const target = c.req.param("id");
    // Another user's session id looks exactly like an unknown one: 404, nothing revealed.
    if (!(await deps.sessions.revoke(account.id, target, "revoked"))) {
      refuse(404, "not_found", "No such session.");
    }
    if (target === session.id) {
      c.header("Set-Cookie", expiredSessionCookie());
    }
    return c.body(null, 204);
  });

  routes.delete("/sessions", async (c) => {
    const { session, account } = requireSession(c);
    await deps.sessions.revokeOthers(account.id, session.id);
    return c.body(null, 204);
  });

  return routes;
}

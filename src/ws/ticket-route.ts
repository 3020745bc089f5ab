import { Hono } from "hono";
import type { AppEnv } from "../app-env";
import type { AuditLog } from "../audit/log";
import { requireSession } from "../auth/routes";
import type { Clock } from "../clock";
import type { RateLimitConfig } from "../config";
import { RateLimiter, rateLimitMiddleware } from "../http/rate-limit";
import type { TicketStore } from "./tickets";

/** `POST /auth/ws-ticket` (session + CSRF, both enforced by app.ts for /auth/*). */
export function wsTicketRoutes(deps: { tickets: TicketStore; audit: AuditLog; clock: Clock; rateLimit: RateLimitConfig }): Hono<AppEnv> {
  const routes = new Hono<AppEnv>();
  routes.post("/ws-ticket", rateLimitMiddleware("ticket", new RateLimiter(deps.rateLimit, deps.clock), deps.audit), (c) => {
    const { session } = requireSession(c);
    const issued = deps.tickets.issue(session.id);
    deps.audit.write("ws.ticket.issued", { sessionId: session.id, ip: c.var.clientIP });
    // ASVS 14.3.2: a ticket is a credential for 30 s; no cache may keep it.
    c.set("noStore", true);
    return c.json(issued);
  });
  return routes;
}

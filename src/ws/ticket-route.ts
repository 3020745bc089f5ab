import { Hono } from "hono";
import type { AppEnv } from "../app-env";
import type { AuditLog } from "../audit/log";
import { requireSession } from "../auth/routes";
import type { TicketRepository } from "../store/types";

/**
 * `POST /auth/ws-ticket` (session, RATE_LIMIT_TICKET and CSRF, all enforced by app.ts for
 * /auth/*: the limit is taken before CSRF, so it must live there and not here).
 */
export function wsTicketRoutes(deps: { tickets: TicketRepository; audit: AuditLog }): Hono<AppEnv> {
  const routes = new Hono<AppEnv>();
  routes.post("/ws-ticket", async (c) => {
    const { session } = requireSession(c);
    const issued = await deps.tickets.issue(session.id);
    deps.audit.write("ws.ticket.issued", { sessionId: session.id, ip: c.var.clientIP, requestId: c.var.requestId });
    // ASVS 14.3.2: a ticket is a credential for 30 s; no cache may keep it.
    c.set("noStore", true);
    return c.json(issued);
  });
  return routes;
}

import type { HttpBindings } from "@hono/node-server";
import type { Account } from "./auth/accounts";
import type { Session } from "./auth/session";

/** The context variables every route can rely on, typed once (Hono ContextVariableMap habit). */
export interface AppEnv {
  Bindings: HttpBindings;
  Variables: {
    session: Session | null;
    account: Account | null;
    /** The client's address: the socket's, or TRUST_PROXY hops into X-Forwarded-For. */
    clientIP: string;
    /** Set by routes whose answer carries session data or a ticket (ASVS 14.3.2). */
    noStore: boolean;
    /** This request's id (http/request-id.ts): on its audit lines, upstream, and in X-Request-Id. */
    requestId: string;
    /**
     * Puts SECURITY.md F's headers (and the no-store rules) on an answer a route writes to
     * the socket itself, past the middleware that does it for every other answer.
     */
    finishHeaders: (headers: Headers) => void;
    /** The status of an answer the route wrote to the socket itself (c.res is then a marker). */
    sentStatus: number | undefined;
    /** The /api upstream prefix the request was matched to, for the metrics; unset before a match. */
    upstream: string | undefined;
  };
}

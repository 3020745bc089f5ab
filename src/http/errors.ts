import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";

/**
 * Throws the contract's JSON error `{"error","message"}` with `status`. Every refusal goes
 * through here, and `app.onError` answers it.
 */
export function refuse(status: ContentfulStatusCode, error: string, message: string, headers: Record<string, string> = {}): never {
  const res = new Response(JSON.stringify({ error, message }), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", ...headers },
  });
  throw new HTTPException(status, { res, message });
}

/** `app.onError`: refusals answer themselves; anything else is a 500 without details. */
export function errorHandler(onUnexpected: (error: unknown, c: Context) => void) {
  return function errorHandler(error: Error, c: Context): Response {
    if (error instanceof HTTPException) {
      const res = error.getResponse();
      if (res.headers.get("content-type")?.startsWith("application/json")) {
        return res;
      }
      // Hono's own exceptions (a malformed body, say) get the contract's shape too.
      return jsonError(error.status, error.status >= 500 ? "server_error" : "bad_request", error.message || "bad request");
    }
    if (isDatabaseUnavailable(error)) {
      // Busy, read-only, full or failing storage: a transaction was rolled back as a whole,
      // so nothing is half-written. Tell the client to come back rather than crash.
      onUnexpected(error, c);
      return jsonError(503, "unavailable", "The service is temporarily unavailable; try again shortly.", { "retry-after": "5" });
    }
    onUnexpected(error, c);
    return jsonError(500, "server_error", "something went wrong on our side");
  };
}

export function notFound(): Response {
  return jsonError(404, "not_found", "no such route");
}

export function jsonError(status: number, error: string, message: string, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify({ error, message }), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", ...headers },
  });
}

const UNAVAILABLE_SQLITE_CODES = /^SQLITE_(BUSY|LOCKED|READONLY|IOERR|FULL|CANTOPEN|PROTOCOL)/;

/** An SQLite error that means "storage unavailable right now", not a bug in a query. */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const code = (error as { code?: unknown }).code;
  return (typeof code === "string" && UNAVAILABLE_SQLITE_CODES.test(code)) || (error instanceof TypeError && /database connection is not open/.test(error.message));
}

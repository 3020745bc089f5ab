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

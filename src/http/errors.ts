import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { RequestError } from "@hono/node-server";
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { isStoreUnavailable } from "../store/errors";

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

/**
 * `errorHandler` for @hono/node-server's `getRequestListener`: what it could not turn into a
 * Request (a Host that is not a host name, a backslash in the path, a broken absolute-form
 * target, no Host at all) never reaches Hono, so no middleware could add anything, and its
 * default is an empty 400. This gives it the contract's JSON shape and the same security
 * headers as every other answer (SECURITY.md F31), and closes the connection: a client
 * that sends that is not one whose next request we want to read.
 */
export function refusalBeforeApp(securityHeaders: [string, string][]): (error: unknown) => Response {
  return function refuseUnparsable(error: unknown): Response {
    let res: Response;
    if (error instanceof RequestError) {
      res = jsonError(400, "bad_request", "The request target or Host header is malformed.", { connection: "close" });
    } else {
      // app.fetch itself failed, outside app.onError: a bug, answered without details.
      process.stderr.write(`unexpected error before the app: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      res = jsonError(500, "server_error", "something went wrong on our side", { connection: "close" });
    }
    for (const [name, value] of securityHeaders) res.headers.set(name, value);
    return res;
  };
}

/**
 * RFC 9112 3.2: an HTTP/1.1 request without Host is a 400, whatever its target (Node's own
 * check is turned off so that this answer, not its bare one, goes out). Written on the
 * ServerResponse before @hono/node-server sees the request, which would otherwise accept
 * an absolute-form target in place of the missing Host.
 */
export function refusedForMissingHost(req: IncomingMessage, res: ServerResponse, securityHeaders: [string, string][]): boolean {
  if (req.headers.host !== undefined || req.httpVersionMajor !== 1 || req.httpVersionMinor !== 1) return false;
  const body = JSON.stringify({ error: "bad_request", message: "An HTTP/1.1 request needs a Host header." });
  res.writeHead(400, [
    ...securityHeaders.flat(),
    ...["Content-Type", "application/json; charset=utf-8", "Cache-Control", "no-store", "Connection", "close"],
    ...["Content-Length", String(Buffer.byteLength(body))],
  ]);
  res.end(body);
  return true;
}

const CLIENT_ERRORS: Record<string, { status: number; error: string; message: string }> = {
  HPE_HEADER_OVERFLOW: { status: 431, error: "headers_too_large", message: "The request headers are larger than 16 KiB." },
  HPE_CHUNK_EXTENSIONS_OVERFLOW: { status: 413, error: "too_large", message: "The chunk extensions are too large." },
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, error: "timeout", message: "The request took too long to arrive." },
};
const MALFORMED = { status: 400, error: "bad_request", message: "The request could not be parsed as HTTP/1.1." };

/**
 * What Node's HTTP parser refuses (a malformed request line or header, headers over the
 * size limit, the header or request timeout) is answered by Node itself with a bare status
 * line. With a `clientError` listener the answer is ours: the same status Node would send,
 * with the JSON shape and the security headers (SECURITY.md F31), then the socket goes.
 * Nothing is written while an answer to an earlier request on the connection is still
 * going out (a pipelined request that failed to parse): that would corrupt it.
 */
export function answerClientErrors(server: Server, securityHeaders: [string, string][]): void {
  const answering = new WeakMap<Duplex, number>();
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    answering.set(socket, (answering.get(socket) ?? 0) + 1);
    res.once("close", () => answering.set(socket, (answering.get(socket) ?? 1) - 1));
  });
  server.on("clientError", (error: Error, socket: Duplex) => {
    const code = "code" in error && typeof error.code === "string" ? error.code : "";
    if (socket.writable && (answering.get(socket) ?? 0) === 0 && code !== "ECONNRESET") {
      const { status, error: name, message } = CLIENT_ERRORS[code] ?? MALFORMED;
      socket.write(rawErrorResponse(status, name, message, securityHeaders));
    }
    socket.destroy();
  });
}

/** A complete HTTP/1.1 error answer, for a socket no ServerResponse exists for. */
export function rawErrorResponse(status: number, error: string, message: string, securityHeaders: [string, string][]): string {
  const body = JSON.stringify({ error, message });
  const head = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}`,
    "Content-Type: application/json; charset=utf-8",
    "Cache-Control: no-store",
    `Content-Length: ${Buffer.byteLength(body)}`,
    "Connection: close",
    ...securityHeaders.map(([name, value]) => `${name}: ${value}`),
  ];
  return `${head.join("\r\n")}\r\n\r\n${body}`;
}

/** An error that means "storage unavailable right now", not a bug in a query (either engine). */
export const isDatabaseUnavailable = isStoreUnavailable;

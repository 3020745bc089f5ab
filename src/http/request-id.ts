import { randomUUID } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app-env";

export const REQUEST_ID_HEADER = "X-Request-Id";
const MAX_LENGTH = 64;
// One character class, anchored, no nested repetition: linear on any input, and the
// length is checked first anyway (SECURITY.md I37). No spaces, quotes or CR/LF, so an id
// can be written into a header and a log line as it is.
const WELL_FORMED = /^[A-Za-z0-9._-]+$/;

/**
 * The request id of one request or upgrade: the client's (a load balancer's) own
 * `X-Request-Id` when it is short and well-formed, so one id follows the request through
 * every hop; otherwise a fresh UUID. An id is a correlation handle, not a secret: the
 * client may choose it, and it only ever labels audit lines, never a metric (SECURITY.md I44).
 */
export function requestIdFrom(header: string | undefined): string {
  if (header !== undefined && header.length > 0 && header.length <= MAX_LENGTH && WELL_FORMED.test(header)) return header;
  return randomUUID();
}

/** Gives each request its id (`c.var.requestId`) and returns it in `X-Request-Id`, refusals included. */
export function requestIdMiddleware(): MiddlewareHandler<AppEnv> {
  return async function requestId(c, next) {
    const id = requestIdFrom(c.req.header("x-request-id"));
    c.set("requestId", id);
    await next();
    c.res.headers.set(REQUEST_ID_HEADER, id);
  };
}

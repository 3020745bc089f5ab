import { Hono, type Context } from "hono";
import type { AppEnv } from "../app-env";
import type { AuditLog } from "../audit/log";
import { requireSession } from "../auth/routes";
import type { Clock } from "../clock";
import type { RateLimitConfig } from "../config";
import { refuse } from "../http/errors";
import { RateLimiter, rateLimitMiddleware } from "../http/rate-limit";
import type { AssertionSigner } from "./assertion";
import type { TokenRefresher } from "./refresh";
import { resolveUpstream, type UpstreamRoute } from "./upstreams";

export interface APIRelayDeps {
  routes: UpstreamRoute[];
  signer: AssertionSigner;
  refresher: TokenRefresher;
  audit: AuditLog;
  clock: Clock;
  rateLimit: RateLimitConfig;
  publicOrigin: string;
  /** 30 s by default (CONTRACT.md 504); tests shorten it. */
  timeoutMs?: number;
}

const BODY_LIMIT = 1024 * 1024;
const UPSTREAM_TIMEOUT_MS = 30_000;
// RFC 9110 7.6.1 hop-by-hop fields, plus what only the browser↔BFF leg may carry and what
// the BFF sets itself (SECURITY.md D21).
const STRIPPED_REQUEST_HEADERS = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
  "content-length",
  "cookie",
  "authorization",
  "forwarded",
  "x-real-ip",
  "x-csrf",
]);
const STRIPPED_RESPONSE_HEADERS = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "set-cookie",
  // fetch hands us the decoded body, so the upstream's length and encoding no longer apply.
  "content-length",
  "content-encoding",
  // Our own policy headers win over the upstream's.
  "content-security-policy",
  "access-control-allow-origin",
  "access-control-allow-credentials",
  "strict-transport-security",
]);

/**
 * `/api/*` (CONTRACT.md "Identity for upstreams"): a fixed allowlist of upstreams; session
 * and CSRF are checked by app.ts before this runs. The browser's credentials never leave:
 * the upstream gets a 60-second Ed25519 assertion, or the user's provider access token.
 */
export function apiRoutes(deps: APIRelayDeps): Hono<AppEnv> {
  const routes = new Hono<AppEnv>();
  const limiter = rateLimitMiddleware("api", new RateLimiter(deps.rateLimit, deps.clock), deps.audit);
  const publicProto = new URL(deps.publicOrigin).protocol.replace(":", "");

  routes.all("/*", limiter, async (c) => {
    const { session, account } = requireSession(c);
    const resolved = resolveUpstream(deps.routes, c.env?.incoming?.url ?? new URL(c.req.url).pathname);
    if ("refusal" in resolved) {
      if (resolved.refusal === "bad_path") refuse(400, "bad_path", "That path is not allowed.");
      refuse(404, "not_found", "No such API route.");
    }
    const { route, url } = resolved;
    if (!route.methods.has(c.req.method)) {
      refuse(405, "method_not_allowed", "This API route does not take that method.", { allow: [...route.methods].join(", ") });
    }
    const body = await readBoundedBody(c);

    const headers = new Headers();
    const connectionListed = (c.req.header("connection") ?? "").toLowerCase().split(/\s*,\s*/);
    for (const [name, value] of c.req.raw.headers) {
      if (STRIPPED_REQUEST_HEADERS.has(name) || name.startsWith("x-forwarded-") || connectionListed.includes(name)) continue;
      headers.set(name, value);
    }
    headers.set("x-forwarded-for", c.var.clientIP);
    headers.set("x-forwarded-proto", publicProto);
    const credential =
      route.credential.mode === "assertion"
        ? deps.signer.sign({ sub: account.id, sid: session.id, name: account.displayName, aud: route.audience })
        : await providerToken(deps, route.credential.provider, session);
    headers.set("authorization", `Bearer ${credential}`);

    let upstream: Response;
    try {
      upstream = await fetch(url, {
        method: c.req.method,
        headers,
        body,
        // SECURITY.md D20: never follow an upstream's redirect on the user's behalf.
        redirect: "manual",
        signal: AbortSignal.timeout(deps.timeoutMs ?? UPSTREAM_TIMEOUT_MS),
      });
    } catch (error) {
      const timedOut = error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
      deps.audit.write("upstream.failed", { sessionId: session.id, upstream: route.prefix, reason: timedOut ? "timeout" : "unreachable" });
      if (timedOut) refuse(504, "upstream_timeout", "The game backend did not answer in time.");
      refuse(502, "upstream_unreachable", "The game backend could not be reached.");
    }

    const answer = new Headers();
    for (const [name, value] of upstream.headers) {
      if (!STRIPPED_RESPONSE_HEADERS.has(name)) answer.set(name, value);
    }
    const location = upstream.headers.get("location");
    if (location !== null) answer.set("location", rewriteLocation(location, url, route));
    if (upstream.status >= 500) {
      deps.audit.write("upstream.failed", { sessionId: session.id, upstream: route.prefix, status: upstream.status });
    }
    // Streamed back as it arrives; never buffered whole.
    return new Response(c.req.method === "HEAD" ? null : upstream.body, { status: upstream.status, headers: answer });
  });
  return routes;
}

async function providerToken(deps: APIRelayDeps, provider: string, session: ReturnType<typeof requireSession>["session"]): Promise<string> {
  if (session.provider !== provider) {
    refuse(403, "wrong_provider", `This route needs a login with ${provider}.`);
  }
  return deps.refresher.accessToken(session);
}

/**
 * Reads the request body up to 1 MiB. Bounded buffering is deliberate: streaming it
 * straight into the upstream request would hand the upstream the first megabyte of an
 * oversized chunked body before we could refuse it; this way an oversized body is refused
 * with 413 and the upstream sees nothing (SECURITY.md H36).
 */
async function readBoundedBody(c: Context<AppEnv>): Promise<ArrayBuffer | undefined> {
  if (c.req.method === "GET" || c.req.method === "HEAD" || c.req.raw.body === null) return undefined;
  const declared = Number(c.req.header("content-length") ?? "0");
  if (declared > BODY_LIMIT) refuse(413, "too_large", "The request body is larger than 1 MiB.", { connection: "close" });
  const reader = c.req.raw.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > BODY_LIMIT) {
      await reader.cancel();
      refuse(413, "too_large", "The request body is larger than 1 MiB.", { connection: "close" });
    }
    chunks.push(value);
  }
  const joined = Buffer.concat(chunks);
  return joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength) as ArrayBuffer;
}

/** A `Location` pointing into the upstream's own target is mapped back under our prefix; others pass as they are. */
function rewriteLocation(location: string, requestURL: URL, route: UpstreamRoute): string {
  let target: URL;
  try {
    target = new URL(location, requestURL);
  } catch {
    return location;
  }
  if (target.href.startsWith(route.target)) {
    return `${route.prefix}${target.href.slice(route.target.length)}`;
  }
  return location;
}

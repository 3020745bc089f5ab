import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { Hono, type Context } from "hono";
import type { AppEnv } from "../app-env";
import type { AuditLog } from "../audit/log";
import type { Account } from "../auth/accounts";
import { requireSession } from "../auth/routes";
import type { Session } from "../auth/session";
import type { Clock } from "../clock";
import { refuse } from "../http/errors";
import { REQUEST_ID_HEADER } from "../http/request-id";
import type { Metrics } from "../metrics/metrics";
import { measureAPI } from "../metrics/api";
import type { AssertionSigner } from "./assertion";
import type { TokenRefresher } from "./refresh";
import { resolveUpstream, type UpstreamRoute } from "./upstreams";

export interface APIRelayDeps {
  routes: UpstreamRoute[];
  signer: AssertionSigner;
  refresher: TokenRefresher;
  audit: AuditLog;
  clock: Clock;
  publicOrigin: string;
  metrics: Metrics;
  /** 30 s by default (CONTRACT.md 504); tests shorten it. */
  timeoutMs?: number;
}

const BODY_LIMIT = 1024 * 1024;
const UPSTREAM_TIMEOUT_MS = 30_000;
// RFC 9110 7.6.1 hop-by-hop fields, plus what only the browser↔BFF leg may carry and what
// the BFF sets itself (SECURITY.md D21). `expect` is the BFF's to answer (RFC 9110 10.1.1):
// the body is read whole before the upstream is called. The client's `accept-encoding` goes
// too: an upstream that compresses makes every answer a case a game developer must test
// through the relay, for little gain on loopback; one that compresses anyway is passed on
// as it is, with its own Content-Encoding and Content-Length.
// A list of families rather than an allowlist: a game's own headers (its X-Game-Version, a
// content type, an idempotency key) reach it without anyone naming them in our
// configuration, and every family here is one the upstream's framework gives meaning to.
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
  "expect",
  "accept-encoding",
  "cookie",
  "authorization",
  "forwarded",
  "x-csrf",
  // SECURITY.md I42. Headers some upstream frameworks obey as if they were the request line:
  // a browser must not pick the method (a GET with X-HTTP-Method-Override: DELETE passes our
  // per-route method allowlist as a GET) or the URL (IIS/Symfony read X-Original-URL and
  // X-Rewrite-URL after the path was checked, getting round SECURITY.md D20).
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
  "x-original-url",
  "x-original-uri",
  "x-original-path",
  "x-rewrite-url",
  "x-override-url",
  "x-envoy-original-path",
  "x-original-host",
  "x-host",
  "x-http-host-override",
  // Client-address headers some frameworks trust like X-Forwarded-For: a browser must not
  // be able to pick the address the upstream logs or rate-limits. The family is also caught
  // by CLIENT_ADDRESS_HEADER below, for the vendor variants not listed here. (Stryker:
  // removing one of these names is equivalent — each ends in -ip, -addr, -address or -for,
  // which the pattern strips too; test/proxy/relay-headers.test.ts proves the pattern.)
  "client-ip",
  "true-client-ip",
  "x-client-ip",
  "x-real-ip",
  "x-originating-ip",
  "x-remote-ip",
  "x-remote-addr",
  "fastly-client-ip",
  "cf-connecting-ip",
  "x-cluster-client-ip",
  "x-proxyuser-ip",
  // X-Forwarded-For's cousins: the same claim under names that libraries such as the
  // `request-ip` package, PHP helpers, ingress-nginx and Envoy read (review F3).
  "x-forwarded",
  "forwarded-for",
  "x-original-forwarded-for",
  "x-envoy-external-address",
  // Scheme overrides: the BFF states the scheme in X-Forwarded-Proto.
  "front-end-https",
  "x-url-scheme",
]);
// Any name whose last dash-separated word is an address or who it is for (`…-ip`,
// `…-ipv6`, `…-addr`, `…-address`, `…-for`, `x-azure-clientip`): a new CDN's variant of
// the family is stripped without a code change. Anchored, no nested repetition: linear on
// any input (SECURITY.md I37).
const CLIENT_ADDRESS_HEADER = /(?:^|-)(?:ip|ipv4|ipv6|addr|address|for|clientip|socketip)$/;
const STRIPPED_RESPONSE_HEADERS = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  // The session cookie is the BFF's alone: an upstream can neither set nor wipe cookies.
  "set-cookie",
  "set-cookie2",
  "clear-site-data",
  // Our own policy headers win over the upstream's (and every access-control-* goes too:
  // CONTRACT.md, no CORS and never a reflected Origin).
  "content-security-policy",
  "content-security-policy-report-only",
  "strict-transport-security",
  // SECURITY.md I42: headers that make the browser act on our origin's behalf. Refresh
  // navigates (an open redirect with no Location to rewrite), Alt-Svc moves our origin's
  // later traffic to another host or port, Link preloads or preconnects anywhere (and can
  // carry rel=stylesheet in some engines).
  "refresh",
  "alt-svc",
  "link",
  // The same reasoning for their cousins: a wider service-worker scope for a script the
  // upstream serves, report endpoints (the browser would post our URLs to the upstream's
  // choice), client-hint requests, and cross-origin timing access.
  "service-worker-allowed",
  "report-to",
  "reporting-endpoints",
  "nel",
  "accept-ch",
  "critical-ch",
  "timing-allow-origin",
]);

/**
 * `/api/*` (CONTRACT.md "Identity for upstreams"): a fixed allowlist of upstreams; session
 * and CSRF are checked by app.ts before this runs. The browser's credentials never leave:
 * the upstream gets a 60-second Ed25519 assertion, or the user's provider access token.
 */
export function apiRoutes(deps: APIRelayDeps): Hono<AppEnv> {
  const routes = new Hono<AppEnv>();
  const publicProto = new URL(deps.publicOrigin).protocol.replace(":", "");

  if (deps.metrics.enabled) routes.use(measureAPI(deps.metrics));
  // RATE_LIMIT_API is taken in app.ts, before CSRF.
  routes.all("/*", async function relay(c) {
    const { session, account } = requireSession(c);
    // Stryker: equivalent (either `?.`) — @hono/node-server always sets env.incoming and its url.
    const resolved = resolveUpstream(deps.routes, c.env?.incoming?.url ?? new URL(c.req.url).pathname);
    if ("refusal" in resolved) {
      // Stryker: a bad path answered 404 instead of 400 is still refused with nothing sent
      // upstream (SECURITY.md D20); the hostile-path table accepts either status.
      if (resolved.refusal === "bad_path") refuse(400, "bad_path", "That path is not allowed.");
      refuse(404, "not_found", "No such API route.");
    }
    const { route, url } = resolved;
    c.set("upstream", route.prefix);
    if (!route.methods.has(c.req.method)) {
      refuse(405, "method_not_allowed", "This API route does not take that method.", { allow: [...route.methods].join(", ") });
    }
    return forwardRequest(c, {
      url,
      upstream: route.prefix,
      sessionId: session.id,
      publicProto,
      audit: deps.audit,
      timeoutMs: deps.timeoutMs ?? UPSTREAM_TIMEOUT_MS,
      // The credential comes last, after every refusal: a refused request costs no
      // signature and no token refresh.
      credential: async () => {
        if (route.credential.mode === "provider-token") return providerToken(deps.refresher, route.credential.provider, session);
        await deps.refresher.checkIntact(session);
        // Stryker: `reuse: false` enforces nothing (a fresh assertion with the same claims and lifetime).
        return playerAssertion(deps.signer, session, account, route.audience, { reuse: true });
      },
      location: (location) => rewriteLocation(location, url, route),
    });
  });
  return routes;
}

export interface ForwardOptions {
  /** The upstream URL: the route's target with the request's path rest and query. */
  url: URL;
  /** The route's public prefix, for the audit log. */
  upstream: string;
  sessionId: string;
  /** `http` or `https`: what the browser used, for X-Forwarded-Proto. */
  publicProto: string;
  audit: AuditLog;
  timeoutMs: number;
  /** The `Authorization` bearer credential; called after every refusal. */
  credential: () => Promise<string>;
  /** Maps the upstream's `Location` back to a public path. */
  location?: (location: string) => string;
  /**
   * Ends the exchange early, the streamed answer included (a session that ended while a
   * long poll was held). When it fires before the upstream answered, its reason is thrown.
   */
  signal?: AbortSignal;
}

/**
 * One request relayed to an upstream, for `/api/*` and for long-polling requests on the
 * WebSocket routes: the body read bounded, the browser's credentials and the framework
 * headers stripped (SECURITY.md D21, I42), the credential added, the answer streamed back
 * with its own dangerous headers stripped. Session and CSRF are the caller's to check.
 *
 * The upstream is called with `node:http` over a keep-alive pool, and its answer is piped
 * to the browser's socket as it comes, bytes untouched (issue 14: `fetch` and web streams
 * cost several times the CPU of the request itself). The answer is written here, so its
 * headers are finished here too (`c.var.finishHeaders`, X-Request-Id).
 */
export async function forwardRequest(c: Context<AppEnv>, options: ForwardOptions): Promise<Response> {
  const body = await readBoundedBody(c);
  const outgoing = c.env.outgoing;

  const headers: OutgoingHttpHeaders = {};
  const connectionListed = listedInConnection(c.req.raw.headers.get("connection"));
  for (const [name, value] of c.req.raw.headers) {
    if (STRIPPED_REQUEST_HEADERS.has(name) || name.startsWith("x-forwarded-") || CLIENT_ADDRESS_HEADER.test(name) || connectionListed.has(name)) continue;
    headers[name] = value;
  }
  headers["x-forwarded-for"] = c.var.clientIP;
  headers["x-forwarded-proto"] = options.publicProto;
  // The same id the browser gets back and the audit lines carry: one request, one id at every hop.
  // Stryker: equivalent (toUpperCase) — header names are case-insensitive on the wire.
  headers[REQUEST_ID_HEADER.toLowerCase()] = c.var.requestId;
  if (body !== undefined) headers["content-length"] = String(body.byteLength);
  const credential = await options.credential();
  headers.authorization = `Bearer ${credential}`;

  let upstream: IncomingMessage;
  const exchange = new Exchange(options.timeoutMs, outgoing, options.signal);
  try {
    upstream = await exchange.send(options.url, { method: c.req.method, headers }, body);
  } catch (error) {
    // Ended by the caller (a session that ended): its reason is the answer, not a failure.
    if (options.signal?.aborted) throw options.signal.reason;
    const reason = exchange.timedOut ? "timeout" : exchange.clientGone ? "client gone" : "unreachable";
    options.audit.write("upstream.failed", {
      sessionId: options.sessionId,
      upstream: options.upstream,
      requestId: c.var.requestId,
      reason,
      detail: error instanceof Error ? error.message : undefined,
    });
    if (exchange.timedOut) refuse(504, "upstream_timeout", "The upstream did not answer in time.");
    refuse(502, "upstream_unreachable", "The upstream could not be reached.");
  }

  // Stryker: equivalent (the `?? 502`) — an IncomingMessage from a ClientRequest's
  // 'response' event always has its statusCode; the fallback only satisfies the type.
  const status = upstream.statusCode ?? 502;
  const answer = new Headers();
  const upstreamConnectionListed = listedInConnection(headerValue(upstream.headers.connection));
  const raw = upstream.rawHeaders;
  // Stryker: equivalent (`<=`) — rawHeaders always holds name and value pairs.
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (STRIPPED_RESPONSE_HEADERS.has(name) || name.startsWith("access-control-") || upstreamConnectionListed.has(name)) continue;
    answer.append(name, raw[i + 1] as string);
  }
  const location = headerValue(upstream.headers.location);
  if (location !== null && options.location !== undefined) answer.set("location", options.location(location));
  // ASVS 14.3.2: an answer made for one session must not land in a shared cache. An
  // upstream that says nothing gets no-store; one that chose a policy keeps it.
  if (!answer.has("cache-control")) answer.set("cache-control", "no-store");
  if (status >= 500) {
    options.audit.write("upstream.failed", { sessionId: options.sessionId, upstream: options.upstream, status, requestId: c.var.requestId });
  }
  c.var.finishHeaders(answer);
  answer.set(REQUEST_ID_HEADER, c.var.requestId);
  if (c.req.method === "HEAD") {
    // Hono answers HEAD by dispatching GET and wrapping what the handler returned in a new
    // Response, which loses @hono/node-server's marker for an answer already written: it
    // would write the head a second time, fail, and destroy the browser's kept-alive
    // connection. A HEAD answer has no body (Node reads none, whatever its Content-Length
    // says), so it is returned for Hono to write.
    exchange.finishHead(upstream);
    return new Response(null, { status, headers: answer });
  }
  const flat: string[] = [];
  for (const [name, value] of answer) flat.push(name, value);
  outgoing.writeHead(status, flat);
  // Streamed back as it arrives; never buffered whole.
  exchange.stream(upstream);
  // Hono writes nothing more: the answer is on its way (@hono/node-server's marker, one
  // shared object, whose headers the middleware after us may set but nothing sends). The
  // status is for the middleware that reads it (metrics).
  c.set("sentStatus", status);
  return RESPONSE_ALREADY_SENT;
}

/** Keep-alive pools to the upstreams, one per scheme; idle sockets close after 4 s, before Node's 5 s server default does. */
const AGENT_OPTIONS = { keepAlive: true, timeout: 4_000, scheduling: "lifo" } as const;
const transports = {
  "http:": { agent: new HttpAgent(AGENT_OPTIONS), request: httpRequest },
  "https:": { agent: new HttpsAgent(AGENT_OPTIONS), request: httpsRequest },
};
/** Methods that may be sent again when a pooled socket turns out to have been closed by the upstream (RFC 9110 9.2.2). */
// Stryker: equivalent (removing "OPTIONS") — no route carries OPTIONS to the relay: an /api
// route's methods are a subset of GET, HEAD, POST, PUT, PATCH, DELETE (upstreams.ts refuses
// any other), and polling routes take GET and POST only.
const IDEMPOTENT = new Set(["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]);

/**
 * One upstream exchange, bounded by one timer (real time, not the injected clock: this
 * bounds a wait on a socket). It covers the whole exchange, the streamed answer included,
 * so a trickling upstream cannot pin a connection for longer than the timeout. A browser
 * that goes away, or the caller's signal, ends the upstream call too.
 */
class Exchange {
  timedOut = false;
  clientGone = false;
  private request: ClientRequest | undefined;
  private upstream: IncomingMessage | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly fail: Array<(error: Error) => void> = [];

  constructor(
    timeoutMs: number,
    private readonly outgoing: ServerResponse,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.end(new Error(`no complete answer within ${timeoutMs} ms`));
    }, timeoutMs);
    outgoing.once("close", this.onClientClose);
    // Stryker: equivalent (`{ once: true }` → `{}`) — settle() removes the listener, and a signal aborts once.
    signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  send(url: URL, init: { method: string; headers: OutgoingHttpHeaders }, body: Uint8Array | undefined, retried = false): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      if (this.timedOut || this.clientGone || this.signal?.aborted) {
        reject(new Error("ended before it was sent"));
        return;
      }
      // Stryker: untested (the https choice) — no test upstream speaks TLS; an https upstream
      // sent over plain http would fail, not leak.
      const transport = url.protocol === "https:" ? transports["https:"] : transports["http:"];
      const request = transport.request(url, { ...init, agent: transport.agent });
      this.request = request;
      this.fail.push(reject);
      request.once("response", (upstream) => {
        this.upstream = upstream;
        resolve(upstream);
      });
      request.once("error", (error: NodeJS.ErrnoException) => {
        // A pooled socket the upstream closed as the request went out: an idempotent
        // request (RFC 9110 9.2.2) may be sent once more, on a fresh socket. Stryker:
        // equivalent (`error.code === "ECONNRESET"` → `true`, `this.upstream === undefined` →
        // `true`) — a reused socket fails only by a reset (or EPIPE, the same case) before an
        // answer, and only idempotent requests are sent again, once.
        if (request.reusedSocket && error.code === "ECONNRESET" && !retried && IDEMPOTENT.has(init.method) && this.upstream === undefined) {
          this.send(url, init, body, true).then(resolve, reject);
          return;
        }
        reject(error);
      });
      request.end(body);
    });
  }

  /**
   * Pipes the answer to the browser; the timer keeps running until it is complete.
   *
   * Stryker: equivalent in effect — the timer cleared at `end` or at `finish` (either one
   * alone, or neither, `settle()`'s body, `finishHead()`'s, the event names it removes, the
   * `writableFinished` test), and the message of a broken answer: once the browser's answer
   * is complete Node has detached it from its socket, so a timer or listener left armed ends
   * nothing (relay-exchange.test.ts: the kept-alive connection outlives the timeout after a
   * GET and a HEAD), and after the answer began no `send` is pending to carry a message.
   * Clearing them frees the timer and the closures early.
   */
  stream(upstream: IncomingMessage): void {
    upstream.once("error", () => this.end(new Error("the upstream's answer broke off")));
    upstream.once("end", () => clearTimeout(this.timer));
    this.outgoing.once("finish", () => this.settle());
    upstream.pipe(this.outgoing);
  }

  /** A HEAD answer: its head is all there is, so the exchange is over. */
  finishHead(upstream: IncomingMessage): void {
    upstream.resume();
    this.settle();
  }

  private readonly onClientClose = (): void => {
    if (this.outgoing.writableFinished) return;
    this.clientGone = true;
    this.end(new Error("the client went away"));
  };

  private readonly onAbort = (): void => {
    // Stryker: untested (`"ended by the caller"`) — every caller aborts with an Error.
    this.end(this.signal?.reason instanceof Error ? this.signal.reason : new Error("ended by the caller"));
  };

  /** Ends the exchange early: before the answer, the pending `send` fails; after, both sockets close. */
  private end(error: Error): void {
    this.settle();
    for (const reject of this.fail.splice(0)) reject(error);
    this.request?.destroy();
    if (this.upstream !== undefined) this.outgoing.destroy();
  }

  private settle(): void {
    clearTimeout(this.timer);
    this.outgoing.off("close", this.onClientClose);
    this.signal?.removeEventListener("abort", this.onAbort);
  }
}

function headerValue(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  // Stryker: equivalent (the array branch) — it is read for `connection` and `location` only,
  // which Node never gives as arrays: it joins repeated Connection fields with ", " and keeps
  // the first Location.
  return Array.isArray(value) ? value.join(", ") : value;
}

/**
 * The identity assertion for one player and one audience (CONTRACT.md "Identity for
 * upstreams"). HTTP requests reuse one for up to 30 s (`reuse`); a WebSocket handshake
 * gets its own.
 */
export function playerAssertion(signer: AssertionSigner, session: Session, account: Account, audience: string, options: { reuse: boolean }): string {
  const claims = { sub: account.id, sid: session.id, name: account.displayName, aud: audience, idp: session.provider, idpSub: account.providerSubject };
  return options.reuse ? signer.signReusable(claims) : signer.sign(claims);
}

/** Header names listed in `Connection` (RFC 9110 7.6.1): hop-by-hop for this one message. */
function listedInConnection(value: string | null): Set<string> {
  if (value === null) return new Set();
  // Stryker: equivalent (the filter) — an empty name is no header's name, so keeping it
  // strips nothing more.
  return new Set(value.split(",").map((name) => name.trim().toLowerCase()).filter((name) => name !== ""));
}

async function providerToken(refresher: TokenRefresher, provider: string, session: Session): Promise<string> {
  // A provider token is only ever the one the user logged in with: a session from provider
  // A must not be turned into a call that looks like it came from provider B.
  if (session.provider !== provider) {
    refuse(403, "wrong_provider", `This route needs a login with ${provider}.`);
  }
  return refresher.accessToken(session);
}

/**
 * Reads the request body, at most 1 MiB, before the upstream is contacted. Bounded
 * buffering is deliberate: streaming the body straight into the upstream request would hand
 * the upstream the first megabyte of an oversized chunked body (no Content-Length to refuse
 * it by) before we could say 413; buffering lets us refuse it with the upstream having seen
 * nothing at all (SECURITY.md H36). app.ts's `bodyLimit` already does the same for
 * `/api/*`; this is the relay's own guarantee, which does not depend on middleware order.
 * The cost is at most 1 MiB of memory per request in flight, which the connection cap bounds.
 */
async function readBoundedBody(c: Context<AppEnv>): Promise<Uint8Array<ArrayBuffer> | undefined> {
  // Stryker: equivalent (either method test alone) — @hono/node-server builds a GET's or a
  // HEAD's Request with no body, so `body === null` answers the same for them; and it gives
  // every other method a body stream, empty or not, so `body === null` alone is never true.
  if (c.req.method === "GET" || c.req.method === "HEAD" || c.req.raw.body === null) return undefined;
  // Stryker: not reachable through the app (this line to the end of the loop) — app.ts's
  // bodyLimit refuses an oversized /api or polling body first (test/proxy/relay.test.ts,
  // polling.test.ts: 413, nothing upstream); this is the relay's own guarantee if that moves.
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
  return Buffer.concat(chunks);
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

import type { Config, WebSocketRouteConfig } from "../config";
import { resolveUpstream, type UpstreamRefusal } from "../proxy/upstreams";
import type { RelayLimits } from "./relay";

/** One public WebSocket path, resolved: where it goes, what it speaks, its limits. */
export interface WebSocketRoute {
  /** The public path as configured: `/ws` (exactly) or a prefix ending in `/`. */
  path: string;
  /** For a prefix route, the prefix; null for an exact path. */
  prefix: string | null;
  /** For a prefix route, the base URL the rest of the path is appended to, ending in `/`. */
  target: string;
  /** The URL of the path itself (a prefix without its trailing `/`, or an exact path). */
  exactTarget: string;
  /** The `aud` of the identity assertion sent with the backend handshake. */
  audience: string;
  /** The subprotocol the browser offers beside its ticket, and our 101 names. */
  protocol: string;
  /** The subprotocol offered to the backend and required in its 101; null: none. */
  backendProtocol: string | null;
  limits: Pick<RelayLimits, "maxMessageBytes" | "messagesPerSecond">;
}

/**
 * The gate's route table, built once from the configuration (STYLE.md 16: routes are
 * data; the gate looks them up and never branches on a name). A route without its own
 * target goes to the game backend, at the same path; while no game backend is known (a
 * configuration made in a test, never by `main.ts`), such a route is not served.
 */
export function buildWebSocketRoutes(config: Config): WebSocketRoute[] {
  const routes: WebSocketRoute[] = [];
  for (const route of config.wsRoutes) {
    const resolved = resolveRoute(route, config);
    if (resolved !== null) routes.push(resolved);
  }
  return routes;
}

function resolveRoute(route: WebSocketRouteConfig, config: Config): WebSocketRoute | null {
  const configured = route.target ?? (config.gameBackendURL === null ? null : `${config.gameBackendURL}${route.path}`);
  if (configured === null) return null;
  const isPrefix = route.path.endsWith("/");
  const onGameBackend = route.target === null;
  return {
    path: route.path,
    prefix: isPrefix ? route.path : null,
    target: configured.endsWith("/") ? configured : `${configured}/`,
    exactTarget: isPrefix && configured.endsWith("/") ? configured.slice(0, -1) : configured,
    audience: route.audience ?? (onGameBackend ? config.gameBackendAudience : null) ?? new URL(configured).origin,
    protocol: route.protocol,
    backendProtocol: route.backendProtocol,
    limits: {
      maxMessageBytes: route.maxMessageBytes ?? config.wsMaxMessageBytes,
      messagesPerSecond: route.maxMessagesPerSecond ?? config.wsMaxMessagesPerSecond,
    },
  };
}

/**
 * The route and backend URL for a raw request target (`/socket.io/?EIO=4&transport=websocket`),
 * or why not: 400 (`bad_path`) or 404 (`no_route`). The rest of the path and the query pass
 * through unchanged; hostile paths are refused, never cleaned up, by the same checks as
 * `/api` (SECURITY.md D20), since a backend reads `..` the same way over either.
 */
export function resolveWebSocketRoute(
  routes: WebSocketRoute[],
  rawTarget: string,
): { route: WebSocketRoute; url: URL } | { refusal: UpstreamRefusal } {
  const queryStart = rawTarget.indexOf("?");
  const path = queryStart === -1 ? rawTarget : rawTarget.slice(0, queryStart);
  const exact = routes.find((route) => route.prefix === null && route.path === path);
  if (exact !== undefined) {
    // The path is one we configured; only the query is the client's, checked as /api checks it.
    const query = queryStart === -1 ? "" : rawTarget.slice(queryStart);
    if (/[^\x21-\x7e]|#/.test(query)) return { refusal: "bad_path" };
    return { route: exact, url: new URL(exact.exactTarget + query) };
  }
  return resolveUpstream(routes.filter(isPrefixRoute), rawTarget);
}

function isPrefixRoute(route: WebSocketRoute): route is WebSocketRoute & { prefix: string } {
  return route.prefix !== null;
}

/**
 * What the rest of Portcullis tells the metrics, as one injected object. With METRICS_PORT
 * unset the object is {@link noMetrics}: every call is an empty function and the relay's
 * tallies are plain numbers nobody reads, so counting costs nothing measurable when off.
 *
 * SECURITY.md I44: no method takes a session id, an account id, an address or a path the
 * client chose. Every label value is one of the fixed sets below, or a name the operator
 * configured (an upstream prefix, a route); anything else is counted as "other".
 */
export interface Metrics {
  /** False for {@link noMetrics}: callers may skip work done only to be counted (timing). */
  readonly enabled: boolean;
  /**
   * Plain tallies the relay adds to where it already parses frames (a field increment, no
   * call): read when Prometheus scrapes. `toBackend` is what browsers sent, `toClient`
   * what backends sent.
   */
  readonly relayed: { readonly toBackend: RelayTally; readonly toClient: RelayTally };
  /** One upgrade decided: "accepted", or the refusal's error code. */
  upgrade(outcome: string): void;
  /** A relay started on `route` ("/ws"), and later ended. */
  socketOpened(route: string): void;
  socketClosed(route: string): void;
  /** The close code the browser's connection ended with (the one on its ws.closed line). */
  relayClosed(code: number): void;
  sessionCreated(): void;
  /** One /api request answered: the upstream's configured prefix (null before one matched). */
  apiRequest(request: APIRequest): void;
  tokenRefresh(outcome: RefreshOutcome): void;
  /** A rate limit refused something; `limiter` is the limiter's own name. */
  rateLimited(limiter: string): void;
}

export interface RelayTally {
  /** Whole data messages (the frame with FIN set). */
  messages: number;
  /** Bytes read from the sender, frame headers and control frames included. */
  bytes: number;
}

export interface APIRequest {
  upstream: string | null;
  method: string;
  status: number;
  seconds: number;
}

/**
 * How a provider refresh ended: a new token; the provider refused the grant (the session
 * ends); the provider failed or was unreachable (the session stays); nothing to refresh
 * with; another writer refreshed first.
 */
export type RefreshOutcome = "succeeded" | "refused" | "failed" | "no_refresh_token" | "superseded";

/** The gate's refusal codes (CONTRACT.md error codes), the only values of the outcome label. */
export const UPGRADE_OUTCOMES = [
  "accepted",
  "not_found",
  "bad_path",
  "bad_upgrade",
  "method_not_allowed",
  "rate_limited",
  "origin",
  "no_session",
  "bad_ticket",
  "wrong_session",
  "too_many_sockets",
  "backend_unavailable",
  "busy",
  "unavailable",
  "client_gone",
  "other",
] as const;

/** Codes a relay ends with that have a name of their own; the rest are "backend" (3000–4999) or "other". */
export const CLOSE_CODES = ["1000", "1001", "1002", "1003", "1006", "1007", "1008", "1009", "1010", "1011", "1012", "1013", "1014", "4401"] as const;

export const LIMITERS = ["auth", "login", "ticket", "api", "polling", "upgrade", "ws_messages", "other"] as const;

export const API_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"] as const;

export const REFRESH_OUTCOMES: readonly RefreshOutcome[] = ["succeeded", "refused", "failed", "no_refresh_token", "superseded"];

function ignore(): void {
  // Metrics are off.
}

/** Metrics off: nothing is counted, and nothing costs more than an empty call. */
export const noMetrics: Metrics = {
  enabled: false,
  relayed: { toBackend: { messages: 0, bytes: 0 }, toClient: { messages: 0, bytes: 0 } },
  upgrade: ignore,
  socketOpened: ignore,
  socketClosed: ignore,
  relayClosed: ignore,
  sessionCreated: ignore,
  apiRequest: ignore,
  tokenRefresh: ignore,
  rateLimited: ignore,
};

/** `value` if it is one of `allowed`, else "other": a label never takes a value from outside its set. */
export function bounded<T extends string>(allowed: readonly T[], value: string): T | "other" {
  return isOneOf(allowed, value) ? value : "other";
}

function isOneOf<T extends string>(allowed: readonly T[], value: string): value is T {
  return allowed.some((item) => item === value);
}

/** A close code as a label: its number when known, "backend" for an application's own code, else "other". */
export function closeCodeLabel(code: number): string {
  const text = String(code);
  if (isOneOf(CLOSE_CODES, text)) return text;
  // RFC 6455 7.4.2: 3000–4999 are the application's; the backend's own codes pass through.
  return code >= 3000 && code <= 4999 ? "backend" : "other";
}

/** "2xx" … "5xx"; anything outside 100–599 is "other". */
export function statusClass(status: number): string {
  return status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : "other";
}

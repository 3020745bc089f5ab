/**
 * The messages the side-by-side benchmark's processes exchange over IPC, and the narrowing
 * of what arrives. IPC payloads come from our own children, but a child that crashed
 * half-way or an older file can still send something else, so every message arrives as
 * `unknown` and is narrowed field by field like any other foreign input.
 */

export type TargetName = "direct" | "nginx" | "portcullis";
export const TARGET_NAMES: readonly TargetName[] = ["direct", "nginx", "portcullis"];

export function isTargetName(value: unknown): value is TargetName {
  return value === "direct" || value === "nginx" || value === "portcullis";
}

/** How the load generator reaches one target. Only loopback addresses. */
export interface Target {
  name: TargetName;
  /** `ws://127.0.0.1:port/ws` or `ws://localhost:port/ws` */
  wsURL: string;
  /** `http://host:port`, the base of `/api/game/profile`. */
  httpURL: string;
}

/**
 * What the load generator needs to pass each target's gate. Portcullis: a session cookie,
 * and a ticket per socket. Direct and nginx: the identity assertion the game backend
 * requires, which the client signs itself with the key Portcullis signs with, so the same
 * backend verifies the same kind of token whichever way the socket arrived.
 */
export interface Credentials {
  /** PUBLIC_ORIGIN: the Origin header every Portcullis request carries. */
  portcullisOrigin: string;
  /**
   * Where ticket requests go when not to `portcullisOrigin` itself: one node of a cluster,
   * reached directly (the store comparison), while its PUBLIC_ORIGIN is nginx's.
   */
  authURL?: string;
  sessionToken: string;
  /**
   * Several players' sessions: a scenario's parallel chain i acts as player i (modulo their
   * number). Without it every chain is the one `sessionToken`.
   */
  sessionTokens?: string[];
  /** base64 of the 32-byte Ed25519 seed shared with Portcullis (`ASSERTION_SIGNING_KEYS`). */
  signingSeed: string;
  signingKeyId: string;
  /** The assertion claims Portcullis itself would send for this session. */
  sub: string;
  sid: string;
  name: string;
  audience: string;
}

export type Scenario =
  | { kind: "echo"; target: Target; connections: number; size: number; window: number; warmupMs: number; ms: number }
  | { kind: "stream"; target: Target; connections: number; size: number; warmupMs: number; ms: number; statsURL: string }
  | { kind: "latency"; target: Target; connections: number; totalRate: number; warmupMs: number; ms: number }
  | { kind: "setup"; target: Target; parallel: number; ms: number }
  | { kind: "http"; target: Target; concurrency: number; path: string; ms: number }
  | { kind: "hold"; target: Target; connections: number }
  | { kind: "release" };

export interface Result {
  /** Messages, upgrades or requests per second. */
  perSecond?: number;
  p50?: number;
  p99?: number;
  p999?: number;
  /** How many operations or samples the figure rests on. */
  count: number;
  errors: number;
  /** The first error's text, for the log. */
  firstError?: string;
}

export type LoadgenRequest = { id: number; type: "init"; credentials: Credentials } | { id: number; type: "run"; scenario: Scenario };

export type LoadgenReply = { id: number; ok: true; result: Result } | { id: number; ok: false; error: string };

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function readString(value: unknown, key: string): string | null {
  if (!isRecord(value)) return null;
  const field = value[key];
  return typeof field === "string" ? field : null;
}

export function readNumber(value: unknown, key: string): number | null {
  if (!isRecord(value)) return null;
  const field = value[key];
  return typeof field === "number" && Number.isFinite(field) ? field : null;
}

/** A {@link Result} from the load generator, or null when the reply is not one. */
export function parseResult(value: unknown): Result | null {
  if (!isRecord(value)) return null;
  const count = readNumber(value, "count");
  const errors = readNumber(value, "errors");
  if (count === null || errors === null) return null;
  const result: Result = { count, errors };
  for (const key of ["perSecond", "p50", "p99", "p999"] as const) {
    const figure = readNumber(value, key);
    if (figure !== null) result[key] = figure;
  }
  const firstError = readString(value, "firstError");
  if (firstError !== null) result.firstError = firstError;
  return result;
}

/** A {@link LoadgenReply}, or null when the message is not one. */
export function parseReply(value: unknown): LoadgenReply | null {
  const id = readNumber(value, "id");
  if (id === null || !isRecord(value)) return null;
  if (value.ok === true) {
    const result = parseResult(value.result);
    return result === null ? null : { id, ok: true, result };
  }
  if (value.ok === false) return { id, ok: false, error: readString(value, "error") ?? "unknown error" };
  return null;
}

const GENEROUS = "100000/s,1000000";

/**
 * Limits lifted for every Portcullis the bench starts: one load generator stands for
 * thousands of players from one address, in a handful of sessions, and would otherwise be
 * throttled by the very limits that protect a real deployment (per session, per address,
 * per second). What the bench measures is the proxy's cost, not its refusals.
 */
export const LOADGEN_LIMITS: Readonly<Record<string, string>> = {
  WS_MAX_SOCKETS_PER_SESSION: "1000000",
  WS_MAX_MESSAGES_PER_SECOND: "100000000",
  MAX_CONNECTIONS: "1000000",
  MAX_CONNECTIONS_PER_IP: "1000000",
  RATE_LIMIT_AUTH: GENEROUS,
  RATE_LIMIT_LOGIN: GENEROUS,
  RATE_LIMIT_TICKET: GENEROUS,
  RATE_LIMIT_UPGRADE: GENEROUS,
  RATE_LIMIT_API: GENEROUS,
};

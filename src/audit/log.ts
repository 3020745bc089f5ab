import type { Writable } from "node:stream";
import type { Clock } from "../clock";
import { hmacSHA256 } from "../crypto/hash";
import { addressGroup } from "../http/client-ip";
import { RecentMap } from "../recent-map";
import { RefusalAggregator } from "./aggregate";
import { DEFAULT_MAX_QUEUED_BYTES, DropReporter, FileDestination, StreamDestination, type AuditDestination } from "./destination";

/** Session references kept computed; the oldest go first. */
const SESSION_REFS_KEPT = 10_000;

/** The stable audit vocabulary, documented in the README. */
export type AuditEvent =
  | "login.started"
  | "login.success"
  | "login.failure"
  | "session.created"
  | "session.refreshed"
  | "session.expired"
  | "session.revoked"
  | "session.logged_out"
  | "token.refresh.succeeded"
  | "token.refresh.failed"
  | "token.revoke.failed"
  | "csrf.refused"
  | "ws.ticket.issued"
  | "ws.upgrade.accepted"
  | "ws.upgrade.refused"
  | "ws.closed"
  | "ratelimit.hit"
  | "crypto.decrypt.failed"
  | "upstream.failed"
  | "request.refused"
  | "server.started"
  | "server.stopping"
  | "logout.backchannel.accepted"
  | "logout.backchannel.refused"
  | "logout.provider.requested"
  | "operator.sessions.listed"
  | "operator.sessions.ended"
  | "operator.account.blocked"
  | "operator.account.unblocked";

/** Fields that may be logged. Anything secret (tokens, cookies, codes, state) has no field. */
export interface AuditFields {
  /** A session id is replaced by its keyed hash before it is written. */
  sessionId?: string;
  accountId?: string;
  provider?: string;
  reason?: string;
  code?: number;
  status?: number;
  ip?: string;
  path?: string;
  method?: string;
  origin?: string;
  upstream?: string;
  detail?: string;
  count?: number;
  /** Who ran an operator command (the OS user, or its --operator flag). */
  operator?: string;
  /** The X-Request-Id of the request or upgrade that caused the event (http/request-id.ts). */
  requestId?: string;
}

export interface AuditLog {
  write(event: AuditEvent, fields?: AuditFields): void;
  /** The keyed hash that stands for a session id in the log. */
  sessionRef(sessionId: string): string;
  /** Writes the pending aggregate summaries and waits until the destinations have taken every line. */
  flush(): Promise<void>;
  /** Opens AUDIT_LOG_PATH again (SIGHUP, after logrotate moved the file away). */
  reopen(): void;
  /** Flushes, stops the timer and closes the file. Lines written afterwards are dropped. */
  close(): Promise<void>;
  /** Lines dropped so far, by destination ("stdout", the file's path). */
  dropped(): Map<string, number>;
}

export interface AuditLogOptions {
  /** Where the JSON lines go; stdout by default. */
  stream?: Writable;
  /** Also append to this file (AUDIT_LOG_PATH). */
  filePath?: string | null;
  /** Rotate the file to `<path>.1` before it grows past this (AUDIT_LOG_MAX_BYTES); null: never. */
  maxFileBytes?: number | null;
  /** Key for the session-id hash, so the log can correlate a session without naming it. */
  hashKey: Uint8Array;
  clock: Clock;
  /** Where "lines dropped" notices go; stderr by default. */
  notices?: Writable;
  /** Aggregation of unauthenticated refusals (60 s, 10,000 keys by default). */
  aggregate?: { intervalMs: number; maxKeys: number };
  /** What each destination may hold in memory before it drops lines (1 MiB). */
  maxQueuedBytes?: number;
}

const MAX_FIELD_LENGTH = 200;
// Ends aggregation windows and repeats drop notices while nothing is being written.
const TIMER_INTERVAL_MS = 1_000;
/**
 * Refusals that a client without a session can cause at will: audited in aggregate.
 * (`login.failure` stays one line each: every login route is behind RATE_LIMIT_LOGIN, keyed
 * per address and IPv6 /64, so its volume is bounded, and each failed login is evidence a
 * reviewer wants whole.)
 */
const AGGREGATED_EVENTS: ReadonlySet<AuditEvent> = new Set([
  "csrf.refused",
  "ratelimit.hit",
  "ws.upgrade.refused",
  "request.refused",
  "logout.backchannel.refused",
]);
// JSON.stringify escapes U+0000–U+001F (CR and LF among them) but not DEL, the C1 controls
// (U+0085 NEL) or U+2028/U+2029, which some log viewers and JavaScript-era tools take as
// line breaks. They can only occur inside strings, so escaping them keeps the JSON valid.
const LINE_BREAKERS = /[\u007f-\u009f\u2028\u2029]/g;

/**
 * One JSON line per security event (SECURITY.md G32–33, ASVS 16.2): UTC time, the event
 * name, and only the fields of {@link AuditFields}. Every character that could end a line
 * is escaped, so a hostile header cannot forge a log line (ASVS 16.2.5). The log fails soft
 * (SECURITY.md I38): its destinations drop and count lines rather than block, throw or grow.
 */
export function createAuditLog(options: AuditLogOptions): AuditLog {
  const { clock } = options;
  const drops = new DropReporter(options.notices ?? process.stderr, clock);
  const maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
  const destinations: AuditDestination[] = [new StreamDestination(options.stream ?? process.stdout, "stdout", drops, maxQueuedBytes)];
  if (options.filePath) {
    destinations.push(new FileDestination(options.filePath, drops, { maxBytes: options.maxFileBytes ?? null, maxQueuedBytes }));
  }
  const aggregator = new RefusalAggregator(
    (summary) => emit({ event: summary.event, ...key(summary), count: summary.count, since: isoTime(summary.since) }),
    options.aggregate,
  );
  const timer = setInterval(() => {
    aggregator.sweep(clock.now());
    drops.tick();
  }, TIMER_INTERVAL_MS);
  timer.unref();

  function emit(record: Record<string, unknown>): void {
    const line = `${JSON.stringify({ level: "info", time: isoTime(clock.now()), ...record }).replace(LINE_BREAKERS, escapeChar)}\n`;
    for (const destination of destinations) destination.write(line);
  }

  // A session's reference is the same on every line: computed once per session while it is
  // among the most recent (an HMAC per line was a few percent of a connection setup, issue 14).
  const sessionRefs = new RecentMap<string, string>(SESSION_REFS_KEPT);
  function sessionRef(sessionId: string): string {
    const known = sessionRefs.get(sessionId);
    if (known !== undefined) return known;
    const ref = hmacSHA256(options.hashKey, sessionId).subarray(0, 12).toString("base64url");
    sessionRefs.set(sessionId, ref);
    return ref;
  }

  async function flush(): Promise<void> {
    aggregator.flush();
    await Promise.all(destinations.map((destination) => destination.flush()));
    drops.tick({ force: true });
  }

  return {
    write(event, fields = {}) {
      const { sessionId, ...rest } = fields;
      // Only refusals of a client nobody knows: with a session or an account, each one counts.
      const anonymous = sessionId === undefined && fields.accountId === undefined;
      if (anonymous && AGGREGATED_EVENTS.has(event) && !aggregator.admit({ event, ...key(fields) }, clock.now())) {
        return;
      }
      const record: Record<string, unknown> = { event };
      if (sessionId !== undefined) {
        record.session = sessionRef(sessionId);
      }
      for (const [name, value] of Object.entries(rest)) {
        record[name] = typeof value === "string" ? truncate(value) : value;
      }
      emit(record);
    },
    sessionRef,
    flush,
    reopen() {
      for (const destination of destinations) destination.reopen();
    },
    async close() {
      clearInterval(timer);
      await flush();
      await Promise.all(destinations.map((destination) => destination.close()));
    },
    dropped() {
      return new Map(drops.totals);
    },
  };
}

/** The aggregation key's fields, truncated like every other field. */
function key(fields: { ip?: string; reason?: string; status?: number }): { ip?: string; reason?: string; status?: number } {
  return {
    // An IPv6 /64 is one client here too, or rotating addresses would write one line each.
    ...(fields.ip === undefined ? {} : { ip: truncate(addressGroup(fields.ip)) }),
    ...(fields.reason === undefined ? {} : { reason: truncate(fields.reason) }),
    // Stryker: equivalent (`false`) — `status: undefined` is dropped by JSON.stringify and `?? null`.
    ...(fields.status === undefined ? {} : { status: fields.status }),
  };
}

function truncate(value: string): string {
  return value.length > MAX_FIELD_LENGTH ? `${value.slice(0, MAX_FIELD_LENGTH)}…` : value;
}

function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

function escapeChar(char: string): string {
  return `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

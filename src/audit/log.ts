import type { Writable } from "node:stream";
import pino, { type Logger } from "pino";
import { hmacSHA256 } from "../crypto/hash";
import type { Clock } from "../clock";

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
  | "server.stopping";

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
}

export interface AuditLog {
  write(event: AuditEvent, fields?: AuditFields): void;
  /** The keyed hash that stands for a session id in the log. */
  sessionRef(sessionId: string): string;
  flush(): void;
}

export interface AuditLogOptions {
  /** Where the JSON lines go; stdout by default. */
  stream?: Writable;
  /** Also append to this file (AUDIT_LOG_PATH). */
  filePath?: string | null;
  /** Key for the session-id hash, so the log can correlate a session without naming it. */
  hashKey: Uint8Array;
  clock: Clock;
}

const MAX_FIELD_LENGTH = 200;

/**
 * One JSON line per security event (SECURITY.md G32–33, ASVS 16.2): UTC time, the event
 * name, and only the fields of {@link AuditFields}. JSON encoding escapes CR and LF, so a
 * hostile header cannot forge a log line (ASVS 16.2.5).
 */
export function createAuditLog(options: AuditLogOptions): AuditLog {
  const streams: pino.StreamEntry[] = [{ stream: options.stream ?? pino.destination({ dest: 1, sync: false }) }];
  if (options.filePath) {
    streams.push({ stream: pino.destination({ dest: options.filePath, sync: false, mkdir: true }) });
  }
  const logger: Logger = pino(
    {
      base: null,
      messageKey: "message",
      timestamp: () => `,"time":"${new Date(options.clock.now()).toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.multistream(streams),
  );

  function sessionRef(sessionId: string): string {
    return hmacSHA256(options.hashKey, sessionId).subarray(0, 12).toString("base64url");
  }

  return {
    write(event, fields = {}) {
      const { sessionId, ...rest } = fields;
      const record: Record<string, unknown> = { event };
      if (sessionId !== undefined) {
        record.session = sessionRef(sessionId);
      }
      for (const [key, value] of Object.entries(rest)) {
        record[key] = typeof value === "string" && value.length > MAX_FIELD_LENGTH ? `${value.slice(0, MAX_FIELD_LENGTH)}…` : value;
      }
      logger.info(record);
    },
    sessionRef,
    flush() {
      logger.flush();
    },
  };
}

import { EventEmitter } from "node:events";
import { sql, type SQL } from "drizzle-orm";
import postgres, { type Sql } from "postgres";
import type { SessionEnded, SessionEndReason } from "../../auth/session-events";
import type { RandomBytes } from "../../clock";
import { randomToken } from "../../crypto/random";
import type { SessionEventBus } from "../types";

/** The one channel every node listens on. */
export const SESSION_ENDED_CHANNEL = "portcullis_session_ended";
/** The operator's command says it wrote `operator_actions` rows (no payload: the rows are the message). */
export const OPERATOR_ACTIONS_CHANNEL = "portcullis_operator_actions";

const REASONS: ReadonlySet<string> = new Set<SessionEndReason>([
  "logout",
  "revoked",
  "expired",
  "refresh_refused",
  "replaced",
  "decrypt_failed",
  "backchannel_logout",
  "operator",
]);
const ID = /^[a-z2-7]{1,64}$/;

export interface Backoff {
  /** The first wait after the listening connection is lost. */
  initialMs: number;
  /** The wait doubles up to this. */
  maxMs: number;
}

export interface PostgresEventBusOptions {
  url: string;
  /** The pool NOTIFY goes through. */
  sql: Sql;
  randomBytes: RandomBytes;
  backoff?: Backoff;
  /** Told each time the listening connection is lost or a reconnect fails (for the operator's log). */
  onListenerError?: (error: unknown) => void;
}

/**
 * Session-ended events across nodes: `pg_notify` on one channel, a dedicated connection on
 * each node LISTENing to it. The payload is the session id, account id, reason and the
 * sending node's id, nothing secret (NOTIFY payloads are visible to every role that can
 * LISTEN). This node's subscribers hear an event at once, not through the round trip, and
 * skip its echo.
 *
 * NOTIFY is fire and forget: a node whose listening connection drops misses what is sent
 * meanwhile. So the listener reconnects with doubling backoff and, once back, emits
 * `resync`: the registry then rechecks every live socket's session against the database
 * (issue 13: a missed notification must not leave a revoked socket open).
 */
export class PostgresEventBus implements SessionEventBus {
  readonly nodeId: string;
  private readonly emitter = new EventEmitter();
  private readonly backoff: Backoff;
  private listener: Sql | null = null;
  private everConnected = false;
  private failures = 0;
  private retry: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly options: PostgresEventBusOptions) {
    this.nodeId = randomToken(options.randomBytes, 10);
    this.backoff = options.backoff ?? { initialMs: 100, maxMs: 5_000 };
    // Every live socket subscribes through one registry; more than ten listeners is not a leak here.
    this.emitter.setMaxListeners(0);
  }

  get connected(): boolean {
    return this.listener !== null;
  }

  /** Opens the listening connection; rejects when the first attempt fails (the node should not start). */
  async start(): Promise<void> {
    await this.listen();
  }

  /**
   * For an end no statement of this node notified (the operator's command deleted the row):
   * this node's subscribers at once, then a NOTIFY of its own. Sessions this node ends are
   * notified by the DELETE itself ({@link notifyEnded}) and delivered here by {@link deliverLocally}.
   */
  async publish(event: SessionEnded): Promise<void> {
    this.deliverLocally(event);
    const payload = JSON.stringify({ node: this.nodeId, sessionId: event.sessionId, accountId: event.accountId, reason: event.reason });
    await this.options.sql`SELECT pg_notify(${SESSION_ENDED_CHANNEL}, ${payload})`;
  }

  /**
   * The `pg_notify` call for a statement that ends sessions, evaluated once per ended row
   * (`ended` names the row's columns, `reason` is bound as a parameter): NOTIFY is
   * transactional, so the other nodes hear of exactly the ends that commit, and a node that
   * dies after the commit has already told them (issue 13). Same payload as {@link publish}.
   */
  notifyEnded(ended: { sessionId: SQL; accountId: SQL }, reason: SessionEndReason): SQL {
    return sql`pg_notify(${SESSION_ENDED_CHANNEL}, json_build_object('node', ${this.nodeId}::text, 'sessionId', ${ended.sessionId}, 'accountId', ${ended.accountId}, 'reason', ${reason}::text)::text)`;
  }

  /** This node's subscribers only: the other nodes were told by the statement that ended the session. */
  deliverLocally(event: SessionEnded): void {
    this.emitter.emit("ended", event);
  }

  subscribe(listener: (event: SessionEnded) => void): () => void {
    this.emitter.on("ended", listener);
    return () => this.emitter.off("ended", listener);
  }

  onResync(listener: () => void): () => void {
    this.emitter.on("resync", listener);
    return () => this.emitter.off("resync", listener);
  }

  /** Called on each NOTIFY of the operator's command (and after a resync: one may have been missed). */
  onOperatorActions(listener: () => void): () => void {
    this.emitter.on("operator", listener);
    this.emitter.on("resync", listener);
    return () => {
      this.emitter.off("operator", listener);
      this.emitter.off("resync", listener);
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retry !== null) clearTimeout(this.retry);
    const listener = this.listener;
    this.listener = null;
    await listener?.end({ timeout: 0 });
  }

  private async listen(): Promise<void> {
    // `onnotify` is the connection option postgres.js's own `sql.listen` is built on, missing
    // from its typings. `sql.listen` itself will not do here: after a lost connection it
    // re-listens once and, if the database is still away, gives up without a word.
    const options: postgres.Options<Record<string, never>> & { onnotify: (channel: string, payload: string) => void } = {
      max: 1,
      // The LISTEN belongs to this one connection: postgres.js must never retire it on its own.
      idle_timeout: 0,
      max_lifetime: null,
      connect_timeout: 5,
      connection: { application_name: `portcullis-listener-${this.nodeId}` },
      onnotice: () => {},
      onnotify: (channel, payload) => this.received(channel, payload),
      onclose: () => this.lost(client),
    };
    const client: Sql = postgres(this.options.url, options);
    try {
      await client.unsafe(`LISTEN ${SESSION_ENDED_CHANNEL}`);
      await client.unsafe(`LISTEN ${OPERATOR_ACTIONS_CHANNEL}`);
    } catch (error) {
      await client.end({ timeout: 0 });
      throw error;
    }
    if (this.closed) {
      await client.end({ timeout: 0 });
      return;
    }
    this.listener = client;
    this.failures = 0;
    if (this.everConnected) this.emitter.emit("resync");
    this.everConnected = true;
  }

  private lost(client: Sql): void {
    if (this.listener !== client) return;
    this.listener = null;
    void client.end({ timeout: 0 });
    this.options.onListenerError?.(new Error("the session-events listening connection was lost"));
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.retry !== null) return;
    const delay = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** this.failures);
    this.failures += 1;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.listen().catch((error: unknown) => {
        this.options.onListenerError?.(error);
        this.scheduleReconnect();
      });
    }, delay);
    this.retry.unref();
  }

  /** Another node's notification: foreign data, checked field by field before anyone hears it. */
  private received(channel: string, payload: string): void {
    if (channel === OPERATOR_ACTIONS_CHANNEL) {
      this.emitter.emit("operator");
      return;
    }
    if (channel !== SESSION_ENDED_CHANNEL) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(payload);
    } catch {
      return;
    }
    if (typeof parsed !== "object" || parsed === null) return;
    const fields = new Map<string, unknown>(Object.entries(parsed));
    const node = fields.get("node");
    const sessionId = fields.get("sessionId");
    const accountId = fields.get("accountId");
    const reason = fields.get("reason");
    if (node === this.nodeId) return; // our own, already delivered by publish
    if (typeof sessionId !== "string" || !ID.test(sessionId) || typeof accountId !== "string" || !ID.test(accountId)) return;
    if (typeof reason !== "string" || !isReason(reason)) return;
    this.emitter.emit("ended", { sessionId, accountId, reason });
  }
}

function isReason(value: string): value is SessionEndReason {
  return REASONS.has(value);
}

import type { SessionStore } from "../auth/session";
import type { SessionEvents } from "../auth/session-events";

/** What the registry needs of a relayed connection. */
export interface LiveConnection {
  readonly sessionId: string;
  readonly accountId: string;
  /** Closes both sides with `code`; idempotent. */
  close(code: number, reason: string): void;
  /** One heartbeat tick: ping both sides, terminate if the last ping went unanswered. */
  heartbeat(): void;
  /** Drops both sides at once. */
  terminate(): void;
}

export const SESSION_ENDED = 4401;
export const GOING_AWAY = 1001;

/**
 * Every relayed socket, by session and by account. It learns of ended sessions only through
 * the {@link SessionEvents} bus, never from the auth routes, so a multi-node deployment can
 * swap the bus for one that fans out without touching either side.
 */
export class SocketRegistry {
  private readonly bySession = new Map<string, Set<LiveConnection>>();
  private readonly unsubscribe: () => void;
  private timers: NodeJS.Timeout[] = [];

  constructor(
    events: SessionEvents,
    private readonly sessions: SessionStore,
  ) {
    this.unsubscribe = events.onEnded((event) => this.closeSession(event.sessionId, SESSION_ENDED, "session ended"));
  }

  /**
   * Starts the periodic work: a heartbeat (RFC 6455 5.5.2 ping; a missed pong terminates)
   * and the expiry recheck (ASVS 7.4.1: a session that expires while its socket is open
   * must not keep the socket).
   */
  start(options: { heartbeatMs: number; recheckMs: number }): void {
    this.stop();
    const heartbeat = setInterval(() => this.heartbeat(), options.heartbeatMs);
    const recheck = setInterval(() => this.recheck(), options.recheckMs);
    heartbeat.unref();
    recheck.unref();
    this.timers = [heartbeat, recheck];
  }

  stop(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
  }

  add(connection: LiveConnection): void {
    let set = this.bySession.get(connection.sessionId);
    if (set === undefined) {
      set = new Set();
      this.bySession.set(connection.sessionId, set);
    }
    set.add(connection);
  }

  remove(connection: LiveConnection): void {
    const set = this.bySession.get(connection.sessionId);
    if (set === undefined) return;
    set.delete(connection);
    if (set.size === 0) this.bySession.delete(connection.sessionId);
  }

  countForSession(sessionId: string): number {
    return this.bySession.get(sessionId)?.size ?? 0;
  }

  countForAccount(accountId: string): number {
    let count = 0;
    for (const set of this.bySession.values()) {
      for (const connection of set) if (connection.accountId === accountId) count += 1;
    }
    return count;
  }

  get size(): number {
    let count = 0;
    for (const set of this.bySession.values()) count += set.size;
    return count;
  }

  closeSession(sessionId: string, code: number, reason: string): void {
    const set = this.bySession.get(sessionId);
    if (set === undefined) return;
    for (const connection of [...set]) connection.close(code, reason);
  }

  /** Closes every socket of a session that is no longer live (expired, or deleted elsewhere). */
  recheck(): void {
    for (const sessionId of [...this.bySession.keys()]) {
      if (this.sessions.findLive(sessionId) === null) {
        this.closeSession(sessionId, SESSION_ENDED, "session ended");
      }
    }
  }

  heartbeat(): void {
    for (const set of this.bySession.values()) {
      for (const connection of set) connection.heartbeat();
    }
  }

  closeAll(code: number, reason: string): void {
    for (const set of [...this.bySession.values()]) {
      for (const connection of [...set]) connection.close(code, reason);
    }
  }

  terminateAll(): void {
    for (const set of [...this.bySession.values()]) {
      for (const connection of [...set]) connection.terminate();
    }
  }

  dispose(): void {
    this.stop();
    this.unsubscribe();
  }
}

import type { SessionEventBus, SessionRepository, SocketSlots } from "../store/types";

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
  /** Settles once both sides have closed. */
  readonly ended: Promise<void>;
  /** When the browser last sent a message (ms); 0 before the first. */
  readonly lastMessageAt: number;
}

export const SESSION_ENDED = 4401;
export const GOING_AWAY = 1001;
const SHUTDOWN_GRACE_MS = 1_000;
/**
 * The heartbeat is spread over this many ticks of its interval: each socket is still pinged
 * once per interval, but a tenth of them per tick, so 10,000 sockets never cost one stall
 * of 20,000 pings (both sides) that every message then waits behind (issue 14).
 */
export const HEARTBEAT_SLICES = 10;

/**
 * Every relayed socket of this node, by session and by account. It learns of ended sessions
 * only through the store's session-ended bus (STYLE.md 14), never from the auth routes:
 * this node's ends at once, other nodes' through the bus. When the bus was cut off from
 * the other nodes and is back, events may have been missed: every live socket's session
 * is rechecked against the database then (issue 13).
 */
export class SocketRegistry<C extends LiveConnection = LiveConnection> {
  private readonly bySession = new Map<string, Set<C>>();
  private readonly byAccount = new Map<string, Set<C>>();
  private readonly unsubscribe: () => void;
  private timers: NodeJS.Timeout[] = [];
  /** Each connection's heartbeat slice, dealt round-robin as they arrive. */
  private readonly slices = new WeakMap<C, number>();
  private nextSlice = 0;
  private heartbeatTick = 0;
  private rechecking: Promise<void> | null = null;
  private again: Promise<void> | null = null;

  constructor(
    events: SessionEventBus,
    private readonly sessions: SessionRepository,
    /** Renewed on every recheck, so this node's socket slots do not lapse while it lives. */
    private readonly slots: SocketSlots | null = null,
  ) {
    const ended = events.subscribe((event) => this.closeSession(event.sessionId, SESSION_ENDED, "session ended"));
    const resynced = events.onResync(() => void this.recheck());
    this.unsubscribe = () => {
      ended();
      resynced();
    };
  }

  /**
   * Starts the periodic work: a heartbeat (RFC 6455 5.5.2 ping; a missed pong terminates)
   * and the expiry recheck (ASVS 7.4.1: a session that expires while its socket is open
   * must not keep the socket, even though nothing else touches the session meanwhile).
   * Each socket is pinged once per `heartbeatMs`, in one of {@link HEARTBEAT_SLICES} ticks.
   */
  start(options: { heartbeatMs: number; recheckMs: number }): void {
    this.stop();
    const heartbeat = setInterval(() => this.heartbeatSlice(), options.heartbeatMs / HEARTBEAT_SLICES);
    const recheck = setInterval(() => void this.recheck(), options.recheckMs);
    heartbeat.unref();
    recheck.unref();
    this.timers = [heartbeat, recheck];
  }

  stop(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
  }

  add(connection: C): void {
    this.slices.set(connection, this.nextSlice);
    this.nextSlice = (this.nextSlice + 1) % HEARTBEAT_SLICES;
    addTo(this.bySession, connection.sessionId, connection);
    addTo(this.byAccount, connection.accountId, connection);
  }

  remove(connection: C): void {
    removeFrom(this.bySession, connection.sessionId, connection);
    removeFrom(this.byAccount, connection.accountId, connection);
  }

  countForSession(sessionId: string): number {
    return this.bySession.get(sessionId)?.size ?? 0;
  }

  countForAccount(accountId: string): number {
    return this.byAccount.get(accountId)?.size ?? 0;
  }

  /** The live connections of one session (a copy: closing them while iterating is safe). */
  connectionsOf(sessionId: string): C[] {
    return [...(this.bySession.get(sessionId) ?? [])];
  }

  get size(): number {
    let count = 0;
    for (const set of this.bySession.values()) count += set.size;
    return count;
  }

  closeSession(sessionId: string, code: number, reason: string): void {
    for (const connection of this.connectionsOf(sessionId)) connection.close(code, reason);
  }

  /** Closes every socket of one account, across its sessions (an account disabled everywhere). */
  closeAccount(accountId: string, code: number, reason: string): void {
    for (const connection of [...(this.byAccount.get(accountId) ?? [])]) connection.close(code, reason);
  }

  /**
   * Closes every socket of a session that is no longer live (expired, or deleted elsewhere).
   * One round at a time, never two overlapping: a call while one runs gets one more round
   * right after it (a resync arriving mid-round may mean the running round read before the
   * reconnect), and further calls meanwhile share that one. While the database cannot
   * answer, the round stops and sockets stay open: a lost connection proves nothing about
   * a session; the next round (the next tick, or the resync when the bus is back) decides.
   */
  recheck(): Promise<void> {
    if (this.rechecking === null) {
      this.rechecking = this.recheckRound().finally(() => {
        this.rechecking = null;
      });
      return this.rechecking;
    }
    this.again ??= this.rechecking.then(() => {
      this.again = null;
      return this.recheck();
    });
    return this.again;
  }

  private async recheckRound(): Promise<void> {
    try {
      await this.slots?.renew();
      for (const [sessionId, connections] of [...this.bySession.entries()]) {
        // Playing is activity: a player whose only traffic is the game socket must not hit
        // the idle timeout. The absolute timeout still ends the session whatever they do.
        let latest = 0;
        for (const connection of connections) latest = Math.max(latest, connection.lastMessageAt);
        // Stryker: equivalent (`true`, `>= 0`) — touch(id, 0) updates nothing: both stores
        // only move last_seen_at forward, and 0 is never a minute past it.
        if (latest > 0) await this.sessions.touch(sessionId, latest);
        if ((await this.sessions.findLive(sessionId)) === null) {
          this.closeSession(sessionId, SESSION_ENDED, "session ended");
        }
      }
    } catch {
      // The database is unreachable: keep every socket, try again next round.
    }
  }

  /** A heartbeat for every socket at once. */
  heartbeat(): void {
    for (const set of this.bySession.values()) {
      for (const connection of set) connection.heartbeat();
    }
  }

  /** One tick of the spread heartbeat: the sockets dealt this tick's slice. */
  private heartbeatSlice(): void {
    const slice = this.heartbeatTick;
    this.heartbeatTick = (slice + 1) % HEARTBEAT_SLICES;
    for (const set of this.bySession.values()) {
      for (const connection of set) if (this.slices.get(connection) === slice) connection.heartbeat();
    }
  }

  /**
   * Closes every socket with `code` (1001 at shutdown), waits up to `graceMs` for the
   * closing handshakes, then drops whatever did not answer: a peer that never reads would
   * otherwise hold the shutdown for `ws`'s 30 s close timeout.
   */
  async closeAll(code: number, reason: string, options: { graceMs?: number } = {}): Promise<void> {
    const closing = this.all();
    // Stryker: equivalent (`false`) — with no socket, Promise.all([]) wins the race at once.
    if (closing.length === 0) return;
    for (const connection of closing) connection.close(code, reason);
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, options.graceMs ?? SHUTDOWN_GRACE_MS);
    });
    await Promise.race([Promise.all(closing.map((connection) => connection.ended)), grace]);
    clearTimeout(timer);
    for (const connection of closing) connection.terminate();
  }

  terminateAll(): void {
    for (const connection of this.all()) connection.terminate();
  }

  dispose(): void {
    this.stop();
    this.unsubscribe();
  }

  private all(): C[] {
    return [...this.bySession.values()].flatMap((set) => [...set]);
  }
}

function addTo<C>(index: Map<string, Set<C>>, key: string, connection: C): void {
  const set = index.get(key);
  if (set === undefined) {
    index.set(key, new Set([connection]));
  } else {
    set.add(connection);
  }
}

function removeFrom<C>(index: Map<string, Set<C>>, key: string, connection: C): void {
  const set = index.get(key);
  if (set === undefined) return;
  set.delete(connection);
  // Stryker: not security-relevant (`false`) — an emptied set would stay in the index: memory,
  // and one findLive per recheck for its session; counts and closes are the same.
  if (set.size === 0) index.delete(key);
}

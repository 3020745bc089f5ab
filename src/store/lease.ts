import { setTimeout as sleep } from "node:timers/promises";
import type { Clock, RandomBytes } from "../clock";
import { randomToken } from "../crypto/random";
import type { LeaseOutcome, RefreshLease } from "./types";

/** Where leases are kept: a table shared by every node, or a map in one process. */
export interface LeaseTable {
  /** Takes the session's lease for `holder` until `expiresAt` if it is free or expired at `now`; true when taken. */
  tryAcquire(sessionId: string, holder: string, now: number, expiresAt: number): Promise<boolean>;
  /** Gives the lease up, only if `holder` still holds it (not a successor that took it over). */
  release(sessionId: string, holder: string): Promise<void>;
  /** "free" once released; "expired" when its holder let it lapse (died); else "held". */
  state(sessionId: string, now: number): Promise<"free" | "held" | "expired">;
}

export interface LeaseOptions {
  /**
   * How long a lease lives by the injected clock. Longer than a provider refresh can take
   * (the provider client's timeout), or a waiter would take over from a live holder.
   */
  ttlMs: number;
  /** How often a waiter looks at the lease (real time). */
  pollMs: number;
  /** How many looks a waiter takes before it gives up waiting and re-reads what there is. */
  maxPolls: number;
}

export const DEFAULT_LEASE_OPTIONS: LeaseOptions = { ttlMs: 30_000, pollMs: 25, maxPolls: 1_200 };

/**
 * The lease algorithm, the same over either table: take the lease and refresh, or wait
 * until its holder released it and use what it stored. A waiter that finds the lease
 * expired (its holder died mid-refresh) takes it over; of several waiters, the conditional
 * take lets exactly one.
 */
export class PollingRefreshLease implements RefreshLease {
  constructor(
    private readonly table: LeaseTable,
    private readonly clock: Clock,
    private readonly randomBytes: RandomBytes,
    private readonly options: LeaseOptions = DEFAULT_LEASE_OPTIONS,
  ) {}

  async run<T>(sessionId: string, refresh: () => Promise<T>): Promise<LeaseOutcome<T>> {
    const holder = randomToken(this.randomBytes, 16);
    for (let polls = 0; ; ) {
      const now = this.clock.now();
      if (await this.table.tryAcquire(sessionId, holder, now, now + this.options.ttlMs)) {
        try {
          return { ran: true, value: await refresh() };
        } finally {
          // A release the database did not take (it went away meanwhile) costs the waiters
          // at most the lease's TTL; it must not turn a stored refresh into an error.
          await this.table.release(sessionId, holder).catch(() => {});
        }
      }
      // Someone else holds it: wait for it to be released (the holder stored its result) or to lapse.
      for (;;) {
        if (polls >= this.options.maxPolls) return { ran: false };
        polls += 1;
        await sleep(this.options.pollMs);
        const state = await this.table.state(sessionId, this.clock.now());
        if (state === "free") return { ran: false };
        if (state === "expired") break;
      }
    }
  }
}

/** Leases in this process's memory: the SQLite engine is one node. */
export class MemoryLeaseTable implements LeaseTable {
  private readonly leases = new Map<string, { holder: string; expiresAt: number }>();

  tryAcquire(sessionId: string, holder: string, now: number, expiresAt: number): Promise<boolean> {
    const current = this.leases.get(sessionId);
    if (current !== undefined && current.expiresAt > now) return Promise.resolve(false);
    this.leases.set(sessionId, { holder, expiresAt });
    return Promise.resolve(true);
  }

  release(sessionId: string, holder: string): Promise<void> {
    if (this.leases.get(sessionId)?.holder === holder) this.leases.delete(sessionId);
    return Promise.resolve();
  }

  state(sessionId: string, now: number): Promise<"free" | "held" | "expired"> {
    const current = this.leases.get(sessionId);
    return Promise.resolve(current === undefined ? "free" : current.expiresAt > now ? "held" : "expired");
  }
}

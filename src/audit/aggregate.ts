/** What identifies a run of like refusals: the event, the client's IP, the reason and status. */
export interface RefusalKey {
  event: string;
  ip?: string;
  reason?: string;
  status?: number;
}

/** One summary line's worth: `count` more refusals like `key` since `since`. */
export interface RefusalSummary extends RefusalKey {
  count: number;
  since: number;
}

interface Window extends RefusalKey {
  startedAt: number;
  suppressed: number;
}

export const DEFAULT_AGGREGATE_INTERVAL_MS = 60_000;
export const DEFAULT_AGGREGATE_MAX_KEYS = 10_000;

/**
 * Refusals from clients without a session cost an attacker nothing, so they are audited in
 * aggregate (SECURITY.md I38): the first of each (event, IP, reason, status) in an interval
 * is written in full at once, the rest only counted, and one summary line with `count`
 * follows when the interval ends. A flood of 13,000 CSRF-less POSTs is then two lines,
 * not 7.5 MB. The map is bounded: a new key beyond `maxKeys` ends the oldest window early.
 */
export class RefusalAggregator {
  // Insertion order is start order (every window lasts the same interval), so the windows
  // that have ended are always at the head: sweeping costs only what it removes.
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly emit: (summary: RefusalSummary) => void,
    private readonly options: { intervalMs: number; maxKeys: number } = {
      intervalMs: DEFAULT_AGGREGATE_INTERVAL_MS,
      maxKeys: DEFAULT_AGGREGATE_MAX_KEYS,
    },
  ) {}

  /** True when this refusal is the first of its window and must be written now; else it is counted. */
  admit(key: RefusalKey, now: number): boolean {
    this.sweep(now);
    const id = JSON.stringify([key.event, key.ip ?? null, key.reason ?? null, key.status ?? null]);
    const window = this.windows.get(id);
    if (window !== undefined) {
      window.suppressed += 1;
      return false;
    }
    if (this.windows.size >= this.options.maxKeys) {
      this.endOldest();
    }
    this.windows.set(id, { ...key, startedAt: now, suppressed: 0 });
    return true;
  }

  /** Ends every window whose interval is over, writing its summary. */
  sweep(now: number): void {
    for (const [id, window] of this.windows) {
      if (now - window.startedAt < this.options.intervalMs) break;
      this.windows.delete(id);
      this.summarize(window);
    }
  }

  /** Ends every window now (at shutdown, or when the log is flushed). */
  flush(): void {
    for (const window of this.windows.values()) this.summarize(window);
    this.windows.clear();
  }

  get size(): number {
    return this.windows.size;
  }

  private endOldest(): void {
    for (const [id, window] of this.windows) {
      this.windows.delete(id);
      this.summarize(window);
      return;
    }
  }

  private summarize(window: Window): void {
    if (window.suppressed === 0) return;
    const { startedAt, suppressed, ...key } = window;
    this.emit({ ...key, count: suppressed, since: startedAt });
  }
}

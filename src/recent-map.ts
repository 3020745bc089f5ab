/**
 * A Map that keeps at most `limit` entries: setting one more drops the one set longest ago.
 * For memos on hot paths (per session, per audience) whose memory must not grow with every
 * session ever seen; a dropped entry is only computed again.
 */
export class RecentMap<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(private readonly limit: number) {}

  get(key: K): V | undefined {
    return this.entries.get(key);
  }

  set(key: K, value: V): void {
    // Deleted first, so a key set again counts as the newest.
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.limit) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
  }

  get size(): number {
    return this.entries.size;
  }
}

import type { RandomBytes } from "../clock";
import { randomToken } from "../crypto/random";
import type { SocketSlots } from "./types";

/** The SQLite engine spends tickets in its file: `admit` is composed there (src/store/sqlite). */
type MemorySlots = Omit<SocketSlots, "admit">;

/**
 * Socket slots in this process's memory: the SQLite engine is one node, so the sockets it
 * counts are all there are. Claimed synchronously inside the promise, so of parallel
 * upgrades of one session exactly `cap` get a slot.
 */
export class MemorySocketSlots implements MemorySlots {
  private readonly bySession = new Map<string, Set<string>>();
  private readonly sessionOf = new Map<string, string>();

  constructor(private readonly randomBytes: RandomBytes) {}

  claim(sessionId: string, cap: number): Promise<string | null> {
    const held = this.bySession.get(sessionId) ?? new Set<string>();
    if (held.size >= cap) return Promise.resolve(null);
    const slot = randomToken(this.randomBytes, 10);
    held.add(slot);
    this.bySession.set(sessionId, held);
    this.sessionOf.set(slot, sessionId);
    return Promise.resolve(slot);
  }

  release(slot: string): Promise<void> {
    const sessionId = this.sessionOf.get(slot);
    if (sessionId !== undefined) {
      this.sessionOf.delete(slot);
      const held = this.bySession.get(sessionId);
      held?.delete(slot);
      if (held?.size === 0) this.bySession.delete(sessionId);
    }
    return Promise.resolve();
  }

  renew(): Promise<void> {
    return Promise.resolve();
  }
}

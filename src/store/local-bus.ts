import { EventEmitter } from "node:events";
import { SessionEvents, type SessionEnded } from "../auth/session-events";
import type { SessionEventBus } from "./types";

/**
 * The bus of one process (the SQLite engine: one node). It wraps the {@link SessionEvents}
 * the existing stores publish to, so they and the registry share it unchanged. Never
 * disconnected, so it never asks for a resync.
 */
export class LocalEventBus implements SessionEventBus {
  readonly connected = true;
  private readonly resyncs = new EventEmitter();

  constructor(readonly events: SessionEvents = new SessionEvents()) {}

  publish(event: SessionEnded): Promise<void> {
    this.events.publishEnded(event);
    return Promise.resolve();
  }

  subscribe(listener: (event: SessionEnded) => void): () => void {
    return this.events.onEnded(listener);
  }

  onResync(listener: () => void): () => void {
    this.resyncs.on("resync", listener);
    return () => this.resyncs.off("resync", listener);
  }
}

import { EventEmitter } from "node:events";

export type SessionEndReason =
  | "logout"
  | "revoked"
  | "expired"
  | "refresh_refused"
  | "replaced"
  | "decrypt_failed"
  /** The provider said the user signed out there (OIDC Back-Channel Logout 1.0). */
  | "backchannel_logout"
  /** An operator ended it, or blocked its account (`npm run portcullis`). */
  | "operator";

export interface SessionEnded {
  sessionId: string;
  accountId: string;
  reason: SessionEndReason;
}

/**
 * The one way news of a session's end travels. The auth routes never call socket code:
 * they end a session in the store, the store publishes here, and the live-socket registry
 * listens. A multi-node deployment replaces this bus with one that fans out (Redis, NATS)
 * without touching either side.
 */
export class SessionEvents {
  private readonly emitter = new EventEmitter();

  publishEnded(event: SessionEnded): void {
    this.emitter.emit("ended", event);
  }

  onEnded(listener: (event: SessionEnded) => void): () => void {
    this.emitter.on("ended", listener);
    return () => this.emitter.off("ended", listener);
  }
}

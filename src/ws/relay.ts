import type { WebSocket, RawData } from "ws";
import type { AuditLog } from "../audit/log";
import type { Clock } from "../clock";
import { GOING_AWAY, SESSION_ENDED, type LiveConnection } from "./registry";

export interface RelayLimits {
  /** Messages per second per socket; the bucket holds twice as many (the burst). */
  messagesPerSecond: number;
  /** Pause reading one side while the other has more than this buffered (1 MiB). */
  highWaterBytes: number;
  /** Resume once the buffer has drained below this. */
  lowWaterBytes: number;
}

export const POLICY_VIOLATION = 1008;
export const MESSAGE_TOO_BIG = 1009;
export const BACKEND_UNAVAILABLE = 1014;

/**
 * Relays one browser socket to its backend socket and back. Frames pass through as the
 * `Buffer`s `ws` hands us — never parsed, never copied — with their type kept (text stays
 * text, binary stays binary) and in order. The size limit is `ws`'s own `maxPayload` on
 * both sockets (RFC 6455 7.4.1 code 1009, enforced before a frame is buffered whole).
 */
export class Relay implements LiveConnection {
  private tokens: number;
  private refilledAt: number;
  private clientAlive = true;
  private backendAlive = true;
  private closed = false;
  private readonly burst: number;
  /** For tests and metrics: true while the backend is paused because the browser reads slowly. */
  backendPaused = false;
  clientPaused = false;

  constructor(
    private readonly client: WebSocket,
    private readonly backend: WebSocket,
    readonly sessionId: string,
    readonly accountId: string,
    private readonly limits: RelayLimits,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    private readonly onClosed: (relay: Relay) => void,
  ) {
    this.burst = limits.messagesPerSecond * 2;
    this.tokens = this.burst;
    this.refilledAt = clock.now();

    // Bound once per socket, so relaying a message allocates no closure.
    const afterSendToBackend = (): void => this.resumeClient();
    const afterSendToClient = (): void => this.resumeBackend();

    client.on("message", (data: RawData, isBinary: boolean) => {
      if (!this.takeToken()) {
        this.audit.write("ratelimit.hit", { sessionId, reason: "ws messages" });
        this.close(POLICY_VIOLATION, "message rate limit");
        return;
      }
      backend.send(data as Buffer, { binary: isBinary, compress: false }, afterSendToBackend);
      if (!this.clientPaused && backend.bufferedAmount > limits.highWaterBytes) {
        this.clientPaused = true;
        client.pause();
      }
    });
    backend.on("message", (data: RawData, isBinary: boolean) => {
      client.send(data as Buffer, { binary: isBinary, compress: false }, afterSendToClient);
      if (!this.backendPaused && client.bufferedAmount > limits.highWaterBytes) {
        this.backendPaused = true;
        backend.pause();
      }
    });
    client.on("pong", () => {
      this.clientAlive = true;
    });
    backend.on("pong", () => {
      this.backendAlive = true;
    });
    // A malformed frame (bad opcode, RSV bits, invalid UTF-8, oversize) makes `ws` emit
    // 'error' and close that socket with the right code; it never reaches the process.
    client.on("error", () => undefined);
    backend.on("error", () => undefined);
    client.on("close", (code: number, reason: Buffer) => {
      this.finish();
      if (isOpen(backend)) {
        backend.close(isSendable(code) ? code : 1000, truncateReason(reason.toString()));
      }
      this.audit.write("ws.closed", { sessionId, code, reason: "client closed" });
    });
    backend.on("close", (code: number, reason: Buffer) => {
      this.finish();
      if (isOpen(client)) {
        // The backend's own close codes pass through; an abnormal end (1006) becomes 1014,
        // which tells the client to reconnect with a new ticket and backoff.
        const passThrough = isSendable(code) && code !== 1000 ? code : code === 1000 ? 1000 : BACKEND_UNAVAILABLE;
        client.close(passThrough, passThrough === BACKEND_UNAVAILABLE ? "backend unavailable" : truncateReason(reason.toString()));
      }
    });
  }

  close(code: number, reason: string): void {
    if (isOpen(this.client)) this.client.close(code, reason);
    if (isOpen(this.backend)) this.backend.close(code === SESSION_ENDED || code === GOING_AWAY ? code : 1000, reason);
    this.finish();
  }

  /** Drops both sockets without a closing handshake (a peer that never answered our close). */
  terminate(): void {
    this.client.terminate();
    this.backend.terminate();
    this.finish();
  }

  heartbeat(): void {
    if (!this.clientAlive) {
      this.client.terminate();
      return;
    }
    if (!this.backendAlive) {
      this.backend.terminate();
      return;
    }
    this.clientAlive = false;
    this.backendAlive = false;
    if (isOpen(this.client)) this.client.ping();
    if (isOpen(this.backend)) this.backend.ping();
  }

  /** Bytes waiting to be written towards the browser (bounded by the high-water mark + one message). */
  get bufferedToClient(): number {
    return this.client.bufferedAmount;
  }

  private resumeClient(): void {
    if (this.clientPaused && this.backend.bufferedAmount < this.limits.lowWaterBytes) {
      this.clientPaused = false;
      this.client.resume();
    }
  }

  private resumeBackend(): void {
    if (this.backendPaused && this.client.bufferedAmount < this.limits.lowWaterBytes) {
      this.backendPaused = false;
      this.backend.resume();
    }
  }

  private takeToken(): boolean {
    const now = this.clock.now();
    if (now > this.refilledAt) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.limits.messagesPerSecond);
      this.refilledAt = now;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClosed(this);
  }
}

function isOpen(socket: WebSocket): boolean {
  return socket.readyState === 1;
}

/** Codes an endpoint may put in a close frame (RFC 6455 7.4.1, 7.4.2). */
function isSendable(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014 && code !== 1010) || (code >= 3000 && code <= 4999);
}

/** A close reason is at most 123 bytes (RFC 6455 5.5: 125 minus the code). */
function truncateReason(reason: string): string {
  const bytes = Buffer.from(reason, "utf8");
  return bytes.length <= 123 ? reason : bytes.subarray(0, 120).toString("utf8");
}

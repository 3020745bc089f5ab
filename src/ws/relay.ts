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
const NORMAL_CLOSURE = 1000;
const NO_STATUS_RECEIVED = 1005;

// Allocated once: `ws` spreads these into its own frame options, so relaying a message
// allocates no options object. Compression is off on both sockets anyway (SECURITY.md E24).
const AS_TEXT = { binary: false, compress: false } as const;
const AS_BINARY = { binary: true, compress: false } as const;

/**
 * Relays one browser socket to its backend socket and back. Frames pass through as the
 * `Buffer`s `ws` hands us — never parsed, never copied, never re-encoded — with their type
 * kept (text stays text, binary stays binary) and in order. The size limit is `ws`'s own
 * `maxPayload` on both sockets (RFC 6455 7.4.1 code 1009, enforced from the frame header,
 * before the payload is buffered). `ws` also sets TCP_NODELAY on both sockets, so a small
 * game message is not held back by Nagle's algorithm.
 */
export class Relay implements LiveConnection {
  private tokens: number;
  private refilledAt: number;
  private clientAlive = true;
  private backendAlive = true;
  private closed = false;
  private readonly burst: number;
  /** True while the backend is not read because the browser reads slowly (tests, metrics). */
  backendPaused = false;
  /** True while the browser is not read because the backend reads slowly. */
  clientPaused = false;
  readonly ended: Promise<void>;
  /** When the browser last sent a message (ms, the injected clock); 0 before the first. */
  lastMessageAt = 0;

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
    this.ended = Promise.all([closed(client), closed(backend)]).then(() => undefined);

    // Bound once per socket, so relaying a message allocates no closure.
    const afterSendToBackend = (): void => this.resumeClient();
    const afterSendToClient = (): void => this.resumeBackend();

    // `binaryType` is ws's default "nodebuffer", so `data` is always one Buffer.
    client.on("message", (data: RawData, isBinary: boolean) => {
      if (!this.takeToken()) {
        this.audit.write("ratelimit.hit", { sessionId, reason: "ws messages" });
        this.close(POLICY_VIOLATION, "message rate limit");
        return;
      }
      backend.send(data, isBinary ? AS_BINARY : AS_TEXT, afterSendToBackend);
      if (!this.clientPaused && backend.bufferedAmount > limits.highWaterBytes) {
        this.clientPaused = true;
        client.pause();
      }
    });
    backend.on("message", (data: RawData, isBinary: boolean) => {
      client.send(data, isBinary ? AS_BINARY : AS_TEXT, afterSendToClient);
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
        backend.close(isSendable(code) ? code : NORMAL_CLOSURE, truncateReason(reason.toString()));
      }
      this.audit.write("ws.closed", { sessionId, code, reason: "client closed" });
    });
    backend.on("close", (code: number, reason: Buffer) => {
      this.finish();
      if (isOpen(client)) {
        const [passCode, passReason] = closeForClient(code, reason.toString());
        client.close(passCode, passReason);
      }
    });
  }

  close(code: number, reason: string): void {
    if (isOpen(this.client)) this.client.close(code, reason);
    // The backend learns that the session ended or the BFF is going away; for our own
    // policy closes (1008, 1009) it sees an ordinary end of the player's connection.
    if (isOpen(this.backend)) this.backend.close(code === SESSION_ENDED || code === GOING_AWAY ? code : NORMAL_CLOSURE, reason);
    this.finish();
  }

  /** Drops both sockets without a closing handshake (a peer that never answered our close). */
  terminate(): void {
    this.client.terminate();
    this.backend.terminate();
    this.finish();
  }

  /**
   * One tick of the RFC 6455 5.5.2 heartbeat: a side that did not answer the previous ping
   * is terminated. A side we paused for backpressure is not judged: its pong sits unread
   * behind the data we chose not to read, and the other side's heartbeat covers the stall.
   */
  heartbeat(): void {
    if (!this.clientAlive && !this.clientPaused) {
      this.client.terminate();
      return;
    }
    if (!this.backendAlive && !this.backendPaused) {
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

  /** Bytes waiting to be written towards the backend. */
  get bufferedToBackend(): number {
    return this.backend.bufferedAmount;
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
    this.lastMessageAt = now;
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

/**
 * What the browser is told when the backend's socket ends: the backend's own code and
 * reason when it sent one it may send (RFC 6455 7.4.1); 1000 for a close frame without a
 * code (1005); and 1014 for an abnormal end (1006: no close frame at all), which tells the
 * client to reconnect with a new ticket and backoff.
 */
function closeForClient(code: number, reason: string): [number, string] {
  if (isSendable(code)) return [code, truncateReason(reason)];
  if (code === NO_STATUS_RECEIVED) return [NORMAL_CLOSURE, ""];
  return [BACKEND_UNAVAILABLE, "backend unavailable"];
}

function closed(socket: WebSocket): Promise<void> {
  return socket.readyState === 3 ? Promise.resolve() : new Promise((resolve) => socket.once("close", () => resolve()));
}

function isOpen(socket: WebSocket): boolean {
  return socket.readyState === 1;
}

/** Codes an endpoint may put in a close frame (RFC 6455 7.4.1, 7.4.2). */
function isSendable(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014 && code !== 1010) || (code >= 3000 && code <= 4999);
}

/** A close reason is at most 123 bytes (RFC 6455 5.5: 125 minus the code), cut on a character boundary. */
function truncateReason(reason: string): string {
  const bytes = Buffer.from(reason, "utf8");
  if (bytes.length <= 123) return reason;
  let end = 123;
  // Step back over UTF-8 continuation bytes (10xxxxxx) so no character is split.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end -= 1;
  return bytes.subarray(0, end).toString("utf8");
}

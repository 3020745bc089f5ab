import type { Socket } from "node:net";
import type { AuditLog } from "../audit/log";
import type { Clock } from "../clock";
import type { Metrics, RelayTally } from "../metrics/metrics";
import {
  ABNORMAL_CLOSURE,
  BACKEND_UNAVAILABLE,
  BINARY,
  CLOSE,
  CONTINUATION,
  MAX_CONTROL_PAYLOAD,
  MESSAGE_TOO_BIG,
  MessageBuffer,
  NORMAL_CLOSURE,
  NO_STATUS_RECEIVED,
  PING,
  POLICY_VIOLATION,
  PONG,
  PROTOCOL_ERROR,
  closeFrame,
  controlFrame,
  isPassable,
  payloadOf,
  readClose,
} from "./frames";
import { GOING_AWAY, SESSION_ENDED, type LiveConnection } from "./registry";
import { secureRandomBytes } from "../clock";

export { BACKEND_UNAVAILABLE, MESSAGE_TOO_BIG, POLICY_VIOLATION } from "./frames";

export interface RelayLimits {
  /** Messages per second per socket; the bucket holds twice as many (the burst). */
  messagesPerSecond: number;
  /** The largest message, in either direction (WS_MAX_MESSAGE_BYTES). */
  maxMessageBytes: number;
  /** Stop reading one side while the other has more than this waiting to be written (1 MiB). */
  highWaterBytes: number;
  /**
   * How long the backend's answers to what the browser sent before a frame the relay
   * refused are still relayed, before the browser gets its close (default 1 s; the
   * gate's `limits` may set it).
   */
  refusalGraceMs?: number;
}

export interface RelayDeps {
  /** The browser's socket, its 101 already written. */
  browser: Socket;
  /** The backend's socket after its 101. */
  backend: Socket;
  sessionId: string;
  accountId: string;
  limits: RelayLimits;
  clock: Clock;
  audit: AuditLog;
  metrics: Metrics;
  /** The upgrade's request id, for the ws.closed line. */
  requestId: string;
  /** Called once, when the relay starts to close: it no longer counts as a live socket. */
  onClosed: (relay: Relay) => void;
}

/**
 * How long a side has to answer our close frame (and to close its TCP connection) before
 * it is dropped: CONTRACT.md wants a session's sockets closed within 1 s of its end.
 */
const CLOSE_TIMEOUT_MS = 1_000;
/**
 * Our pings carry 8 fresh random bytes: only a side that read the ping can echo them, so a
 * client that never reads cannot stay alive on blind pongs, and the pong that answers us
 * goes no further.
 */
const PING_PAYLOAD_BYTES = 8;
/** See {@link RelayLimits.refusalGraceMs}. */
const REFUSAL_GRACE_MS = 1_000;
/**
 * The fewest fragments a message may always have, whatever its size limit. Browsers never
 * fragment; other clients (and Autobahn's 9.x cases) do.
 */
const MIN_FRAGMENT_CAP = 128;
/** The average fragment size that a message at the size limit may be cut into. */
const SMALLEST_AVERAGE_FRAGMENT = 64;
/** The largest frame header: 2 bytes, an 8-byte length, a 4-byte mask key (RFC 6455 5.2). */
const MAX_HEADER_BYTES = 14;
/** What the frame reader returns for a malformed frame, after refusing it. */
const FAILED = -1;

// What happens to the payload of the frame being read.
const FORWARD = 0; // written on to the other side as it arrives, byte for byte
const HOLD = 1; // kept until its message is complete (a fragmented message), then written
const DISCARD = 2; // dropped: the relay is closing

/**
 * How many fragments a message may have under a size limit of `maxMessageBytes`: enough
 * for a message at the limit cut into 64-byte fragments (Autobahn 9.3/9.4 cut 4 MiB into
 * 64-byte ones), and never fewer than 128. The cap follows WS_MAX_MESSAGE_BYTES so the two
 * cannot contradict each other, and it still bounds what empty continuation frames could
 * add to a held message without growing its size: their headers, at most 14 bytes each,
 * so a held message never exceeds {@link maxHeldBytes}.
 */
export function maxFragments(maxMessageBytes: number): number {
  return Math.max(MIN_FRAGMENT_CAP, Math.ceil(maxMessageBytes / SMALLEST_AVERAGE_FRAGMENT));
}

/** The most a fragmented message held whole can take: its payload at the limit and every header. */
export function maxHeldBytes(maxMessageBytes: number): number {
  return maxMessageBytes + maxFragments(maxMessageBytes) * MAX_HEADER_BYTES;
}

/**
 * Relays one browser socket to its backend socket and back, after both handshakes.
 *
 * Only frame headers are read (RFC 6455 5.2: FIN, RSV, opcode, mask bit, length): they
 * are all the relay needs to enforce the size and rate limits, to refuse malformed frames
 * and to place its own ping and close frames between frames. Payloads pass through
 * untouched: never unmasked, copied or re-framed. The browser's frames reach the backend
 * still masked with the browser's own key, which RFC 6455 5.3 allows a client's frames to
 * be (the BFF is the backend's client). A run of whole frames that arrived in one TCP read
 * is written on with one write. Only control frames (at most 125 bytes) and fragmented
 * messages (at most WS_MAX_MESSAGE_BYTES) are held before they go on, so that nothing of a
 * message over the limit is ever forwarded.
 *
 * Text payloads are not checked for UTF-8 here: the receiving endpoint must check them
 * itself (RFC 6455 8.1), and a backend that closes with 1007 has its code passed through.
 */
export class Relay implements LiveConnection {
  readonly sessionId: string;
  readonly accountId: string;
  readonly ended: Promise<void>;
  /** When the browser last sent a message (ms, the injected clock); 0 before the first. */
  lastMessageAt = 0;
  readonly limits: RelayLimits;
  /** The fragment cap that follows from the size limit ({@link maxFragments}). */
  readonly maxFragments: number;
  private readonly browser: Side;
  private readonly backend: Side;
  private readonly clock: Clock;
  private readonly audit: AuditLog;
  private readonly metrics: Metrics;
  private readonly requestId: string;
  private readonly onClosed: (relay: Relay) => void;
  private readonly burst: number;
  private tokens: number;
  private refilledAt: number;
  private closeTimer: NodeJS.Timeout | null = null;
  /** Ends the grace after the browser was refused: see {@link refuse}. */
  private graceTimer: NodeJS.Timeout | null = null;
  private retired = false;
  /** The close code the browser sent or was sent, and why: the one audit event. */
  private outcome: { code: number; reason: string } | null = null;
  private resolveEnded: () => void = () => undefined;
  private socketsOpen = 2;

  constructor(deps: RelayDeps) {
    this.sessionId = deps.sessionId;
    this.accountId = deps.accountId;
    this.limits = deps.limits;
    this.maxFragments = maxFragments(deps.limits.maxMessageBytes);
    this.clock = deps.clock;
    this.audit = deps.audit;
    this.metrics = deps.metrics;
    this.requestId = deps.requestId;
    this.onClosed = deps.onClosed;
    this.burst = deps.limits.messagesPerSecond * 2;
    this.tokens = this.burst;
    this.refilledAt = deps.clock.now();
    this.ended = new Promise((resolve) => {
      this.resolveEnded = resolve;
    });
    this.browser = new Side(this, deps.browser, "browser", deps.metrics.relayed.toBackend);
    this.backend = new Side(this, deps.backend, "backend", deps.metrics.relayed.toClient);
    this.browser.peer = this.backend;
    this.backend.peer = this.browser;
  }

  /**
   * Starts relaying, beginning with the bytes each side sent right after its handshake
   * (the backend may speak first: a welcome message in the same segment as its 101).
   * Called once the relay is registered, so even a close in those bytes unregisters it.
   */
  start(heads: { browser: Buffer; backend: Buffer }): void {
    if (heads.backend.length > 0) this.backend.read(heads.backend);
    if (heads.browser.length > 0) this.browser.read(heads.browser);
    this.backend.start();
    this.browser.start();
  }

  /** True while the backend is not read because the browser reads slowly (tests, metrics). */
  get backendPaused(): boolean {
    return this.backend.paused;
  }

  /** True while the browser is not read because the backend reads slowly. */
  get clientPaused(): boolean {
    return this.browser.paused;
  }

  /** Bytes waiting to be written towards the browser (bounded by the high-water mark + one read). */
  get bufferedToClient(): number {
    return this.browser.socket.writableLength;
  }

  /** Bytes read from the browser's socket so far, its upgrade request included (tests, metrics). */
  get bytesFromClient(): number {
    return this.browser.socket.bytesRead;
  }

  /** Bytes waiting to be written towards the backend. */
  get bufferedToBackend(): number {
    return this.backend.socket.writableLength;
  }

  /**
   * Closes both sides: the browser with `code`; the backend with it too when the session
   * ended or the BFF is going away, and with an ordinary 1000 for our own policy closes
   * (1008, 1009), which are the player's business, not the game's.
   */
  close(code: number, reason: string): void {
    this.record(code, reason);
    this.sendClose(this.browser, code, reason);
    this.sendClose(this.backend, code === SESSION_ENDED || code === GOING_AWAY ? code : NORMAL_CLOSURE, reason);
  }

  /** Drops both sockets without a closing handshake (a peer that never answered our close). */
  terminate(): void {
    this.browser.socket.destroy();
    this.backend.socket.destroy();
  }

  /**
   * One tick of the RFC 6455 5.5.2 heartbeat: a side that did not answer the previous ping
   * is dropped. A side we paused for backpressure is not judged: its pong sits unread
   * behind the data we chose not to read, and the other side's heartbeat covers the stall.
   */
  heartbeat(): void {
    // A side being closed is neither judged nor pinged: a browser refused but not yet told
    // (see refuse) is no longer read, so its pong could not be seen.
    for (const side of [this.browser, this.backend]) {
      if (!side.alive && !side.paused && !side.closeSent && side.pendingClose === null) {
        this.record(ABNORMAL_CLOSURE, `${side.role} missed a pong`);
        side.socket.destroy();
        return;
      }
    }
    for (const side of [this.browser, this.backend]) {
      if (side.closeSent || side.pendingClose !== null) continue;
      side.alive = false;
      side.pingPayload = secureRandomBytes(PING_PAYLOAD_BYTES);
      side.send(controlFrame(PING, side.pingPayload, { mask: side.role === "backend" }));
    }
  }

  /** Takes one message from the browser's bucket; false when the rate and burst are spent. */
  takeToken(): boolean {
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

  /** The browser sent more messages than its rate and burst allow: 1008 (CONTRACT.md). */
  rateLimited(): void {
    this.metrics.rateLimited("ws_messages");
    this.audit.write("ratelimit.hit", { sessionId: this.sessionId, reason: "ws messages", requestId: this.requestId });
    this.close(POLICY_VIOLATION, "message rate limit");
  }

  /**
   * `side` broke a rule (a malformed frame, a message too big or in too many fragments):
   * it is told why with `code`, and the other side hears of an ordinary end — towards the
   * browser that is 1014, since the backend failed and the client should reconnect with
   * backoff. A browser is told last, after the backend's answers in flight (see below).
   */
  refuse(side: Side, code: number, reason: string): void {
    // RFC 6455 7.1.7: after a protocol error the connection is failed, not closed
    // politely: nothing more is read from that side, and its answer is not waited for.
    if (code === PROTOCOL_ERROR) side.failed = true;
    const peerCode = side.role === "backend" ? BACKEND_UNAVAILABLE : NORMAL_CLOSURE;
    this.record(side.role === "browser" ? code : peerCode, `${side.role}: ${reason}`);
    // Already refused, and waiting out its grace: the first refusal stands.
    if (side.pendingClose !== null) return;
    if (side.role === "backend" || side.closeSent) {
      this.sendClose(side, code, reason);
      this.sendClose(side.peer, peerCode, side.role === "backend" ? "backend unavailable" : "");
      return;
    }
    // Fail in order, as an endpoint would: the messages the browser sent before the frame
    // refused have reached the backend, and the answers it sends before it reads our close
    // are on their way. A server refusing the frame itself would have sent them before its
    // close, so they still reach the browser; its close follows once the backend has
    // closed (or left), or when the grace ends. Nothing the browser sent after the frame
    // refused goes on: the backend is told to close at once.
    side.pendingClose = { code, reason };
    this.sendClose(side.peer, peerCode, "");
    // The close timer starts with the browser's close frame instead, so that the browser
    // gets its full time to answer it.
    this.stopTimer(this.closeTimer);
    this.closeTimer = null;
    this.graceTimer = setTimeout(() => this.sendClose(side, code, reason), this.limits.refusalGraceMs ?? REFUSAL_GRACE_MS);
    this.graceTimer.unref();
  }

  /**
   * `side` sent a close frame. If its peer has not been told yet, it is now (with the code
   * mapped, see {@link closeForClient}), and the peer's answer will in turn be passed back
   * to `side`: the closing handshake of RFC 6455 7.1.2 runs end to end through the relay.
   * If the peer was told already, this close is `side`'s answer to the relay's own.
   */
  closeReceived(side: Side, code: number, reason: string): void {
    side.closeReceived = true;
    if (side.role === "browser") this.record(code, "browser closed");
    const [peerCode, peerReason] = side.role === "browser" ? closeForBackend(code, reason) : closeForClient(code, reason);
    if (side.role === "backend" && !side.peer.closeSent) this.record(peerCode, "backend closed");
    this.sendClose(side.peer, peerCode, peerReason);
    side.endIfDone();
  }

  /** `side`'s TCP connection closed. */
  gone(side: Side): void {
    side.gone = true;
    this.socketsOpen -= 1;
    this.record(side.role === "browser" ? ABNORMAL_CLOSURE : BACKEND_UNAVAILABLE, `${side.role} left`);
    const peer = side.peer;
    if (this.socketsOpen === 0) {
      this.finish();
      return;
    }
    // Nothing can be written to `side` any more, so its peer is no longer held back.
    peer.resume();
    if (side.midFrame) {
      // The peer has part of a frame and no close frame can follow it: hang up on it.
      peer.socket.destroy();
      return;
    }
    // A backend that closed without a close frame gets 1014 sent to the browser (reconnect
    // with backoff); a browser that vanished gets the backend an ordinary 1000.
    if (side.role === "backend") this.sendClose(peer, BACKEND_UNAVAILABLE, "backend unavailable");
    else this.sendClose(peer, NORMAL_CLOSURE, "");
    peer.endIfDone();
  }

  /** Writes a close frame to `side`, once; from then on nothing else goes to it. */
  private sendClose(side: Side, code: number, reason: string): void {
    if (side.closeSent || side.gone) return;
    side.closeSent = true;
    // A browser refused during its grace is told why it was refused, whatever ended the
    // grace: the backend's close, its leaving, the session's end.
    const close = side.pendingClose ?? { code, reason };
    if (side.pendingClose !== null) this.stopTimer(this.graceTimer);
    side.send(closeFrame(close.code, close.reason, { mask: side.role === "backend" }));
    // Nothing more is forwarded to `side`, so its peer need not be held back for it: the
    // peer's own close answer must not sit unread behind backpressure.
    side.peer.resume();
    this.retire();
    if (this.closeTimer === null) {
      this.closeTimer = setTimeout(() => this.terminate(), CLOSE_TIMEOUT_MS);
      this.closeTimer.unref();
    }
    side.endIfDone();
  }

  /** The relay is closing: it leaves the registry at once, so it no longer counts as a live socket. */
  private retire(): void {
    if (this.retired) return;
    this.retired = true;
    this.onClosed(this);
  }

  /** Keeps the first close of the browser's connection for the audit log. */
  private record(code: number, reason: string): void {
    if (this.outcome === null) this.outcome = { code, reason };
  }

  private stopTimer(timer: NodeJS.Timeout | null): void {
    if (timer !== null) clearTimeout(timer);
  }

  private finish(): void {
    this.stopTimer(this.closeTimer);
    this.stopTimer(this.graceTimer);
    this.retire();
    const { code, reason } = this.outcome ?? { code: ABNORMAL_CLOSURE, reason: "closed" };
    this.metrics.relayClosed(code);
    this.audit.write("ws.closed", { sessionId: this.sessionId, code, reason, requestId: this.requestId });
    this.resolveEnded();
  }
}

/**
 * One side of a relay, the browser or the backend: reads the frames it sends, header by
 * header, and writes them on to its peer. It also takes the frames the relay writes to it
 * (pings and close frames), holding them while the peer's frame in flight is unfinished.
 */
class Side {
  peer!: Side;
  /** Frames from the browser are masked (RFC 6455 5.1); the backend's are not. */
  private readonly incomingMasked: boolean;
  // The frame being read.
  private tail: Buffer | null = null;
  private remaining = 0;
  private mode = FORWARD;
  private inMessage = false;
  private messageBytes = 0;
  private readonly held: MessageBuffer;
  private runStart = -1;
  /** Frames of the relay's own, waiting for the peer's frame in flight to end. */
  private outbox: Buffer[] = [];
  /** Answered the last ping (or was never pinged). */
  alive = true;
  /** The payload of our last ping to this side, which its pong must echo. */
  pingPayload: Buffer | null = null;
  private fragments = 0;
  /** Not read, because the peer has more than the high-water mark waiting to be written. */
  paused = false;
  closeSent = false;
  closeReceived = false;
  /** Sent a malformed frame: nothing more is read from it (RFC 6455 7.1.7). */
  failed = false;
  /** The close this side will get once the backend's answers in flight have passed (see Relay.refuse). */
  pendingClose: { code: number; reason: string } | null = null;
  gone = false;

  constructor(
    private readonly relay: Relay,
    readonly socket: Socket,
    readonly role: "browser" | "backend",
    /** What this side sends, counted for the metrics: plain numbers, no call per frame. */
    private readonly tally: RelayTally,
  ) {
    this.incomingMasked = role === "browser";
    this.held = new MessageBuffer(maxHeldBytes(relay.limits.maxMessageBytes));
  }

  start(): void {
    const { socket } = this;
    // A game message must not wait for Nagle's algorithm; an open game socket has no idle timeout.
    socket.setNoDelay(true);
    socket.setTimeout(0);
    socket.on("data", (chunk: Buffer) => this.read(chunk));
    // Our buffer towards this side emptied: its peer may be read again.
    socket.on("drain", () => this.peer.resume());
    // Node's HTTP server makes its sockets allowHalfOpen: a browser's FIN would leave an
    // upgraded socket half open forever. End ours too; 'close' follows, and we act on that.
    socket.on("end", () => {
      if (!socket.writableEnded) socket.end();
    });
    // A reset or a write after the peer left: 'close' follows, which is what we act on.
    socket.on("error", () => undefined);
    socket.on("close", () => this.relay.gone(this));
    socket.resume();
  }

  /** True while the peer has part of one of our frames and nothing may be placed before its end. */
  get midFrame(): boolean {
    return this.mode === FORWARD && this.remaining > 0;
  }

  /** A frame of the relay's own to this side, at the next frame boundary. */
  send(frame: Buffer): void {
    if (this.peer.midFrame) this.outbox.push(frame);
    else this.write(frame);
  }

  /**
   * Ends the TCP connection once both close frames have passed, or once a failed side has
   * had ours. RFC 6455 7.1.1: the server closes the connection first, so towards the
   * browser (where we are the server) we end it; towards the backend we wait for the
   * backend to, and the relay's close timer drops it if it does not.
   */
  endIfDone(): void {
    const done = this.closeSent && (this.closeReceived || this.failed) && this.outbox.length === 0 && !this.gone;
    if (done && (this.role === "browser" || this.failed) && !this.socket.writableEnded) this.socket.end();
  }

  /** Whether data may still be forwarded to this side. */
  get open(): boolean {
    return !this.closeSent && !this.gone;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.socket.resume();
  }

  read(data: Buffer): void {
    // After its close frame (or a protocol error) nothing more from this side matters.
    if (this.closeReceived || this.failed) return;
    this.tally.bytes += data.length;
    // A header or a control frame split across two reads is joined to the next one: at
    // most 14 + 125 bytes, and rare.
    let chunk = data;
    if (this.tail !== null) {
      chunk = Buffer.concat([this.tail, data]);
      this.tail = null;
    }
    const end = chunk.length;
    let at = 0;
    this.runStart = -1;
    // A close frame ends the loop too: what follows it in the same read is ignored.
    while (at < end && !this.closeReceived && !this.failed) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, end - at);
        if (this.mode === FORWARD) {
          if (this.runStart === -1) this.runStart = at;
        } else if (this.mode === HOLD) {
          this.hold(chunk.subarray(at, at + n));
        }
        at += n;
        this.remaining -= n;
        if (this.remaining === 0) this.frameEnded(chunk, at);
        continue;
      }
      const consumed = this.frame(chunk, at);
      if (consumed === 0) {
        // Copied: a slice would pin the whole read (up to 64 KiB) for a few bytes.
        this.tail = Buffer.from(chunk.subarray(at));
        break;
      }
      // A malformed frame: the side is failed and nothing more of it is read.
      if (consumed === FAILED) return;
      at += consumed;
    }
    this.flushRun(chunk, at);
    if (!this.paused && this.peer.socket.writableLength > this.relay.limits.highWaterBytes) {
      this.paused = true;
      this.socket.pause();
    }
  }

  /**
   * Reads the frame that starts at `at`: its whole header, and a control frame whole.
   * Returns the bytes consumed, 0 when more must arrive first, or FAILED when the frame is
   * malformed and the side has been refused.
   */
  private frame(chunk: Buffer, at: number): number {
    const available = chunk.length - at;
    if (available < 2) return 0;
    const b0 = chunk[at] ?? 0;
    const b1 = chunk[at + 1] ?? 0;
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    const masked = (b1 & 0x80) !== 0;
    let length = b1 & 0x7f;
    let headerLength = 2;
    if (length === 126) {
      if (available < 4) return 0;
      length = chunk.readUInt16BE(at + 2);
      headerLength = 4;
    } else if (length === 127) {
      if (available < 10) return 0;
      // Only compared with the limit, so a length past 2^53 may lose precision harmlessly.
      length = chunk.readUInt32BE(at + 2) * 2 ** 32 + chunk.readUInt32BE(at + 6);
      headerLength = 10;
    }
    if (masked) headerLength += 4;
    if (available < headerLength) return 0;
    // RFC 6455 5.2: no extension is negotiated, so RSV bits must be 0; 5.1: a client
    // masks every frame and a server none.
    if ((b0 & 0x70) !== 0 || masked !== this.incomingMasked) return this.fail(chunk, at);

    if (opcode >= CLOSE) {
      // RFC 6455 5.5: the 7-bit length itself is at most 125; no extended length.
      if (opcode > PONG || !fin || (b1 & 0x7f) > MAX_CONTROL_PAYLOAD) return this.fail(chunk, at);
      if (available < headerLength + length) return 0;
      this.flushRun(chunk, at);
      return this.control(opcode, chunk.subarray(at, at + headerLength + length), headerLength, length);
    }

    // RFC 6455 5.4: a continuation only inside a fragmented message, a new message only outside one.
    if (opcode === CONTINUATION ? !this.inMessage : opcode > BINARY || this.inMessage) return this.fail(chunk, at);
    this.inMessage = !fin;
    if (fin) this.tally.messages += 1;
    this.messageBytes = opcode === CONTINUATION ? this.messageBytes + length : length;
    this.fragments = opcode === CONTINUATION ? this.fragments + 1 : 1;
    if (this.peer.open) {
      // Refused here, before a byte of the message is written on: the relay closes, and
      // the payload below is read past (DISCARD) so the side's close answer can be found.
      if (this.messageBytes > this.relay.limits.maxMessageBytes) {
        this.flushRun(chunk, at);
        this.relay.refuse(this, MESSAGE_TOO_BIG, "message too big");
      } else if (this.fragments > this.relay.maxFragments) {
        this.flushRun(chunk, at);
        this.relay.refuse(this, POLICY_VIOLATION, "too many fragments");
      } else if (opcode !== CONTINUATION && this.role === "browser" && !this.relay.takeToken()) {
        this.flushRun(chunk, at);
        this.relay.rateLimited();
      }
    }
    if (this.peer.open && fin && opcode !== CONTINUATION) {
      // The common case, a message in one frame: it joins the run written on in one go.
      this.mode = FORWARD;
      if (this.runStart === -1) this.runStart = at;
    } else {
      // Anything else ends the run here, so none of its bytes ride along with it.
      this.flushRun(chunk, at);
      if (!this.peer.open) {
        // RFC 6455 5.5.1: no data after a close frame; the relay is closing, and drops it.
        this.mode = DISCARD;
        this.held.clear();
      } else {
        this.mode = HOLD;
        this.hold(chunk.subarray(at, at + headerLength));
      }
    }
    this.remaining = length;
    if (length === 0) this.frameEnded(chunk, at + headerLength);
    return headerLength;
  }

  /** A control frame, whole (RFC 6455 5.5). Returns its size, or FAILED. */
  private control(opcode: number, frame: Buffer, headerLength: number, length: number): number {
    const masked = this.incomingMasked;
    if (opcode === CLOSE) {
      const close = readClose(payloadOf(frame, headerLength, length, masked));
      if (close === null) {
        this.relay.refuse(this, PROTOCOL_ERROR, "malformed close frame");
        return FAILED;
      }
      this.relay.closeReceived(this, close.code, close.reason);
      return frame.length;
    }
    if (opcode === PONG && this.pingPayload !== null && length === PING_PAYLOAD_BYTES && payloadOf(frame, headerLength, length, masked).equals(this.pingPayload)) {
      // The answer to our own ping ends here.
      this.alive = true;
      this.pingPayload = null;
      return frame.length;
    }
    // The browser's other pings and pongs count as messages: each one makes the backend
    // read (and a ping, answer), so a flood of them is a flood like any other.
    if (this.role === "browser" && this.peer.open && !this.relay.takeToken()) {
      this.relay.rateLimited();
      return frame.length;
    }
    // Pings, and pongs to the peer's pings, pass through as they came (still masked
    // towards the backend, unmasked towards the browser).
    if (this.peer.open) this.peer.send(frame);
    return frame.length;
  }

  /** The frame being read is complete: release a completed fragmented message and any frames of ours. */
  private frameEnded(chunk: Buffer, at: number): void {
    if (this.mode === HOLD && !this.inMessage) {
      this.flushRun(chunk, at);
      // Written only while the peer may still have data: never after our close frame.
      if (this.peer.open) this.peer.write(this.held.take());
      else this.held.clear();
    }
    if (this.peer.outbox.length > 0) {
      this.flushRun(chunk, at);
      this.peer.flushOutbox();
    }
  }

  /** Refuses a malformed frame at `at`, after writing on the whole frames before it. */
  private fail(chunk: Buffer, at: number): number {
    this.flushRun(chunk, at);
    this.relay.refuse(this, PROTOCOL_ERROR, "malformed frame");
    return FAILED;
  }

  /**
   * Keeps part of a fragmented message, copied: a slice would pin the whole 64 KiB read it
   * came from, and a message of one-byte fragments could pin megabytes.
   */
  private hold(bytes: Buffer): void {
    this.held.append(bytes);
  }

  /** Writes on the bytes of whole frames read since `runStart`, in one write. */
  private flushRun(chunk: Buffer, to: number): void {
    const from = this.runStart;
    if (from === -1) return;
    this.runStart = -1;
    if (to > from) this.peer.write(from === 0 && to === chunk.length ? chunk : chunk.subarray(from, to));
  }

  private flushOutbox(): void {
    const frames = this.outbox;
    this.outbox = [];
    for (const frame of frames) this.write(frame);
    this.endIfDone();
  }

  private write(bytes: Buffer): void {
    if (!this.gone && this.socket.writable) this.socket.write(bytes);
  }
}

/**
 * What the browser is told when the backend closes: its own code and reason when it is
 * one an endpoint may pass on (RFC 6455 7.4.1); 1000 for a close frame without a code
 * (1005 may not be sent); 1014 otherwise, which tells the client to reconnect with backoff.
 * 4401 tells the client to log in again, and only the BFF knows that a session ended: from
 * the backend it is 1014 too.
 */
function closeForClient(code: number, reason: string): [number, string] {
  if (isPassable(code) && code !== SESSION_ENDED) return [code, reason];
  if (code === NO_STATUS_RECEIVED) return [NORMAL_CLOSURE, ""];
  return [BACKEND_UNAVAILABLE, "backend unavailable"];
}

/**
 * What the backend is told when the browser closes: its code when passable, else 1000.
 * 4401 is the BFF's own word that a session ended; a browser cannot say it for us.
 */
function closeForBackend(code: number, reason: string): [number, string] {
  return isPassable(code) && code !== SESSION_ENDED ? [code, reason] : [NORMAL_CLOSURE, ""];
}

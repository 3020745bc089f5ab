import { isUtf8 } from "node:buffer";
import { createHash } from "node:crypto";
import { secureRandomBytes } from "../clock";

// RFC 6455 5.2 opcodes.
export const CONTINUATION = 0x0;
export const TEXT = 0x1;
export const BINARY = 0x2;
export const CLOSE = 0x8;
export const PING = 0x9;
export const PONG = 0xa;

// RFC 6455 7.4.1 close codes the relay uses itself.
export const NORMAL_CLOSURE = 1000;
export const PROTOCOL_ERROR = 1002;
export const NO_STATUS_RECEIVED = 1005;
export const ABNORMAL_CLOSURE = 1006;
export const POLICY_VIOLATION = 1008;
export const MESSAGE_TOO_BIG = 1009;
export const BACKEND_UNAVAILABLE = 1014;

/** RFC 6455 5.5: a control frame carries at most 125 bytes and is never fragmented. */
export const MAX_CONTROL_PAYLOAD = 125;

const HANDSHAKE_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** RFC 6455 4.2.2 step 5.4: the `Sec-WebSocket-Accept` answer to a `Sec-WebSocket-Key`. */
export function acceptKey(key: string): string {
  return createHash("sha1").update(key + HANDSHAKE_GUID).digest("base64");
}

/**
 * A control frame the BFF writes itself. Towards the browser it is unmasked, as a server's
 * frames must be; towards the backend the BFF is the client, so it masks with a fresh
 * random key (RFC 6455 5.3: "MUST pick a fresh masking key from the set of allowed
 * 32-bit values … unpredictable").
 */
export function controlFrame(opcode: number, payload: Buffer, options: { mask: boolean }): Buffer {
  const headerLength = options.mask ? 6 : 2;
  const frame = Buffer.allocUnsafe(headerLength + payload.length);
  frame[0] = 0x80 | opcode;
  frame[1] = (options.mask ? 0x80 : 0) | payload.length;
  if (!options.mask) {
    payload.copy(frame, 2);
    return frame;
  }
  secureRandomBytes(4).copy(frame, 2);
  for (let i = 0; i < payload.length; i += 1) {
    frame[6 + i] = (payload[i] ?? 0) ^ (frame[2 + (i & 3)] ?? 0);
  }
  return frame;
}

/** A close frame with `code` and `reason` (cut to fit in a control frame). */
export function closeFrame(code: number, reason: string, options: { mask: boolean }): Buffer {
  const text = Buffer.from(truncateReason(reason), "utf8");
  const payload = Buffer.allocUnsafe(2 + text.length);
  payload.writeUInt16BE(code, 0);
  text.copy(payload, 2);
  return controlFrame(CLOSE, payload, options);
}

/** The payload of a frame, unmasked into a new buffer when a mask key precedes it. */
export function payloadOf(frame: Buffer, payloadOffset: number, length: number, masked: boolean): Buffer {
  const payload = Buffer.from(frame.subarray(payloadOffset, payloadOffset + length));
  if (!masked) return payload;
  const keyOffset = payloadOffset - 4;
  for (let i = 0; i < length; i += 1) {
    payload[i] = (payload[i] ?? 0) ^ (frame[keyOffset + (i & 3)] ?? 0);
  }
  return payload;
}

/**
 * The code and reason of a received close frame's payload (RFC 6455 5.5.1); 1005 for an
 * empty one; null when it is malformed: a lone byte, a code no endpoint may send
 * (7.4.2), or a reason that is not UTF-8 (which 8.1 makes a failure).
 */
export function readClose(payload: Buffer): { code: number; reason: string } | null {
  if (payload.length === 0) return { code: NO_STATUS_RECEIVED, reason: "" };
  if (payload.length === 1) return null;
  const code = payload.readUInt16BE(0);
  const reason = payload.subarray(2);
  if (!isReceivable(code) || !isUtf8(reason)) return null;
  return { code, reason: reason.toString("utf8") };
}

/** Codes a close frame may carry on the wire (RFC 6455 7.4.1; 1004–1006 and 1015 never). */
function isReceivable(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/** Codes the BFF passes on from one side to the other: the receivable ones but 1010, which only a client sends. */
export function isPassable(code: number): boolean {
  return isReceivable(code) && code !== 1010;
}

/** A close reason is at most 123 bytes (RFC 6455 5.5: 125 minus the code), cut on a character boundary. */
export function truncateReason(reason: string): string {
  const bytes = Buffer.from(reason, "utf8");
  if (bytes.length <= 123) return reason;
  let end = 123;
  // Step back over UTF-8 continuation bytes (10xxxxxx) so no character is split.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end -= 1;
  return bytes.subarray(0, end).toString("utf8");
}

/**
 * The bytes of a fragmented message held until its last fragment (RFC 6455 5.4), in one
 * buffer that doubles as it fills. Holding each fragment as a Buffer of its own would cost
 * an object (and a pool slice) per fragment, far more than the few bytes an empty or tiny
 * fragment carries; here a fragment costs its bytes only, and the copying stays linear in
 * the message's size (each byte is moved at most once per doubling: under 2 × in all).
 * The buffer never grows past `capacityLimit`, the most a message may hold with its headers.
 */
export class MessageBuffer {
  private buffer = Buffer.alloc(0);
  private used = 0;
  private copied = 0;

  constructor(private readonly capacityLimit: number) {}

  /** Bytes held. */
  get length(): number {
    return this.used;
  }

  /** Bytes copied since this buffer was made, moves included: the cost of holding (tests). */
  get bytesCopied(): number {
    return this.copied;
  }

  append(bytes: Buffer): void {
    const needed = this.used + bytes.length;
    if (needed > this.buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(needed, Math.min(this.capacityLimit, Math.max(1024, this.buffer.length * 2))));
      this.buffer.copy(grown, 0, 0, this.used);
      this.copied += this.used;
      this.buffer = grown;
    }
    bytes.copy(this.buffer, this.used);
    this.copied += bytes.length;
    this.used = needed;
  }

  /**
   * The bytes held, which the caller now owns (a socket write keeps them until flushed);
   * the buffer starts empty again with fresh memory.
   */
  take(): Buffer {
    const bytes = this.buffer.subarray(0, this.used);
    this.clear();
    return bytes;
  }

  clear(): void {
    this.buffer = Buffer.alloc(0);
    this.used = 0;
  }
}

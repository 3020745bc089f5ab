import { describe, expect, it } from "vitest";
import { MessageBuffer, PING, acceptKey, closeFrame, controlFrame, readClose, truncateReason } from "../../src/ws/frames";
import { OP, closePayload, decodeFrames } from "../fixtures/raw-frames";

describe("#acceptKey", () => {
  it("answers RFC 6455 1.3's own example", () => {
    expect(acceptKey("dGhlIHNhbXBsZSBub25jZQ==")).toBe("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  });
});

describe("#controlFrame and #closeFrame", () => {
  it("writes an unmasked frame towards the browser and a masked one towards the backend", () => {
    const [toBrowser] = decodeFrames(controlFrame(PING, Buffer.from("hi"), { mask: false })).frames;
    const [toBackend] = decodeFrames(controlFrame(PING, Buffer.from("hi"), { mask: true })).frames;
    expect(toBrowser).toEqual({ fin: true, opcode: OP.ping, masked: false, payload: Buffer.from("hi") });
    expect(toBackend).toEqual({ fin: true, opcode: OP.ping, masked: true, payload: Buffer.from("hi") });
  });

  it("masks each frame with a fresh key (RFC 6455 5.3)", () => {
    const keys = new Set(Array.from({ length: 50 }, () => controlFrame(PING, Buffer.alloc(0), { mask: true }).subarray(2, 6).toString("hex")));
    expect(keys.size).toBe(50);
  });

  it("cuts a long reason to fit a control frame, on a character boundary", () => {
    const frame = closeFrame(4000, "é".repeat(100), { mask: false });
    const [decoded] = decodeFrames(frame).frames;
    expect(decoded?.payload.length).toBeLessThanOrEqual(125);
    expect(decoded?.payload.readUInt16BE(0)).toBe(4000);
    expect(decoded?.payload.subarray(2).toString("utf8")).toBe("é".repeat(61));
    expect(truncateReason("short")).toBe("short");
  });
});

describe("#readClose", () => {
  it.each([
    ["an empty payload", Buffer.alloc(0), { code: 1005, reason: "" }],
    ["1000", closePayload(1000), { code: 1000, reason: "" }],
    ["4999 with a reason", closePayload(4999, "bye é"), { code: 4999, reason: "bye é" }],
    ["3000", closePayload(3000), { code: 3000, reason: "" }],
  ])("accepts %s", (_name, payload, expected) => {
    expect(readClose(payload)).toEqual(expected);
  });

  it.each([
    ["a lone byte", Buffer.from([3])],
    ["999", closePayload(999)],
    ["1004 (reserved)", closePayload(1004)],
    ["1005 (never on the wire)", closePayload(1005)],
    ["1006 (never on the wire)", closePayload(1006)],
    ["1015 (never on the wire)", closePayload(1015)],
    ["2999", closePayload(2999)],
    ["5000", closePayload(5000)],
    ["a reason that is not UTF-8", Buffer.concat([closePayload(1000), Buffer.from([0xff, 0xfe])])],
  ])("refuses %s", (_name, payload) => {
    expect(readClose(payload)).toBeNull();
  });
});

describe("MessageBuffer", () => {
  it("holds 65,536 small pieces whole with linear copying: under 3 bytes copied per byte held", () => {
    // A 4 MiB message in 64-byte fragments, each with its 6-byte masked header.
    const buffer = new MessageBuffer(5 * 1024 * 1024);
    const pieces = Array.from({ length: 65_536 }, (_, i) => [Buffer.alloc(6, i & 0xff), Buffer.alloc(64, (i >> 8) & 0xff)]).flat();
    for (const piece of pieces) buffer.append(piece);
    expect(buffer.length).toBe(65_536 * 70);
    expect(buffer.bytesCopied).toBeLessThan(3 * buffer.length);
    expect(buffer.take().equals(Buffer.concat(pieces))).toBe(true);
    expect(buffer.length).toBe(0);
  });

  it("starts afresh after take(): what was taken is not overwritten by what comes next", () => {
    const buffer = new MessageBuffer(1500);
    buffer.append(Buffer.alloc(1000, 1));
    buffer.append(Buffer.alloc(500, 2));
    const first = buffer.take();
    buffer.append(Buffer.alloc(1500, 3));
    expect(first.equals(Buffer.concat([Buffer.alloc(1000, 1), Buffer.alloc(500, 2)]))).toBe(true);
    expect(buffer.take().equals(Buffer.alloc(1500, 3))).toBe(true);
  });
});

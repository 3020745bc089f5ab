import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRecordingBackend, type RecordingBackend } from "../fixtures/backend";
import { until } from "../fixtures/wait";
import { startHarness, type Harness } from "../fixtures/harness";
import { FUZZ_SEED, prng } from "../fixtures/prng";
import { startRawBackend, type RawBackend } from "../fixtures/raw-backend";
import { OP, closePayload, decodeFrames, encodeFrame, type DecodedFrame } from "../fixtures/raw-frames";
import { closeOf, inbox, mintTicket, nextMessage, openSocket, upgradeLines } from "../fixtures/ws-client";
import { Relay, maxFragments } from "../../src/ws/relay";

function relayOf(h: Harness, token: string): Relay {
  const [sessionId = ""] = token.split(".");
  const relay = h.bff.registry.connectionsOf(sessionId).find((c) => c instanceof Relay);
  if (!(relay instanceof Relay)) throw new Error("no relay for the session");
  return relay;
}

/**
 * A browser socket driven by hand: a real TCP connection that completes the upgrade and is
 * then ours, to write frames no `ws` client would send, or to stop reading altogether.
 */
async function rawSocket(h: Harness, token: string, ticket: string): Promise<Socket> {
  const url = new URL(h.origin);
  const socket = connect(Number(url.port), url.hostname);
  socket.write(`${upgradeLines(h, { protocols: `game.v1, ticket.${ticket}`, token }).join("\r\n")}\r\n\r\n`);
  let answer = "";
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      answer += chunk.toString("latin1");
      if (!answer.includes("\r\n\r\n")) return;
      socket.off("data", onData);
      socket.pause();
      if (answer.startsWith("HTTP/1.1 101")) resolve();
      else reject(new Error(`upgrade answered ${answer.split("\r\n")[0] ?? ""}`));
    };
    socket.on("data", onData);
    socket.once("error", reject);
  });
  return socket;
}

/** The code of the close frame the server sends on a raw socket, or 1006 if it just hangs up. */
function rawCloseCode(socket: Socket): Promise<number> {
  let bytes = Buffer.alloc(0);
  return new Promise((resolve) => {
    socket.on("data", (chunk: Buffer) => {
      bytes = Buffer.concat([bytes, chunk]);
    });
    socket.once("close", () => {
      // Server frames are unmasked: a close frame is 0x88, a 7-bit length, then the code.
      const at = bytes.indexOf(0x88);
      resolve(at !== -1 && bytes.length >= at + 4 ? bytes.readUInt16BE(at + 2) : 1006);
    });
    socket.on("error", () => undefined);
    socket.resume();
  });
}

/** A player logged in as `name` with a socket open through the gate. */
async function connectedAs(h: Harness, name: string): Promise<{ ws: import("ws").WebSocket; token: string }> {
  const { token } = await h.login(name);
  const ws = await openSocket(h, await mintTicket(h, token), { token });
  return { ws, token };
}

/** Everything the BFF writes to a raw browser socket, decoded as it arrives. */
function received(socket: Socket): { frames: DecodedFrame[]; closed: Promise<void> } {
  const out = { frames: [] as DecodedFrame[], closed: new Promise<void>((resolve) => socket.once("close", () => resolve())) };
  let pending = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    const { frames, used } = decodeFrames(pending);
    pending = pending.subarray(used);
    out.frames.push(...frames);
  });
  socket.on("error", () => undefined);
  socket.resume();
  return out;
}

function closeCodeOf(frames: DecodedFrame[]): number | undefined {
  return frames.find((f) => f.opcode === OP.close)?.payload.readUInt16BE(0);
}

const tick = (ms = 5): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The frames a server must fail the connection on, modelled on Autobahn 3.2–3.4 (RSV bits),
 * 4.1.3–4.1.5 and 4.2.3–4.2.5 (reserved opcodes) and 5.15 (a continuation with nothing to
 * continue): the first byte of a masked frame carrying "reserved".
 */
const BAD_FRAMES: [string, number][] = [
  ["RSV1 set", 0x80 | 0x40 | OP.text],
  ["RSV2 set", 0x80 | 0x20 | OP.text],
  ["RSV3 set", 0x80 | 0x10 | OP.text],
  ...[3, 4, 5, 6, 7].map((op): [string, number] => [`reserved opcode ${op}`, 0x80 | op]),
  ...[0xb, 0xc, 0xd, 0xe, 0xf].map((op): [string, number] => [`reserved control opcode 0x${op.toString(16)}`, 0x80 | op]),
  ["a continuation with nothing to continue", 0x80 | OP.continuation],
];

function badFrame(firstByte: number): Buffer {
  const frame = encodeFrame(OP.text, "reserved", { masked: true });
  frame[0] = firstByte;
  return frame;
}

const VALID = "Hello, world!";

/** A message cut into masked fragments of `size` bytes (the last one takes the rest). */
function fragmented(data: Buffer, size: number): Buffer {
  const frames: Buffer[] = [];
  for (let at = 0; at < data.length; at += size) {
    const end = Math.min(data.length, at + size);
    frames.push(encodeFrame(at === 0 ? OP.binary : OP.continuation, data.subarray(at, end), { masked: true, fin: end === data.length }));
  }
  return Buffer.concat(frames);
}

/** Sends `chunk` from the backend side until `done()` holds (bounded: at most 64 MiB). */
async function floodUntil(server: { send(data: Buffer, options: { binary: boolean }): void } | undefined, chunk: Buffer, done: () => boolean): Promise<void> {
  for (let sent = 0; !done() && sent < 64 * 1024; sent += 1) {
    server?.send(chunk, { binary: true });
    if (sent % 256 === 255) await new Promise((resolve) => setImmediate(resolve));
  }
}

describe("the relay (SECURITY.md E24–E28)", () => {
  let backend: RecordingBackend;
  let h: Harness;
  beforeAll(async () => {
    backend = await startRecordingBackend();
    h = await startHarness({ env: { GAME_BACKEND_URL: backend.url, WS_MAX_MESSAGE_BYTES: "1024", WS_MAX_MESSAGES_PER_SECOND: "10" } });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
  });

  const connected = (name: string): Promise<{ ws: import("ws").WebSocket; token: string }> => connectedAs(h, name);

  it("keeps order: 20 messages arrive at the backend and back in the order sent", async () => {
    const { ws } = await connected("order");
    const echoes: string[] = [];
    ws.on("message", (data) => echoes.push(data.toString()));
    for (let i = 0; i < 20; i += 1) ws.send(`m${i}`);
    await until(() => echoes.length === 20, "20 echoes");
    expect(echoes).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
    ws.close();
  });

  it("closes with 1009 a message one byte over WS_MAX_MESSAGE_BYTES, and forwards nothing of it", async () => {
    const { ws } = await connected("big");
    const received = backend.received.length;
    ws.send(Buffer.alloc(1024, 1));
    await nextMessage(ws);
    expect(backend.received.length).toBe(received + 1);
    const closed = closeOf(ws);
    ws.send(Buffer.alloc(1025, 2));
    expect((await closed).code).toBe(1009);
    expect(backend.received.length).toBe(received + 1);
    expect(backend.received.some((m) => m.data.length === 1025)).toBe(false);
  });

  it("closes with 1008 a socket that floods past its rate and burst", async () => {
    const { ws } = await connected("flood");
    const closed = closeOf(ws);
    for (let i = 0; i < 40; i += 1) ws.send(`flood ${i}`);
    expect((await closed).code).toBe(1008);
    expect(h.audit.named("ratelimit.hit").some((e) => e.reason === "ws messages")).toBe(true);
  });

  it("keeps the BFF's buffer bounded for a client that never reads, by pausing the backend", async () => {
    const { token } = await h.login("slow-reader");
    // A browser that completes the upgrade and then never reads a byte: the kernel's
    // buffers fill first, then the BFF's, until the relay stops reading the backend.
    const socket = await rawSocket(h, token, await mintTicket(h, token));
    const relay = relayOf(h, token);
    const server = backend.sockets.at(-1);
    const chunk = Buffer.alloc(1000, 7);
    // Flood from the backend until the relay pauses it.
    await floodUntil(server, chunk, () => relay.backendPaused);
    expect(relay.backendPaused).toBe(true);
    // Keep pushing until the kernel buffers between backend and BFF are full too and the
    // backend's own send buffer grows: proof that the BFF stopped reading, not just slowed.
    await floodUntil(server, chunk, () => (server?.bufferedAmount ?? 0) >= 1024 * 1024);
    expect(server?.bufferedAmount).toBeGreaterThanOrEqual(1024 * 1024);
    expect(relay.bufferedToClient).toBeLessThan(1024 * 1024 + 64 * 1024);
    expect(relay.backendPaused).toBe(true);
    socket.destroy();
  });

  it("resumes the backend once a slow client drains below the low-water mark", async () => {
    const { token } = await h.login("slow-then-fast");
    const socket = await rawSocket(h, token, await mintTicket(h, token));
    const relay = relayOf(h, token);
    const server = backend.sockets.at(-1);
    const chunk = Buffer.alloc(1000, 8);
    await floodUntil(server, chunk, () => relay.backendPaused);
    expect(relay.backendPaused).toBe(true);
    socket.on("data", () => undefined);
    socket.resume();
    await until(() => !relay.backendPaused, "the relay resuming the backend", 5000);
    socket.destroy();
  });

  it("passes the backend's own close code and reason through", async () => {
    const { ws } = await connected("backend-closes");
    const closed = closeOf(ws);
    backend.sockets.at(-1)?.close(4000, "round over");
    expect(await closed).toEqual({ code: 4000, reason: "round over" });
  });

  it("closes with 1014 when the backend drops the connection", async () => {
    const { ws } = await connected("backend-dies");
    const closed = closeOf(ws);
    backend.sockets.at(-1)?.terminate();
    expect((await closed).code).toBe(1014);
  });

  it("closes a socket that sends a malformed frame, and only that one", async () => {
    const a = await h.login("malformed");
    const b = await connected("bystander");
    const raw = await rawSocket(h, a.token, await mintTicket(h, a.token));
    const closed = rawCloseCode(raw);
    // FIN, RSV1 set, opcode 3 (reserved), masked, empty: two violations of RFC 6455 5.2.
    raw.write(Buffer.from([0xc3, 0x80, 0, 0, 0, 0]));
    expect([1002, 1006]).toContain(await closed);
    b.ws.send("still here");
    expect((await nextMessage(b.ws)).data.toString()).toBe("still here");
    expect((await fetch(`${h.origin}/healthz`)).status).toBe(200);
    b.ws.close();
  });

  // The relay reads headers only; the backend, as an endpoint, checks UTF-8 (RFC 6455 8.1)
  // and its 1007 reaches the browser. No game code ever sees the message.
  it("closes a socket whose text frame is not UTF-8 with the backend's 1007; the game receives nothing", async () => {
    const { token } = await h.login("bad-utf8");
    const raw = await rawSocket(h, token, await mintTicket(h, token));
    const received = backend.received.length;
    const closed = rawCloseCode(raw);
    // FIN + text, masked with a zero key, 2 bytes: 0xff 0xfe is never valid UTF-8.
    raw.write(Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe]));
    expect(await closed).toBe(1007);
    expect(backend.received.length).toBe(received);
  });

  it("refuses a fragmented control frame without disturbing the process", async () => {
    const { token } = await h.login("frag-ping");
    const raw = await rawSocket(h, token, await mintTicket(h, token));
    const closed = rawCloseCode(raw);
    raw.write(Buffer.from([0x09, 0x80, 0, 0, 0, 0])); // a ping without FIN (RFC 6455 5.5)
    expect([1002, 1006]).toContain(await closed);
    expect((await fetch(`${h.origin}/healthz`)).status).toBe(200);
  });

  it("refuses a control frame with an extended length, even a short one (RFC 6455 5.5)", async () => {
    const { token } = await h.login("long-ping");
    const raw = await rawSocket(h, token, await mintTicket(h, token));
    const out = received(raw);
    // FIN + ping, masked, 126 = "16-bit length follows", then 5, a zero key and 5 bytes.
    raw.write(Buffer.from([0x89, 0xfe, 0, 5, 0, 0, 0, 0, 1, 2, 3, 4, 5]));
    await out.closed;
    expect(closeCodeOf(out.frames)).toBe(1002);
  });

  it("closes the browser with 1000 when the backend closes without a code", async () => {
    const { ws } = await connected("backend-no-code");
    const closed = closeOf(ws);
    backend.sockets.at(-1)?.close();
    expect((await closed).code).toBe(1000);
  });

  it("closes the backend side with the browser's code when the browser leaves", async () => {
    const { ws } = await connected("browser-leaves");
    const server = backend.sockets.at(-1);
    const backendClosed = new Promise<number>((resolve) => server?.once("close", (code: number) => resolve(code)));
    ws.close(4100, "bye");
    expect(await backendClosed).toBe(4100);
  });

  it("does not let a raw TCP client that stops mid-frame hurt anyone", async () => {
    const { token } = await h.login("raw");
    const ticket = await mintTicket(h, token);
    const url = new URL(h.origin);
    const socket = connect(Number(url.port), url.hostname);
    await new Promise((resolve) => socket.once("connect", resolve));
    socket.write(`${upgradeLines(h, { protocols: `game.v1, ticket.${ticket}`, token }).join("\r\n")}\r\n\r\n`);
    socket.write(Buffer.from([0x82, 0xfe, 0x10])); // a binary frame header cut off mid-length
    socket.destroy();
    expect((await fetch(`${h.origin}/healthz`)).status).toBe(200);
  });

  it("relays a fragmented message whole, and a ping between its fragments both ways", async () => {
    const { token } = await h.login("fragments");
    const raw = await rawSocket(h, token, await mintTicket(h, token));
    const out = received(raw);
    const before = backend.received.length;
    raw.write(encodeFrame(OP.text, "hel", { masked: true, fin: false }));
    raw.write(encodeFrame(OP.ping, "between", { masked: true }));
    raw.write(encodeFrame(OP.continuation, "lo", { masked: true }));
    await until(() => out.frames.some((f) => f.opcode === OP.text), "the echo");
    expect(backend.received.slice(before)).toEqual([{ data: Buffer.from("hello"), isBinary: false }]);
    // The backend's own pong to the browser's ping came back through the relay, unmasked.
    expect(out.frames.find((f) => f.opcode === OP.pong)).toMatchObject({ masked: false, payload: Buffer.from("between") });
    expect(out.frames.find((f) => f.opcode === OP.text)?.payload.toString()).toBe("hello");
    raw.destroy();
  });

  it("closes with 1009 a fragmented message whose fragments fit but whose total does not, forwarding none of it", async () => {
    const { token } = await h.login("fragments-too-big");
    const raw = await rawSocket(h, token, await mintTicket(h, token));
    const out = received(raw);
    const before = backend.received.length;
    raw.write(encodeFrame(OP.binary, Buffer.alloc(600, 1), { masked: true, fin: false }));
    raw.write(encodeFrame(OP.continuation, Buffer.alloc(600, 2), { masked: true }));
    await out.closed;
    expect(closeCodeOf(out.frames)).toBe(1009);
    expect(backend.received.length).toBe(before);
  });

  it("joins a frame header split across TCP segments", async () => {
    const { token } = await h.login("split-header");
    const raw = await rawSocket(h, token, await mintTicket(h, token));
    raw.setNoDelay(true);
    const out = received(raw);
    const frame = encodeFrame(OP.binary, Buffer.alloc(200, 9), { masked: true });
    // 2 + 2 + 4 header bytes, one segment each, then the payload in two.
    for (let i = 0; i < 8; i += 1) {
      raw.write(frame.subarray(i, i + 1));
      await tick();
    }
    raw.write(frame.subarray(8, 100));
    await tick();
    raw.write(frame.subarray(100));
    await until(() => out.frames.length > 0, "the echo");
    expect(out.frames[0]).toMatchObject({ opcode: OP.binary, payload: Buffer.alloc(200, 9) });
    raw.destroy();
  });

  it("refuses an unmasked frame from the browser with 1002 (RFC 6455 5.1)", async () => {
    const { token } = await h.login("unmasked");
    const raw = await rawSocket(h, token, await mintTicket(h, token));
    const out = received(raw);
    const before = backend.received.length;
    raw.write(encodeFrame(OP.text, "plain", { masked: false }));
    await out.closed;
    expect(closeCodeOf(out.frames)).toBe(1002);
    expect(backend.received.length).toBe(before);
  });

  it("puts a session-end close frame after the frame in flight, never inside it", async () => {
    const { token } = await h.login("mid-frame");
    const raw = await rawSocket(h, token, await mintTicket(h, token));
    raw.setNoDelay(true);
    const out = received(raw);
    const server = backend.sockets.at(-1);
    const backendClosed = new Promise<number>((resolve) => server?.once("close", (code: number) => resolve(code)));
    const before = backend.received.length;
    const frame = encodeFrame(OP.binary, Buffer.alloc(1000, 5), { masked: true });
    const relay = relayOf(h, token);
    const read = relay.bytesFromClient;
    raw.write(frame.subarray(0, 500));
    await until(() => relay.bytesFromClient >= read + 500, "the first half read by the relay");
    const [sessionId = ""] = token.split(".");
    h.bff.registry.closeSession(sessionId, 4401, "session ended");
    // The browser hears at once; the backend only once the frame it is reading is whole.
    await until(() => closeCodeOf(out.frames) === 4401, "the browser's 4401");
    raw.write(frame.subarray(500));
    expect(await backendClosed).toBe(4401);
    expect(backend.received.slice(before).map((m) => m.data.length)).toEqual([1000]);
    raw.destroy();
  });

  it("closes with 1008 a message in more fragments than the cap (128 at a 1 KiB limit), forwarding none of it", async () => {
    const { token } = await h.login("many-fragments");
    const raw = await rawSocket(h, token, await mintTicket(h, token));
    const out = received(raw);
    const before = backend.received.length;
    // Empty continuations grow nothing the size limit sees: the fragment cap must.
    const empty = encodeFrame(OP.continuation, Buffer.alloc(0), { masked: true, fin: false });
    raw.write(Buffer.concat([encodeFrame(OP.text, "a", { masked: true, fin: false }), ...Array.from({ length: 200 }, () => empty)]));
    await out.closed;
    expect(closeCodeOf(out.frames)).toBe(1008);
    expect(backend.received.length).toBe(before);
  });

  // Autobahn against a `ws` echo backend: the direct server echoes the valid message, then
  // closes with 1002. Through the relay, the echo must not be lost to the refusal.
  it.each(BAD_FRAMES)("echoes a message sent just before a frame with %s, then closes with 1002; the backend gets nothing after it", async (_name, firstByte) => {
    const { token } = await h.login(`bad-frame-${firstByte}`);
    const raw = await rawSocket(h, token, await mintTicket(h, token));
    const out = received(raw);
    const before = backend.received.length;
    const closes = backend.closes.length;
    // What follows the bad frame, a message and a ping, must never reach the backend.
    raw.write(Buffer.concat([encodeFrame(OP.text, VALID, { masked: true }), badFrame(firstByte), encodeFrame(OP.text, "after", { masked: true }), encodeFrame(OP.ping, "after", { masked: true })]));
    await out.closed;
    expect(out.frames.map((f) => f.opcode)).toEqual([OP.text, OP.close]);
    expect(out.frames[0]?.payload.toString()).toBe(VALID);
    expect(closeCodeOf(out.frames)).toBe(1002);
    expect(backend.received.slice(before)).toEqual([{ data: Buffer.from(VALID), isBinary: false }]);
    // The backend was closed by the relay (1000), not failed by a bad frame of its own.
    await until(() => backend.closes.length > closes, "the backend's close");
    expect(backend.closes.at(-1)?.code).toBe(1000);
  });

  it("echoes a message sent just before one over the limit, then closes with 1009", async () => {
    const { token } = await h.login("big-after-valid");
    const raw = await rawSocket(h, token, await mintTicket(h, token));
    const out = received(raw);
    const before = backend.received.length;
    raw.write(Buffer.concat([encodeFrame(OP.text, VALID, { masked: true }), encodeFrame(OP.binary, Buffer.alloc(1025, 3), { masked: true })]));
    await out.closed;
    expect(out.frames.map((f) => f.opcode)).toEqual([OP.text, OP.close]);
    expect(closeCodeOf(out.frames)).toBe(1009);
    expect(backend.received.slice(before)).toEqual([{ data: Buffer.from(VALID), isBinary: false }]);
  });

  it("counts the browser's pings and pongs against its message rate: a flood of them closes with 1008", async () => {
    const { token } = await h.login("ping-flood");
    const raw = await rawSocket(h, token, await mintTicket(h, token));
    const out = received(raw);
    const server = backend.sockets.at(-1);
    let pings = 0;
    server?.on("ping", () => {
      pings += 1;
    });
    const ping = encodeFrame(OP.ping, Buffer.alloc(125, 0x70), { masked: true });
    raw.write(Buffer.concat(Array.from({ length: 100 }, () => ping)));
    await out.closed;
    expect(closeCodeOf(out.frames)).toBe(1008);
    // The burst (2 × 10) went through, the rest did not.
    expect(pings).toBeLessThanOrEqual(20);
  });

  it("drops a browser that answers pings blindly, without echoing them", async () => {
    const { token } = await h.login("blind-pongs");
    const raw = await rawSocket(h, token, await mintTicket(h, token));
    // Its bytes are taken off the wire (so the hang-up is seen), but no ping is ever answered.
    const out = received(raw);
    let closed = false;
    void out.closed.then(() => {
      closed = true;
    });
    const relay = relayOf(h, token);
    relay.heartbeat();
    // Pongs of every kind an attacker could guess, none of them echoing the ping it never read.
    const pongs = Buffer.concat([encodeFrame(OP.pong, "", { masked: true }), encodeFrame(OP.pong, "portcullis", { masked: true })]);
    const read = relay.bytesFromClient;
    raw.write(pongs);
    await until(() => relay.bytesFromClient >= read + pongs.length, "the pongs read");
    expect(closed).toBe(false);
    relay.heartbeat();
    await until(() => closed, "the blind browser dropped");
    expect(out.frames.filter((f) => f.opcode === OP.ping)).toHaveLength(1);
  });
});

describe("the relay towards the backend, byte by byte (a raw backend)", () => {
  let backend: RawBackend;
  let h: Harness;
  beforeAll(async () => {
    backend = await startRawBackend();
    h = await startHarness({ env: { GAME_BACKEND_URL: backend.url, WS_MAX_MESSAGE_BYTES: "1024" } });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
  });

  const connected = (name: string): Promise<{ ws: import("ws").WebSocket; token: string }> => connectedAs(h, name);

  it("delivers what the backend sends in the same segment as its 101", async () => {
    backend.options = { greeting: encodeFrame(OP.text, "welcome", { masked: false }) };
    try {
      const { ws } = await connected("greeted");
      await until(() => inbox(ws).length > 0, "the greeting");
      expect(inbox(ws)[0]).toEqual({ data: Buffer.from("welcome"), isBinary: false });
      ws.close();
    } finally {
      backend.options = {};
    }
  });

  it("passes the browser's frames on still masked, payload and type untouched", async () => {
    const { ws } = await connected("masked-through");
    const connection = backend.connections.at(-1);
    ws.send(Buffer.from([1, 2, 3]));
    ws.send("text stays text");
    await until(() => (connection?.frames.length ?? 0) >= 2, "two frames at the backend");
    expect(connection?.frames.slice(0, 2)).toEqual([
      { fin: true, opcode: OP.binary, masked: true, payload: Buffer.from([1, 2, 3]) },
      { fin: true, opcode: OP.text, masked: true, payload: Buffer.from("text stays text") },
    ]);
    ws.close();
  });

  it("closes the browser with 1014 and the backend with 1009 when the backend sends a message over the limit", async () => {
    const { ws } = await connected("backend-too-big");
    const connection = backend.connections.at(-1);
    const closed = closeOf(ws);
    connection?.write(encodeFrame(OP.binary, Buffer.alloc(1025), { masked: false }));
    expect((await closed).code).toBe(1014);
    expect(inbox(ws)).toEqual([]);
    await until(() => connection?.frames.some((f) => f.opcode === OP.close) ?? false, "the backend's close");
    expect(connection?.frames.find((f) => f.opcode === OP.close)?.payload.readUInt16BE(0)).toBe(1009);
  });

  it("closes the browser with 1014 when the backend sends a masked frame, and the backend with 1002", async () => {
    const { ws } = await connected("backend-masks");
    const connection = backend.connections.at(-1);
    const closed = closeOf(ws);
    connection?.write(encodeFrame(OP.text, "masked by a server", { masked: true }));
    expect((await closed).code).toBe(1014);
    await until(() => connection?.frames.some((f) => f.opcode === OP.close) ?? false, "the backend's close");
    expect(connection?.frames.find((f) => f.opcode === OP.close)?.payload.readUInt16BE(0)).toBe(1002);
  });

  it("keeps its own pings to itself: neither side sees the pong that answers the BFF's ping", async () => {
    const { ws, token } = await connected("heartbeats");
    const connection = backend.connections.at(-1);
    const relay = relayOf(h, token);
    const browserPongs: Buffer[] = [];
    ws.on("ping", (payload: Buffer) => browserPongs.push(payload));
    for (let beat = 0; beat < 3; beat += 1) {
      relay.heartbeat();
      await until(() => browserPongs.length > beat && (connection?.frames.filter((f) => f.opcode === OP.ping).length ?? 0) > beat, `ping ${beat + 1}`);
    }
    // Three rounds, and both sides answered every one: nobody was dropped.
    expect(ws.readyState).toBe(1);
    expect(connection?.frames.filter((f) => f.opcode === OP.ping).every((f) => f.masked)).toBe(true);
    await tick(20);
    expect(connection?.frames.some((f) => f.opcode === OP.pong)).toBe(false);
    ws.close();
  });

  it("drops a backend that stops answering pings, and closes the browser with 1014", async () => {
    backend.options = { answerPings: false };
    try {
      const { ws, token } = await connected("dead-backend");
      const connection = backend.connections.at(-1);
      const relay = relayOf(h, token);
      const closed = closeOf(ws);
      relay.heartbeat();
      await until(() => connection?.frames.some((f) => f.opcode === OP.ping) ?? false, "the ping");
      relay.heartbeat();
      expect((await closed).code).toBe(1014);
    } finally {
      backend.options = {};
    }
  });

  it("passes a browser's close frame to the backend and the backend's answer back", async () => {
    const { ws } = await connected("handshake-through");
    const connection = backend.connections.at(-1);
    const closed = closeOf(ws);
    ws.close(4321, "done");
    await until(() => connection?.frames.some((f) => f.opcode === OP.close) ?? false, "the close at the backend");
    expect(connection?.frames.find((f) => f.opcode === OP.close)?.payload).toEqual(closePayload(4321, "done"));
    connection?.write(encodeFrame(OP.close, closePayload(4322, "answer"), { masked: false }));
    // The browser's closing handshake completes with the backend's own answer (RFC 6455
    // 7.1.5: the close code is the one in the close frame received).
    expect(await closed).toEqual({ code: 4322, reason: "answer" });
    // One audit event, once both connections are gone, with the code the browser sent.
    await until(() => h.audit.named("ws.closed").some((e) => e.code === 4321), "the ws.closed event", 3000);
  });

  it("never lets the backend tell the browser 4401 either: only the BFF knows a session ended", async () => {
    const { ws } = await connected("backend-says-4401");
    const closed = closeOf(ws);
    backend.connections.at(-1)?.write(encodeFrame(OP.close, closePayload(4401, "session ended"), { masked: false }));
    expect((await closed).code).toBe(1014);
  });

  it("never lets a browser tell the backend 4401, the BFF's own word for a session that ended", async () => {
    const { ws } = await connected("spoofs-4401");
    const connection = backend.connections.at(-1);
    ws.close(4401, "session ended");
    await until(() => connection?.frames.some((f) => f.opcode === OP.close) ?? false, "the close at the backend");
    expect(connection?.frames.find((f) => f.opcode === OP.close)?.payload.readUInt16BE(0)).toBe(1000);
  });

  it.each(BAD_FRAMES.flatMap(([name, firstByte]) => ["in one write", "in separate writes"].map((mode): [string, string, number] => [name, mode, firstByte])))(
    "after a frame with %s (%s): the backend gets the message before it and our close, nothing after; its late answer reaches the browser before the 1002",
    async (_name, mode, firstByte) => {
      const { token } = await h.login(`raw-bad-${firstByte}-${mode.length}`);
      const raw = await rawSocket(h, token, await mintTicket(h, token));
      raw.setNoDelay(true);
      const out = received(raw);
      const relay = relayOf(h, token);
      const connection = backend.connections.at(-1);
      const frames = [encodeFrame(OP.text, VALID, { masked: true }), badFrame(firstByte), encodeFrame(OP.text, "after", { masked: true }), encodeFrame(OP.ping, "after", { masked: true })];
      const read = relay.bytesFromClient;
      if (mode === "in one write") {
        raw.write(Buffer.concat(frames));
      } else {
        // The valid message is at the backend before the bad frame leaves the browser.
        raw.write(frames[0] ?? Buffer.alloc(0));
        await until(() => (connection?.frames.length ?? 0) > 0, "the valid message at the backend");
        for (const frame of frames.slice(1)) {
          const sent = relay.bytesFromClient;
          raw.write(frame);
          await until(() => relay.bytesFromClient >= sent + frame.length, "the frame read");
        }
      }
      const total = frames.reduce((n, f) => n + f.length, 0);
      await until(() => relay.bytesFromClient >= read + total, "everything read");
      await until(() => connection?.frames.some((f) => f.opcode === OP.close) ?? false, "the backend's close");
      await tick(20);
      expect(connection?.frames.map((f) => f.opcode)).toEqual([OP.text, OP.close]);
      expect(connection?.frames[0]?.payload.toString()).toBe(VALID);
      expect(connection?.frames[1]?.payload.readUInt16BE(0)).toBe(1000);
      // The backend answers the message only now, after our close: the answer was on its way.
      connection?.write(Buffer.concat([encodeFrame(OP.text, `echo: ${VALID}`, { masked: false }), encodeFrame(OP.close, closePayload(1000), { masked: false })]));
      await out.closed;
      expect(out.frames.map((f) => f.opcode)).toEqual([OP.text, OP.close]);
      expect(out.frames[0]?.payload.toString()).toBe(`echo: ${VALID}`);
      expect(closeCodeOf(out.frames)).toBe(1002);
    },
  );

  it("closes the browser with 1002 when the grace ends and the backend never closed; the heartbeat neither pings nor drops it meanwhile", async () => {
    const { token } = await h.login("silent-after-bad-frame");
    const raw = await rawSocket(h, token, await mintTicket(h, token));
    const out = received(raw);
    const relay = relayOf(h, token);
    const connection = backend.connections.at(-1);
    raw.write(Buffer.concat([encodeFrame(OP.text, VALID, { masked: true }), badFrame(0x80 | 0x40 | OP.text)]));
    await until(() => connection?.frames.some((f) => f.opcode === OP.close) ?? false, "the backend's close");
    // Two heartbeat ticks: a browser pinged on the first would be dropped on the second,
    // since it is no longer read and its pong could never count.
    relay.heartbeat();
    relay.heartbeat();
    connection?.write(encodeFrame(OP.text, "late answer", { masked: false }));
    await until(() => out.frames.length > 0, "the late answer");
    await out.closed;
    expect(out.frames.map((f) => f.opcode)).toEqual([OP.text, OP.close]);
    expect(out.frames[0]?.payload.toString()).toBe("late answer");
    expect(closeCodeOf(out.frames)).toBe(1002);
  });

  it("writes no data to the backend after its close frame, not even a held message that completes later (RFC 6455 5.5.1)", async () => {
    const { token } = await h.login("data-after-close");
    const raw = await rawSocket(h, token, await mintTicket(h, token));
    raw.setNoDelay(true);
    received(raw);
    const connection = backend.connections.at(-1);
    const relay = relayOf(h, token);
    const first = encodeFrame(OP.text, "hel", { masked: true, fin: false });
    const last = encodeFrame(OP.continuation, "lo, after the session ended", { masked: true });
    const read = relay.bytesFromClient;
    // The first fragment, then the last one's header (6 bytes) and 3 bytes of its payload.
    raw.write(Buffer.concat([first, last.subarray(0, 9)]));
    await until(() => relay.bytesFromClient >= read + first.length + 9, "the relay reading into the last fragment");
    const [sessionId = ""] = token.split(".");
    h.bff.registry.closeSession(sessionId, 4401, "session ended");
    await until(() => connection?.frames.some((f) => f.opcode === OP.close) ?? false, "the backend's close frame");
    raw.write(last.subarray(9));
    await until(() => relay.bytesFromClient >= read + first.length + last.length, "the rest read");
    await tick(20);
    expect(connection?.frames.map((f) => f.opcode)).toEqual([OP.close]);
    raw.destroy();
  });
});

describe(`the relay's frame reader, seeded (seed ${FUZZ_SEED}; FUZZ_SEED replays)`, () => {
  let backend: RecordingBackend;
  let h: Harness;
  beforeAll(async () => {
    backend = await startRecordingBackend({ echo: false });
    h = await startHarness({ env: { GAME_BACKEND_URL: backend.url, WS_MAX_MESSAGE_BYTES: "4096", WS_MAX_MESSAGES_PER_SECOND: "100000" } });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
  });

  it("relays 400 messages, some fragmented with pings between fragments, cut into random segments: whole and in order", async () => {
    const next = prng(FUZZ_SEED);
    const int = (max: number): number => Math.floor(next() * max);
    const sent: { data: Buffer; isBinary: boolean }[] = [];
    const frames: Buffer[] = [];
    for (let m = 0; m < 400; m += 1) {
      const isBinary = next() < 0.5;
      const size = [0, 1, 125, 126, 127, 4096][int(6)] ?? 0;
      const length = next() < 0.3 ? size : int(4097);
      const data = isBinary ? Buffer.from(Array.from({ length }, () => int(256))) : Buffer.from("é!".repeat(length).slice(0, Math.floor(length / 2)));
      sent.push({ data, isBinary });
      // Fragments cut anywhere, even inside a UTF-8 character: the backend checks the whole message.
      const pieces = next() < 0.3 ? 1 + int(4) : 1;
      let at = 0;
      for (let p = 0; p < pieces; p += 1) {
        const end = p === pieces - 1 ? data.length : at + int(data.length - at + 1);
        frames.push(encodeFrame(p === 0 ? (isBinary ? OP.binary : OP.text) : OP.continuation, data.subarray(at, end), { masked: true, fin: p === pieces - 1 }));
        if (p < pieces - 1 && next() < 0.5) frames.push(encodeFrame(OP.ping, "x".repeat(int(126)), { masked: true }));
        at = end;
      }
    }
    const stream = Buffer.concat(frames);
    const { token } = await h.login("seeded");
    const raw = await rawSocket(h, token, await mintTicket(h, token));
    raw.setNoDelay(true);
    const out = received(raw);
    const before = backend.received.length;
    for (let at = 0; at < stream.length; ) {
      const end = Math.min(stream.length, at + 1 + int(next() < 0.5 ? 16 : 9000));
      raw.write(stream.subarray(at, end));
      at = end;
      if (next() < 0.2) await tick(1);
    }
    await until(() => backend.received.length - before === sent.length, "every message at the backend", 15_000);
    expect(backend.received.slice(before)).toEqual(sent);
    expect(closeCodeOf(out.frames)).toBeUndefined();
    raw.destroy();
  });

  it("survives random bytes after the handshake: that socket closes, the process serves on", async () => {
    const next = prng(FUZZ_SEED + 1);
    for (let round = 0; round < 30; round += 1) {
      const { token } = await h.login(`noise-${round}`);
      const raw = await rawSocket(h, token, await mintTicket(h, token));
      const out = received(raw);
      raw.write(Buffer.from(Array.from({ length: 1 + Math.floor(next() * 300) }, () => Math.floor(next() * 256))));
      raw.end();
      await out.closed;
    }
    expect((await fetch(`${h.origin}/healthz`)).status).toBe(200);
    const { ws } = await (async () => {
      const { token } = await h.login("after-noise");
      return { ws: await openSocket(h, await mintTicket(h, token), { token }) };
    })();
    expect(ws.readyState).toBe(1);
    ws.close();
  });
});

describe("the fragment cap, which follows WS_MAX_MESSAGE_BYTES (Autobahn 9.3, 9.4)", () => {
  it("allows a message at the size limit in 64-byte fragments, and never fewer than 128 fragments", () => {
    expect(maxFragments(1024)).toBe(128);
    expect(maxFragments(65_536)).toBe(1024);
    expect(maxFragments(65_537)).toBe(1025);
    expect(maxFragments(16 * 1024 * 1024)).toBe(262_144);
  });

  // A raw backend: `ws` 8.23 itself refuses more than 16,384 fragments (its maxFragments),
  // and the relay passes fragments on as they came, so a `ws` backend would answer 1008.
  describe("at WS_MAX_MESSAGE_BYTES = 16 MiB", () => {
    let backend: RawBackend;
    let h: Harness;
    beforeAll(async () => {
      backend = await startRawBackend();
      h = await startHarness({ env: { GAME_BACKEND_URL: backend.url, WS_MAX_MESSAGE_BYTES: String(16 * 1024 * 1024) } });
    });
    afterAll(async () => {
      await h.close();
      await backend.close();
    });

    it("relays a 4 MiB message in 65,536 fragments of 64 bytes whole (Autobahn 9.3.1)", async () => {
      const { token } = await h.login("many-small-fragments");
      const raw = await rawSocket(h, token, await mintTicket(h, token));
      const out = received(raw);
      const connection = backend.connections.at(-1);
      const data = Buffer.alloc(4 * 1024 * 1024);
      for (let i = 0; i < data.length; i += 1) data[i] = (i * 31) & 0xff;
      raw.write(fragmented(data, 64));
      const whole = (): boolean => connection?.frames.at(-1)?.fin ?? false;
      await Promise.race([until(whole, "the last fragment at the backend", 15_000), out.closed]);
      expect(closeCodeOf(out.frames)).toBeUndefined();
      const frames = connection?.frames ?? [];
      expect(frames).toHaveLength(65_536);
      expect(frames[0]?.opcode).toBe(OP.binary);
      expect(frames.slice(1).every((f) => f.opcode === OP.continuation)).toBe(true);
      expect(Buffer.concat(frames.map((f) => f.payload)).equals(data)).toBe(true);
      raw.destroy();
    });
  });

  describe("at the default WS_MAX_MESSAGE_BYTES (64 KiB)", () => {
    let backend: RecordingBackend;
    let h: Harness;
    beforeAll(async () => {
      backend = await startRecordingBackend({ echo: false });
      h = await startHarness({ env: { GAME_BACKEND_URL: backend.url } });
    });
    afterAll(async () => {
      await h.close();
      await backend.close();
    });

    it("relays a message at the limit in 1,024 fragments whole", async () => {
      const { token } = await h.login("fragments-at-limit");
      const raw = await rawSocket(h, token, await mintTicket(h, token));
      const out = received(raw);
      const before = backend.received.length;
      const data = Buffer.alloc(65_536, 5);
      raw.write(fragmented(data, 64));
      await Promise.race([until(() => backend.received.length > before, "the message at the backend"), out.closed]);
      expect(closeCodeOf(out.frames)).toBeUndefined();
      expect(backend.received.slice(before)).toEqual([{ data, isBinary: true }]);
      raw.destroy();
    });

    it.each([
      ["one byte over the size limit, in 1,009 fragments", 1009, 65_537, 65],
      ["within the size limit but in 1,025 fragments", 1008, 1025 * 63, 63],
    ])("refuses a message %s with %i, forwarding none of it", async (_name, code, size, fragmentSize) => {
      const { token } = await h.login(`fragments-refused-${code}`);
      const raw = await rawSocket(h, token, await mintTicket(h, token));
      const out = received(raw);
      const before = backend.received.length;
      raw.write(fragmented(Buffer.alloc(size, 7), fragmentSize));
      await out.closed;
      expect(closeCodeOf(out.frames)).toBe(code);
      expect(backend.received.length).toBe(before);
    });
  });
});

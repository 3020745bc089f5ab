import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRecordingBackend, type RecordingBackend } from "../fixtures/backend";
import { until } from "../fixtures/wait";
import { startHarness, type Harness } from "../fixtures/harness";
import { closeOf, mintTicket, nextMessage, openSocket, upgradeLines } from "../fixtures/ws-client";
import type { Relay } from "../../src/ws/relay";

function relayOf(h: Harness, token: string): Relay {
  const [sessionId = ""] = token.split(".");
  const [relay] = h.bff.registry.connectionsOf(sessionId);
  if (relay === undefined) throw new Error("no relay for the session");
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

  async function connected(name: string): Promise<{ ws: import("ws").WebSocket; token: string }> {
    const { token } = await h.login(name);
    const ws = await openSocket(h, await mintTicket(h, token), { token });
    return { ws, token };
  }

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

  it("closes a socket whose text frame is not UTF-8 with 1007, forwarding nothing", async () => {
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
});

import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRecordingBackend, type RecordingBackend } from "../fixtures/backend";
import { until } from "../fixtures/wait";
import { startHarness, type Harness } from "../fixtures/harness";
import { closeOf, mintTicket, nextMessage, openSocket } from "../fixtures/ws-client";
import type { Relay } from "../../src/ws/relay";

function relays(h: Harness): Relay[] {
  // The registry holds Relay instances; reach them for buffered/paused state.
  const bySession = (h.bff.registry as unknown as { bySession: Map<string, Set<Relay>> }).bySession;
  return [...bySession.values()].flatMap((set) => [...set]);
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
    const { ws, token } = await connected("slow-reader");
    const [sessionId] = token.split(".");
    // Stop reading at the TCP level: the kernel buffers fill, then the BFF's.
    (ws as unknown as { _socket: import("node:net").Socket })._socket.pause();
    const relay = relays(h).find((r) => r.sessionId === sessionId);
    expect(relay).toBeDefined();
    const server = backend.sockets.at(-1);
    const chunk = Buffer.alloc(1000, 7);
    let sent = 0;
    // Flood from the backend until the relay pauses it (bounded: at most 64 MiB).
    while (!relay?.backendPaused && sent < 64 * 1024) {
      server?.send(chunk, { binary: true });
      sent += 1;
      if (sent % 256 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    expect(relay?.backendPaused).toBe(true);
    // Keep pushing: nothing more accumulates in the BFF, it sits in the backend's own buffers.
    for (let i = 0; i < 2000; i += 1) server?.send(chunk, { binary: true });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(relay?.bufferedToClient ?? Infinity).toBeLessThan(1024 * 1024 + 64 * 1024);
    expect(relay?.backendPaused).toBe(true);
    ws.terminate();
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
    const a = await connected("malformed");
    const b = await connected("bystander");
    // Reach the raw TCP socket and write a frame with RSV1 set and a reserved opcode.
    const raw = (a.ws as unknown as { _socket: import("node:net").Socket })._socket;
    const closed = closeOf(a.ws);
    raw.write(Buffer.from([0xc3, 0x80, 0, 0, 0, 0]));
    expect([1002, 1006]).toContain((await closed).code);
    b.ws.send("still here");
    expect((await nextMessage(b.ws)).data.toString()).toBe("still here");
    expect((await fetch(`${h.origin}/healthz`)).status).toBe(200);
    b.ws.close();
  });

  it("closes a socket whose text frame is not UTF-8 with 1007", async () => {
    const { ws } = await connected("bad-utf8");
    const raw = (ws as unknown as { _socket: import("node:net").Socket })._socket;
    const closed = closeOf(ws);
    // FIN + text, masked, 2 bytes: 0xff 0xfe is never valid UTF-8.
    raw.write(Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe]));
    expect([1007, 1006]).toContain((await closed).code);
  });

  it("refuses a fragmented control frame without disturbing the process", async () => {
    const { ws } = await connected("frag-ping");
    const raw = (ws as unknown as { _socket: import("node:net").Socket })._socket;
    const closed = closeOf(ws);
    raw.write(Buffer.from([0x09, 0x80, 0, 0, 0, 0])); // ping without FIN
    expect([1002, 1006]).toContain((await closed).code);
    expect((await fetch(`${h.origin}/healthz`)).status).toBe(200);
  });

  it("does not let a raw TCP client that stops mid-frame hurt anyone", async () => {
    const { token } = await h.login("raw");
    const ticket = await mintTicket(h, token);
    const url = new URL(h.origin);
    const socket = connect(Number(url.port), url.hostname);
    await new Promise((resolve) => socket.once("connect", resolve));
    socket.write(
      [
        "GET /ws HTTP/1.1",
        `Host: ${url.host}`,
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        `Sec-WebSocket-Protocol: game.v1, ticket.${ticket}`,
        `Origin: ${h.origin}`,
        `Cookie: __Host-Http-session=${token}`,
        "",
        "",
      ].join("\r\n"),
    );
    socket.write(Buffer.from([0x82, 0xfe, 0x10])); // a binary frame header cut off mid-length
    socket.destroy();
    expect((await fetch(`${h.origin}/healthz`)).status).toBe(200);
  });
});

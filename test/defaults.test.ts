import { connect } from "node:net";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { loadConfig } from "../src/config";
import { createHTTPServer, startPortcullis } from "../src/portcullis";
import { startRecordingBackend } from "./fixtures/backend";
import { AuditCapture, startHarness } from "./fixtures/harness";
import { startRawBackend } from "./fixtures/raw-backend";
import { mintTicket, openSocket, UpgradeRefused } from "./fixtures/ws-client";

/**
 * The production defaults themselves (issue 17): every other test sets its own timeouts,
 * so Node's defaults (60 s / 300 s), a 600 s heartbeat or a 120 s backend handshake went
 * unnoticed. Nothing here sleeps: the server is inspected, or fake timers move time.
 */
describe("HTTP server limits by default (SECURITY.md H35)", () => {
  /** The status line the server answers a GET with one header of `bytes` bytes. */
  function statusWithHeader(port: number, bytes: number): Promise<string> {
    return new Promise((resolve) => {
      const socket = connect(port, "127.0.0.1", () =>
        socket.write(`GET /x HTTP/1.1\r\nHost: localhost\r\nX-Padding: ${"a".repeat(bytes)}\r\nConnection: close\r\n\r\n`),
      );
      let answer = "";
      socket.on("data", (chunk: Buffer) => (answer += chunk.toString("latin1")));
      socket.on("close", () => resolve(answer.split("\r\n")[0] ?? ""));
      socket.on("error", () => resolve(answer.split("\r\n")[0] ?? ""));
    });
  }

  it("createHTTPServer() with no options: header timeout ≤ 20 s, request timeout ≤ 30 s, headers over 16 KiB → 431", async () => {
    const server = createHTTPServer();
    server.on("request", (_req, res) => res.end("ok"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    try {
      expect(server.headersTimeout).toBeGreaterThan(0);
      expect(server.headersTimeout).toBeLessThanOrEqual(20_000);
      expect(server.requestTimeout).toBeGreaterThan(0);
      expect(server.requestTimeout).toBeLessThanOrEqual(30_000);
      const { port } = server.address() as AddressInfo;
      expect(await statusWithHeader(port, 15 * 1024)).toBe("HTTP/1.1 200 OK");
      expect(await statusWithHeader(port, 16 * 1024 + 1)).toMatch(/^HTTP\/1\.1 431/);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("startPortcullis without a server makes one with the same limits", async () => {
    const h = await startHarness();
    try {
      const config = loadConfig({ ...h.env, PORT: "0", DATABASE_PATH: join(h.dir, "own-server.sqlite") });
      const bff = await startPortcullis(config, { clock: h.clock, auditStream: new AuditCapture() });
      try {
        expect(bff.server.headersTimeout).toBeGreaterThan(0);
        expect(bff.server.headersTimeout).toBeLessThanOrEqual(20_000);
        expect(bff.server.requestTimeout).toBeGreaterThan(0);
        expect(bff.server.requestTimeout).toBeLessThanOrEqual(30_000);
        expect(bff.server.maxConnections).toBe(config.maxConnections);
      } finally {
        await bff.close();
      }
    } finally {
      await h.close();
    }
  });
});

/** Resolves once `check` holds, polling on real I/O turns (setTimeout may be faked); rejects after `ms` of real time. */
async function settled(check: () => boolean, what: string, ms = 2000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe("WebSocket timers by default (SECURITY.md E26, CONTRACT.md)", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("pings within 30 s and terminates a socket that missed its pong within 60 s", async () => {
    // Only intervals are faked, and before the server starts: its heartbeat is one.
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const backend = await startRecordingBackend();
    const h = await startHarness({ env: { GAME_BACKEND_URL: backend.url } });
    try {
      const { token } = await h.login("default-heartbeat");
      const ws = await openSocket(h, await mintTicket(h, token), { token, autoPong: false });
      let pings = 0;
      let closeCode: number | null = null;
      ws.on("ping", () => (pings += 1));
      ws.on("close", (code) => (closeCode = code));
      vi.advanceTimersByTime(30_000);
      await settled(() => pings === 1, "a ping by 30 s");
      expect(closeCode).toBeNull();
      vi.advanceTimersByTime(30_000);
      await settled(() => closeCode !== null, "the socket terminated by 60 s");
      expect(closeCode).toBe(1006);
    } finally {
      vi.useRealTimers();
      await h.close();
      await backend.close();
    }
  });

  it("refuses with 502 when the backend has not accepted its upgrade within 10 s", async () => {
    const backend = await startRawBackend({ holdAnswers: true });
    const h = await startHarness({ env: { GAME_BACKEND_URL: backend.url } });
    try {
      const { token } = await h.login("default-handshake");
      const ticket = await mintTicket(h, token);
      // Timeouts are faked only now: the login above needed real ones.
      vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
      let status = 0;
      openSocket(h, ticket, { token }).then(
        (ws) => {
          status = 101;
          ws.terminate();
        },
        (error: unknown) => {
          status = error instanceof UpgradeRefused ? error.status : -1;
        },
      );
      await settled(() => backend.held.length === 1, "the upgrade to reach the backend");
      vi.advanceTimersByTime(10_000);
      await settled(() => status !== 0, "the gate answer after 10 s");
      expect(status).toBe(502);
    } finally {
      vi.useRealTimers();
      await h.close();
      // A held upgrade is never read again, so it would not notice the gate hanging up.
      for (const socket of backend.held) socket.destroy();
      await backend.close();
    }
  });
});

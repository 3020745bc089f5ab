import { mkdtempSync, rmSync } from "node:fs";
import { connect, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock";
import { loadConfig } from "../../src/config";
import { addressGroup } from "../../src/http/client-ip";
import { createHTTPServer, startPortcullis, type Portcullis } from "../../src/portcullis";
import { AuditCapture, testKey } from "../fixtures/harness";
import { until } from "../fixtures/wait";

const CAP = 8;

interface Held {
  socket: Socket;
  closed: boolean;
}

/** One idle TCP connection from `localAddress`: connects and sends nothing. */
function hold(port: number, localAddress: string): Promise<Held> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, localAddress });
    const held: Held = { socket, closed: false };
    socket.on("close", () => {
      held.closed = true;
    });
    socket.on("error", () => undefined);
    socket.once("connect", () => resolve(held));
    socket.once("error", reject);
  });
}

/** GET /healthz on a fresh connection from `localAddress`; the status, or 0 when refused. */
function healthz(port: number, localAddress: string, socket?: Socket): Promise<number> {
  return new Promise((resolve) => {
    const s = socket ?? connect({ host: "127.0.0.1", port, localAddress });
    let received = "";
    s.setEncoding("latin1");
    s.on("data", (chunk: string) => {
      received += chunk;
      if (received.includes("\r\n\r\n")) s.destroy();
    });
    s.on("error", () => undefined);
    s.on("close", () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1] ?? 0)));
    const send = (): void => {
      s.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    };
    if (socket === undefined) s.once("connect", send);
    else send();
  });
}

async function start(env: Record<string, string>): Promise<{ bff: Portcullis; port: number; audit: AuditCapture; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-conn-"));
  const server = createHTTPServer();
  // 127.0.0.1, not localhost: the test's second client comes from 127.0.0.2.
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as AddressInfo).port;
  const audit = new AuditCapture();
  const config = loadConfig({
    NODE_ENV: "test",
    PORT: String(port),
    PUBLIC_ORIGIN: `http://127.0.0.1:${port}`,
    DATABASE_PATH: join(dir, "portcullis.sqlite"),
    TOKEN_ENCRYPTION_KEYS: `k1:${testKey()}`,
    ASSERTION_SIGNING_KEYS: `a1:${testKey()}`,
    ...env,
  });
  const bff = await startPortcullis(config, { server, clock: new ManualClock(Date.now()), auditStream: audit });
  return {
    bff,
    port,
    audit,
    async close() {
      server.closeAllConnections();
      await bff.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe("a per-address cap on concurrent connections (SECURITY.md I39)", () => {
  let s: Awaited<ReturnType<typeof start>>;
  beforeAll(async () => {
    s = await start({ MAX_CONNECTIONS_PER_IP: String(CAP) });
  });
  afterAll(async () => {
    await s.close();
  });

  it("closes one address's connections past the cap at once, serves another address, and admits again once some close", async () => {
    const held: Held[] = [];
    for (let i = 0; i < CAP + 5; i += 1) held.push(await hold(s.port, "127.0.0.1"));
    await until(() => held.filter((h) => h.closed).length === 5, "the 5 connections past the cap to be closed");
    const kept = held.filter((h) => !h.closed);
    expect(kept).toHaveLength(CAP);
    // Those under the cap are real connections: one of them still gets an answer.
    expect(await healthz(s.port, "127.0.0.1", kept[0]?.socket)).toBe(200);
    expect(s.audit.named("request.refused").filter((e) => e.reason === "connection_cap")).toHaveLength(1);

    // Another address is not affected, while 127.0.0.1 still holds its share.
    for (let i = 0; i < 3; i += 1) expect(await healthz(s.port, "127.0.0.2")).toBe(200);
    await until(() => kept[0]?.closed === true, "the answered connection to close");
    // 127.0.0.1 holds CAP - 1 now; two more: one is admitted, the next one refused.
    const more = [await hold(s.port, "127.0.0.1"), await hold(s.port, "127.0.0.1")];
    await until(() => more.some((h) => h.closed), "the connection past the cap to be closed");
    expect(more.filter((h) => h.closed)).toHaveLength(1);

    // Closing some gives the address its slots back.
    for (const h of [...kept.slice(1, 4), ...more]) h.socket.destroy();
    let status = 0;
    for (let attempt = 0; attempt < 100 && status !== 200; attempt += 1) {
      // The server sees the closes a moment after the client makes them.
      status = await healthz(s.port, "127.0.0.1");
      if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(status).toBe(200);
    for (const h of held) h.socket.destroy();
  });
});

describe("behind a proxy (TRUST_PROXY > 0) every connection comes from the proxy", () => {
  it("does not cap per address", async () => {
    const s = await start({ MAX_CONNECTIONS_PER_IP: String(CAP), TRUST_PROXY: "1" });
    try {
      const held: Held[] = [];
      for (let i = 0; i < CAP + 5; i += 1) held.push(await hold(s.port, "127.0.0.1"));
      expect(await healthz(s.port, "127.0.0.1")).toBe(200);
      expect(held.filter((h) => h.closed)).toHaveLength(0);
      for (const h of held) h.socket.destroy();
    } finally {
      await s.close();
    }
  });
});

describe("#addressGroup", () => {
  it.each([
    ["127.0.0.1", "127.0.0.1"],
    ["::ffff:10.1.2.3", "10.1.2.3"],
    ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"],
    ["2001:db8:1:2::99", "2001:db8:1:2::/64"],
    ["2001:0db8:0001:0002:ffff::1", "2001:db8:1:2::/64"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
    ["fe80::1%eth0", "fe80:0:0:0::/64"],
  ])("groups %s as %s", (address, group) => {
    expect(addressGroup(address)).toBe(group);
  });
});

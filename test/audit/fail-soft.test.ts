import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createAuditLog, type AuditLog, type AuditLogOptions } from "../../src/audit/log";
import { DropReporter } from "../../src/audit/destination";
import { ManualClock } from "../../src/clock";
import { AuditCapture } from "../fixtures/harness";

// The audit log's bounds and failure paths (SECURITY.md G32, I38): what Stryker found the
// other audit tests did not pin down.

function newLog(options: Partial<AuditLogOptions> = {}): { log: AuditLog; out: AuditCapture; notices: AuditCapture; clock: ManualClock } {
  const out = new AuditCapture();
  const notices = new AuditCapture();
  const clock = new ManualClock();
  const log = createAuditLog({ stream: out, notices, clock, hashKey: new Uint8Array(32), ...options });
  return { log, out, notices, clock };
}

function tempPath(): string {
  return join(mkdtempSync(join(tmpdir(), "portcullis-audit-soft-")), "audit.log");
}

/** A stream that takes every write and never calls back: its buffer only grows. */
function stalled(): Writable {
  return new Writable({ highWaterMark: 16, write: () => undefined });
}

afterEach(() => {
  vi.useRealTimers();
});

describe("audit lines", () => {
  it("cuts a field past 200 characters, marking the cut", async () => {
    const { log, out } = newLog();
    log.write("login.failure", { reason: "r".repeat(1_000), detail: "d".repeat(200) });
    await log.close();
    const [event] = out.events();
    expect(event?.reason).toBe(`${"r".repeat(200)}…`);
    expect(event?.detail).toBe("d".repeat(200));
  });
});

describe("aggregation (SECURITY.md I38)", () => {
  it("keeps refusals with different statuses apart, and writes no summary for a window with nothing suppressed", async () => {
    const { log, out } = newLog();
    log.write("ws.upgrade.refused", { status: 429, reason: "r", ip: "198.51.100.7" });
    log.write("ws.upgrade.refused", { status: 403, reason: "r", ip: "198.51.100.7" });
    await log.close();
    expect(out.events().map((e) => [e.status, e.count])).toEqual([
      [429, undefined],
      [403, undefined],
    ]);
  });

  it("writes a window's summary when its interval ends, even if nothing else is written", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const { log, out, clock } = newLog({ aggregate: { intervalMs: 60_000, maxKeys: 10 } });
    log.write("csrf.refused", { reason: "r", ip: "198.51.100.8" });
    log.write("csrf.refused", { reason: "r", ip: "198.51.100.8" });
    clock.advance(60_000);
    vi.advanceTimersByTime(1_000);
    expect(out.events().map((e) => e.count)).toEqual([undefined, 1]);
    await log.close();
  });
});

describe("drop notices on stderr", () => {
  it("says each destination's and reason's drops apart, at most once per 10 s each, and at once when forced", () => {
    const notices = new AuditCapture();
    const clock = new ManualClock();
    const drops = new DropReporter(notices, clock);
    drops.dropped("/var/log/a", 1, "ENOSPC");
    drops.dropped("stdout", 2, "reader too slow");
    expect(notices.raw).toEqual([
      "portcullis: audit log /var/log/a: 1 line(s) dropped (ENOSPC); still serving\n",
      "portcullis: audit log stdout: 2 line(s) dropped (reader too slow); still serving\n",
    ]);
    drops.dropped("/var/log/a", 3, "ENOSPC");
    clock.advance(9_999);
    drops.tick();
    expect(notices.raw).toHaveLength(2);
    clock.advance(1);
    drops.tick();
    expect(notices.raw.at(-1)).toBe("portcullis: audit log /var/log/a: 3 line(s) dropped (ENOSPC); still serving\n");
    // Nothing more dropped: no notice, not even a "0 line(s)" one.
    clock.advance(60_000);
    drops.tick();
    expect(notices.raw).toHaveLength(3);
    drops.dropped("stdout", 1, "reader too slow");
    drops.tick({ force: true });
    expect(notices.raw).toHaveLength(4);
    drops.dropped("stdout", 1, "reader too slow");
    drops.tick({ force: true });
    expect(notices.raw).toHaveLength(5);
    expect(drops.totals).toEqual(new Map([["/var/log/a", 4], ["stdout", 4]]));
  });

  it("holds at most 64 KiB of notices for a stderr nobody reads", () => {
    const notices = stalled();
    const drops = new DropReporter(notices, new ManualClock());
    drops.dropped("first", 1, "x");
    drops.dropped("second", 1, "x");
    expect(notices.writableLength).toBe(2 * "portcullis: audit log first: 1 line(s) dropped (x); still serving\n".length + 1);
    for (let i = 0; i < 5_000; i += 1) drops.dropped(`destination-${i}`, 1, "x");
    expect(notices.writableLength).toBeGreaterThan(60 * 1024);
    expect(notices.writableLength).toBeLessThanOrEqual(64 * 1024 + 200);
  });

  it("survives a stderr that fails (EPIPE): no uncaught error", async () => {
    const errors: unknown[] = [];
    const onUncaught = (error: unknown): void => {
      errors.push(error);
    };
    process.on("uncaughtException", onUncaught);
    try {
      const notices = new Writable({ write: (_chunk, _encoding, callback) => callback(Object.assign(new Error("broken pipe"), { code: "EPIPE" })) });
      const drops = new DropReporter(notices, new ManualClock());
      drops.dropped("stdout", 1, "EPIPE");
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      expect(notices.listenerCount("error")).toBe(1);
      expect(errors).toEqual([]);
    } finally {
      process.off("uncaughtException", onUncaught);
    }
  });
});

describe("the stream destination", () => {
  it("names the stream's own error in the notice, and drops and counts on a failed stream that stays open", async () => {
    const broken = new Writable({
      autoDestroy: false,
      write: (_chunk, _encoding, callback) => callback(Object.assign(new Error("broken pipe"), { code: "EPIPE" })),
    });
    const notices = new AuditCapture();
    const log = createAuditLog({ stream: broken, notices, clock: new ManualClock(), hashKey: new Uint8Array(32) });
    log.write("server.started");
    await new Promise((resolve) => setImmediate(resolve));
    log.write("server.stopping");
    log.write("server.stopping");
    expect(log.dropped().get("stdout")).toBe(2);
    expect(notices.text()).toContain("dropped (EPIPE)");
    await log.close();
  });

  it("drops and counts on a stream destroyed under it", async () => {
    const stream = new AuditCapture();
    const notices = new AuditCapture();
    const log = createAuditLog({ stream, notices, clock: new ManualClock(), hashKey: new Uint8Array(32) });
    stream.destroy();
    log.write("server.started");
    expect(log.dropped().get("stdout")).toBe(1);
    expect(notices.text()).toContain("dropped (stream closed)");
    await log.close();
  });

  it("holds exactly maxQueuedBytes, not a byte more", async () => {
    const probe = newLog();
    probe.log.write("server.started");
    const length = Buffer.byteLength(probe.out.text());
    await probe.log.close();
    const stream = stalled();
    const log = createAuditLog({ stream, notices: new AuditCapture(), clock: new ManualClock(), hashKey: new Uint8Array(32), maxQueuedBytes: length });
    log.write("server.started");
    expect(stream.writableLength).toBe(length);
    log.write("server.started");
    expect(log.dropped().get("stdout")).toBe(1);
  });

  it("flush() waits for a slow reader to take every line, and leaves no listener behind", async () => {
    const taken: string[] = [];
    const slow = new Writable({
      highWaterMark: 16,
      write: (chunk: Buffer, _encoding, callback) => {
        taken.push(chunk.toString());
        setImmediate(callback);
      },
    });
    const log = createAuditLog({ stream: slow, notices: new AuditCapture(), clock: new ManualClock(), hashKey: new Uint8Array(32) });
    const listeners = [slow.listenerCount("drain"), slow.listenerCount("close")];
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    for (let i = 0; i < 20; i += 1) log.write("server.started", { detail: String(i) });
    await log.flush();
    expect(taken).toHaveLength(20);
    expect([slow.listenerCount("drain"), slow.listenerCount("close")]).toEqual(listeners);
    vi.useRealTimers();
    await log.close();
  });
});

describe("the file destination (AUDIT_LOG_PATH)", () => {
  it("drops and counts what is written after close(), and reopen() after close() does not bring the file back", async () => {
    const path = tempPath();
    const { log, notices } = newLog({ filePath: path });
    log.write("server.started");
    await log.close();
    log.write("server.stopping");
    await log.flush();
    expect(log.dropped().get(path)).toBe(1);
    expect(notices.text()).toContain("1 line(s) dropped (log closed)");
    expect(readFileSync(path, "utf8")).not.toContain("server.stopping");
    renameSync(path, `${path}.moved`);
    log.reopen();
    await log.flush();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(existsSync(path)).toBe(false);
  });

  it("holds at most maxQueuedBytes for a disk that is slower than the writes, then drops and counts", async () => {
    const path = tempPath();
    const { log, notices } = newLog({ filePath: path, maxQueuedBytes: 4_096 });
    for (let i = 0; i < 1_000; i += 1) log.write("server.started", { detail: "x".repeat(100) });
    expect(log.dropped().get(path)).toBeGreaterThan(900);
    expect(notices.text()).toContain("dropped (disk too slow)");
    await log.close();
    const lines = readFileSync(path, "utf8").trim().split("\n");
    expect(lines.length + (log.dropped().get(path) ?? 0)).toBe(1_000);
  });

  it("holds exactly maxQueuedBytes of lines for the disk, not a line more", async () => {
    const probe = newLog();
    probe.log.write("server.started", { detail: "x".repeat(100) });
    const length = Buffer.byteLength(probe.out.text());
    await probe.log.close();
    const path = tempPath();
    // Written synchronously, before the file is even open: the queue holds what it may.
    const { log } = newLog({ filePath: path, maxQueuedBytes: 20 * length });
    for (let i = 0; i < 100; i += 1) log.write("server.started", { detail: "x".repeat(100) });
    await log.close();
    expect(readFileSync(path, "utf8").trim().split("\n")).toHaveLength(20);
    expect(log.dropped().get(path)).toBe(80);
  });

  it("resumes by itself once the path can be opened again, counting what it dropped meanwhile", async () => {
    const dir = mkdtempSync(join(tmpdir(), "portcullis-audit-soft-"));
    const parent = join(dir, "logs");
    writeFileSync(parent, "a file where the directory should be");
    const path = join(parent, "audit.log");
    const { log } = newLog({ filePath: path });
    log.write("server.started", { detail: "lost" });
    await log.flush();
    expect(log.dropped().get(path)).toBe(1);
    rmSync(parent);
    mkdirSync(parent);
    log.write("server.started", { detail: "kept" });
    await log.close();
    expect(readFileSync(path, "utf8")).toContain('"detail":"kept"');
    expect(log.dropped().get(path)).toBe(1);
  });

  it("rotates only a file that has lines, and keeps every line in the file or <path>.1", async () => {
    const probe = newLog();
    probe.log.write("server.started", { detail: `line 10 ${"y".repeat(100)}` });
    const length = Buffer.byteLength(probe.out.text());
    await probe.log.close();
    const path = tempPath();
    // Exactly two lines fit: the second reaches maxFileBytes, the third would pass it.
    const { log } = newLog({ filePath: path, maxFileBytes: 2 * length });
    // Fields are cut at 200 characters: four of them make one line longer than maxFileBytes.
    const big = "x".repeat(200);
    log.write("server.started", { detail: big, reason: big, path: big, origin: big });
    await log.flush();
    expect(existsSync(`${path}.1`)).toBe(false);
    const written: string[] = [];
    for (let i = 10; i < 22; i += 1) {
      written.push(`line ${i} `);
      log.write("server.started", { detail: `line ${i} ${"y".repeat(100)}` });
      await log.flush();
    }
    await log.close();
    const current = readFileSync(path, "utf8");
    const previous = readFileSync(`${path}.1`, "utf8");
    expect(current.trim().split("\n")).toHaveLength(2);
    expect(previous.trim().split("\n")).toHaveLength(2);
    for (const marker of written.slice(-4)) expect(current + previous).toContain(marker);
  });
});

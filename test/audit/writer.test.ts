import { chmodSync, existsSync, mkdtempSync, readFileSync, renameSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createAuditLog, type AuditLog, type AuditLogOptions } from "../../src/audit/log";
import { ManualClock } from "../../src/clock";
import { AuditCapture } from "../fixtures/harness";

function newLog(options: Partial<AuditLogOptions> = {}): { log: AuditLog; out: AuditCapture; notices: AuditCapture; clock: ManualClock } {
  const out = new AuditCapture();
  const notices = new AuditCapture();
  const clock = new ManualClock();
  const log = createAuditLog({ stream: out, notices, clock, hashKey: new Uint8Array(32), ...options });
  return { log, out, notices, clock };
}

function tempPath(): string {
  return join(mkdtempSync(join(tmpdir(), "portcullis-audit-unit-")), "audit.log");
}

describe("#createAuditLog aggregation (SECURITY.md I38)", () => {
  it("writes the first unauthenticated refusal at once and the rest as one summary with count when the interval ends", async () => {
    const { log, out, clock } = newLog({ aggregate: { intervalMs: 60_000, maxKeys: 100 } });
    for (let i = 0; i < 500; i += 1) log.write("csrf.refused", { reason: "missing X-CSRF: 1", ip: "203.0.113.9", path: `/auth/logout/${i}` });
    expect(out.events()).toHaveLength(1);
    expect(out.events()[0]).toMatchObject({ event: "csrf.refused", ip: "203.0.113.9", path: "/auth/logout/0" });
    clock.advance(60_000);
    log.write("csrf.refused", { reason: "missing X-CSRF: 1", ip: "203.0.113.9", path: "/auth/logout/again" });
    const [, summary, next] = out.events();
    expect(summary).toEqual({
      level: "info",
      time: new Date(clock.now()).toISOString(),
      event: "csrf.refused",
      ip: "203.0.113.9",
      reason: "missing X-CSRF: 1",
      count: 499,
      since: new Date(clock.now() - 60_000).toISOString(),
    });
    expect(next).toMatchObject({ path: "/auth/logout/again" });
    await log.close();
  });

  it("keeps a separate window per IP, reason and event, writes refusals with a session or an account one by one, and flushes on close", async () => {
    const { log, out } = newLog();
    for (let i = 0; i < 3; i += 1) {
      log.write("ratelimit.hit", { reason: "auth", ip: "198.51.100.1" });
      log.write("ratelimit.hit", { reason: "auth", ip: "198.51.100.2" });
      log.write("ratelimit.hit", { reason: "login", ip: "198.51.100.1" });
      log.write("ws.upgrade.refused", { status: 429, reason: "upgrade rate limit", ip: "198.51.100.1" });
      log.write("csrf.refused", { reason: "origin not allowed", ip: "198.51.100.1", sessionId: "s1" });
      // Login failures are one line each (bounded by RATE_LIMIT_LOGIN), and so is any refusal
      // that names an account.
      log.write("login.failure", { reason: "state mismatch", ip: "198.51.100.1" });
      log.write("csrf.refused", { reason: "origin not allowed", ip: "198.51.100.1", accountId: "a1" });
    }
    expect(out.events()).toHaveLength(4 + 3 + 3 + 3);
    await log.close();
    expect(out.named("ratelimit.hit").filter((e) => e.count === 2)).toHaveLength(3);
    expect(out.named("login.failure")).toHaveLength(3);
    expect(out.named("csrf.refused").filter((e) => e.accountId === "a1")).toHaveLength(3);
    expect(out.named("ws.upgrade.refused").at(-1)).toMatchObject({ status: 429, count: 2 });
  });

  it("bounds its map: a new key beyond maxKeys ends the oldest window early, with its summary", async () => {
    const { log, out } = newLog({ aggregate: { intervalMs: 60_000, maxKeys: 2 } });
    log.write("csrf.refused", { reason: "r", ip: "10.0.0.1" });
    log.write("csrf.refused", { reason: "r", ip: "10.0.0.1" });
    log.write("csrf.refused", { reason: "r", ip: "10.0.0.2" });
    log.write("csrf.refused", { reason: "r", ip: "10.0.0.3" });
    expect(out.events().map((e) => [e.ip, e.count])).toEqual([
      ["10.0.0.1", undefined],
      ["10.0.0.2", undefined],
      ["10.0.0.1", 1],
      ["10.0.0.3", undefined],
    ]);
    await log.close();
  });
});

describe("#createAuditLog lines", () => {
  it("escapes U+2028, U+2029, U+0085 (and CR/LF) so no viewer sees a second line", async () => {
    const { log, out } = newLog();
    const hostile = 'a\u2028{"event":"forged"}\u2029b\u0085c\r\nd';
    log.write("login.failure", { reason: hostile });
    await log.close();
    const raw = out.text();
    expect(raw.split("\n").filter((line) => line !== "")).toHaveLength(1);
    expect(raw).not.toMatch(/[\u2028\u2029\u0085\r]/);
    expect(raw).toContain("\\u2028");
    expect(out.events()[0]?.reason).toBe(hostile);
  });
});

describe("#createAuditLog file (AUDIT_LOG_PATH)", () => {
  it("creates the file 0600 and narrows an existing wider one", async () => {
    const fresh = tempPath();
    const first = newLog({ filePath: fresh });
    first.log.write("server.started");
    await first.log.close();
    expect(statSync(fresh).mode & 0o777).toBe(0o600);

    const wide = tempPath();
    writeFileSync(wide, "");
    chmodSync(wide, 0o644);
    const second = newLog({ filePath: wide });
    second.log.write("server.started");
    await second.log.close();
    expect(statSync(wide).mode & 0o777).toBe(0o600);
    expect(readFileSync(wide, "utf8")).toContain('"event":"server.started"');
  });

  it("opens a new file on reopen() after logrotate moved the old one (SIGHUP)", async () => {
    const path = tempPath();
    const { log } = newLog({ filePath: path });
    log.write("server.started", { detail: "before" });
    await log.flush();
    renameSync(path, `${path}.rotated`);
    log.reopen();
    log.write("server.stopping", { detail: "after" });
    await log.close();
    expect(readFileSync(`${path}.rotated`, "utf8")).toContain("before");
    expect(readFileSync(path, "utf8")).toContain("after");
    expect(readFileSync(path, "utf8")).not.toContain("before");
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it("rotates to <path>.1 before the file grows past maxFileBytes, keeping one generation", async () => {
    const path = tempPath();
    const { log } = newLog({ filePath: path, maxFileBytes: 2_000 });
    for (let i = 0; i < 60; i += 1) {
      log.write("server.started", { detail: `line ${i} ${"x".repeat(100)}` });
      await log.flush();
    }
    await log.close();
    expect(statSync(path).size).toBeLessThanOrEqual(2_000);
    expect(statSync(`${path}.1`).size).toBeLessThanOrEqual(2_000);
    expect(readFileSync(path, "utf8")).toContain("line 59 ");
    expect(existsSync(`${path}.2`)).toBe(false);
    for (const line of readFileSync(`${path}.1`, "utf8").trim().split("\n")) expect(() => JSON.parse(line)).not.toThrow();
  });

  it("drops and counts lines when every write fails (ENOSPC from /dev/full), says so on stderr once, and keeps going", async () => {
    // Through a symlink: a mutant that rotates or renames the file (npm run mutate) then
    // moves the link, never the device itself (one such run once left /dev/full a regular file).
    const full = join(mkdtempSync(join(tmpdir(), "portcullis-audit-full-")), "full");
    symlinkSync("/dev/full", full);
    const { log, out, notices } = newLog({ filePath: full });
    for (let i = 0; i < 50; i += 1) log.write("server.started", { detail: String(i) });
    await log.flush();
    expect(log.dropped().get(full)).toBe(50);
    expect(out.events()).toHaveLength(50);
    expect(notices.text()).toMatch(/^portcullis: audit log \S+\/full: \d+ line\(s\) dropped \(ENOSPC\); still serving\n/);
    expect(notices.text().split("\n").filter((line) => line !== "").length).toBeLessThanOrEqual(2);
    await log.close();
    expect(statSync("/dev/full").mode & 0o777).toBe(0o666);
  });
});

describe("#createAuditLog stream", () => {
  it("holds at most maxQueuedBytes for a reader that never reads, then drops and counts", async () => {
    const stalled = new Writable({ highWaterMark: 1024, write: () => undefined });
    const notices = new AuditCapture();
    const log = createAuditLog({ stream: stalled, notices, clock: new ManualClock(), hashKey: new Uint8Array(32), maxQueuedBytes: 64 * 1024 });
    for (let i = 0; i < 10_000; i += 1) log.write("server.started", { detail: "x".repeat(150) });
    expect(stalled.writableLength).toBeLessThanOrEqual(64 * 1024);
    expect(log.dropped().get("stdout")).toBeGreaterThan(9_000);
    expect(notices.text()).toContain("dropped (reader too slow)");
    await log.close();
  });

  it("drops rather than throws once the stream has failed (EPIPE)", async () => {
    const broken = new Writable({ write: (_chunk, _encoding, callback) => callback(Object.assign(new Error("broken pipe"), { code: "EPIPE" })) });
    const notices = new AuditCapture();
    const log = createAuditLog({ stream: broken, notices, clock: new ManualClock(), hashKey: new Uint8Array(32) });
    log.write("server.started");
    await new Promise((resolve) => setImmediate(resolve));
    expect(() => log.write("server.stopping")).not.toThrow();
    expect(log.dropped().get("stdout")).toBe(1);
    await log.close();
  });
});

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../fixtures/agent";
import { freePort } from "../fixtures/stack";

/**
 * SECURITY.md I38 against the real entry point (src/main.ts, demo mode) in a child process:
 * the audit log must fail soft on a full disk and on a stdout nobody reads.
 */

interface Child {
  child: ChildProcess;
  origin: string;
  port: number;
  stderr: () => string;
  exited: Promise<number | null>;
}

async function startChild(dir: string, env: Record<string, string>, stdout: "ignore" | "pipe"): Promise<Child> {
  const port = await freePort();
  // A small, fixed heap: V8 would otherwise grow its heap lazily by tens of MiB under any
  // flood, hiding (or faking) a backlog in the RSS figure. Old space beyond it is an OOM crash.
  const child = spawn(process.execPath, ["--max-semi-space-size=1", "--max-old-space-size=96", "--import", "tsx", "src/main.ts"], {
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      PORT: String(port),
      DATABASE_PATH: join(dir, "db", "portcullis.sqlite"),
      DEMO_IDP_PORT: String(await freePort()),
      DEMO_GAME_PORT: String(await freePort()),
      // Each flooded request comes "from" its own address, so aggregation cannot hide it.
      TRUST_PROXY: "1",
      RATE_LIMIT_AUTH: "1000/s,100000",
      ...env,
    },
    // A piped stdout that this test never reads: the pipe fills and stays full.
    stdio: ["ignore", stdout, "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (data: Buffer) => (stderr += data.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code, signal) => resolve(code ?? (signal === null ? null : -1))));
  const origin = `http://localhost:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const healthy = await fetch(`${origin}/healthz`).then(
      (response) => response.status === 200,
      () => false,
    );
    if (healthy) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`child did not start:\n${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { child, origin, port, stderr: () => stderr, exited };
}

/** The child's resident memory, from /proc (kB → bytes). */
function rssOf(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match?.[1] ?? Number.NaN) * 1024;
}

const PAD = "p".repeat(190);

/**
 * `count` CSRF-less POSTs, pipelined over a few keep-alive connections, each from its own
 * X-Forwarded-For address and with a long path and Origin (~560 bytes of audit line each).
 * Resolves with the statuses seen.
 */
async function flood(port: number, count: number, options: { firstIP?: number; cookie?: string } = {}): Promise<Map<string, number>> {
  const statuses = new Map<string, number>();
  const connections = 4;
  const batch = 250;
  let next = 0;
  const first = options.firstIP ?? 0;
  const worker = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const socket = connect(port, "localhost");
      let pending = 0;
      let buffered = "";
      const send = (): void => {
        if (next >= count) {
          socket.end();
          resolve();
          return;
        }
        const requests: string[] = [];
        for (; requests.length < batch && next < count; next += 1) {
          const n = options.cookie === undefined ? first + next : 0;
          requests.push(
            `POST /auth/logout/${PAD} HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}\r\n` +
              `Origin: https://${PAD}.example\r\nContent-Length: 0\r\n${options.cookie === undefined ? "" : `Cookie: __Host-Http-session=${options.cookie}\r\n`}\r\n`,
          );
        }
        pending = requests.length;
        socket.write(requests.join(""));
      };
      socket.on("data", (data: Buffer) => {
        buffered += data.toString("latin1");
        for (let index = buffered.indexOf("HTTP/1.1 "); index !== -1; index = buffered.indexOf("HTTP/1.1 ")) {
          if (buffered.length < index + 12) break;
          const status = buffered.slice(index + 9, index + 12);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          buffered = buffered.slice(index + 12);
          pending -= 1;
        }
        if (pending === 0) send();
      });
      socket.on("error", reject);
      // A server that stops answering fails the flood instead of hanging the test.
      socket.setTimeout(10_000, () => socket.destroy(new Error(`no answer for 10 s, ${pending} pending`)));
      socket.on("connect", send);
    });
  await Promise.all(Array.from({ length: connections }, worker));
  return statuses;
}

/** /healthz's status, or "no answer" after 5 s. */
function healthz(origin: string): Promise<number | "no answer"> {
  return fetch(`${origin}/healthz`, { signal: AbortSignal.timeout(5_000) }).then(
    (response) => response.status,
    () => "no answer" as const,
  );
}

async function stopWithin(child: Child, ms: number): Promise<number | null | "still running"> {
  child.child.kill("SIGTERM");
  const timeout = new Promise<"still running">((resolve) => setTimeout(() => resolve("still running"), ms).unref());
  const outcome = await Promise.race([child.exited, timeout]);
  if (outcome === "still running") child.child.kill("SIGKILL");
  return outcome;
}

describe("the audit log under a flood (SECURITY.md I38)", () => {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-flood-"));
  const full = join(dir, "full");
  let mounted = false;
  let auditPath = "/dev/full";
  beforeAll(() => {
    mkdirSync(full);
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", full], { stdio: "pipe" });
      mounted = true;
      auditPath = join(full, "audit.log");
    } catch (error) {
      // Without the right to mount, /dev/full still answers every write with ENOSPC.
      process.stdout.write(`tmpfs mount refused (${error instanceof Error ? error.message : String(error)}); using /dev/full\n`);
    }
  });
  afterAll(() => {
    if (mounted) execFileSync("umount", ["-l", full]);
    rmSync(dir, { recursive: true, force: true });
  });

  it("keeps answering when the audit disk is full, says so on stderr, and still stops on SIGTERM", async () => {
    const child = await startChild(dir, { AUDIT_LOG_PATH: auditPath }, "ignore");
    try {
      // ~560 bytes a line: 3,000 distinct refusals are 1.6 MB, six times the 256 KiB disk.
      const statuses = await flood(child.port, 3_000);
      expect(statuses.get("403")).toBe(3_000);
      // Beyond full: the server still answers, and more refusals are still refused.
      expect(await healthz(child.origin)).toBe(200);
      expect((await flood(child.port, 500, { firstIP: 10_000 })).get("403")).toBe(500);
      expect(await healthz(child.origin)).toBe(200);
      expect(child.stderr()).toMatch(/audit log .*: \d+ line\(s\) dropped \(ENOSPC\)/);
      if (mounted) {
        expect(statSync(auditPath).size).toBeGreaterThan(200 * 1024);
        expect(statSync(auditPath).mode & 0o777).toBe(0o600);
      }
      expect(await stopWithin(child, 5_000)).toBe(0);
    } finally {
      if (child.child.exitCode === null) child.child.kill("SIGKILL");
    }
  }, 60_000);

  it("keeps its memory bounded and keeps answering while nobody reads its stdout", async () => {
    const child = await startChild(dir, {}, process.env.FLOOD_STDOUT === "ignore" ? "ignore" : "pipe");
    const pid = child.child.pid ?? 0;
    try {
      // Refusals with a session are written one line each (~600 bytes), and one session from
      // one address leaves no per-key state behind: what memory grows by is the log's backlog.
      const agent = new Agent();
      expect((await agent.login(child.origin, "flooder")).status).toBe(200);
      const cookie = agent.cookie(child.origin, "__Host-Http-session") ?? "";
      // Warm up (JIT, heap, the pipe's 64 KiB) before taking the baseline.
      await flood(child.port, 10_000, { cookie });
      const baseline = rssOf(pid);
      const statuses = await flood(child.port, Number(process.env.FLOOD_COUNT ?? 40_000), { cookie });
      expect(await healthz(child.origin)).toBe(200);
      const grown = rssOf(pid) - baseline;
      process.stdout.write(`RSS baseline ${(baseline / 2 ** 20).toFixed(1)} MiB, grew ${(grown / 2 ** 20).toFixed(1)} MiB ${JSON.stringify([...statuses])}\n`);
      expect(statuses.get("403")).toBe(Number(process.env.FLOOD_COUNT ?? 40_000));
      expect(grown).toBeLessThan(16 * 2 ** 20);
      expect(child.stderr()).toMatch(/audit log stdout: \d+ line\(s\) dropped \(reader too slow\)/);
      expect(await stopWithin(child, 5_000)).toBe(0);
    } finally {
      if (child.child.exitCode === null) child.child.kill("SIGKILL");
    }
  }, 120_000);
});

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Agent } from "./fixtures/agent";
import { freePort } from "./fixtures/stack";

interface Started {
  child: ChildProcess;
  output: () => string;
}

/** `npm start`'s entry point as its own process, waiting for its "serving" line. */
function start(env: Record<string, string>): Promise<Started> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const onData = (data: Buffer): void => {
      output += data.toString();
      if (output.includes("Portcullis is serving")) resolve({ child, output: () => output });
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.on("exit", (code) => reject(new Error(`exited ${code} before serving:\n${output}`)));
  });
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

describe("npm start (src/main.ts)", () => {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-main-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("runs demo mode, logs in through its identity provider, stops on SIGTERM and keeps the session across a restart", async () => {
    const port = await freePort();
    const env = {
      PORT: String(port),
      DATABASE_PATH: join(dir, "db", "portcullis.sqlite"),
      DEMO_IDP_PORT: String(await freePort()),
      DEMO_GAME_PORT: String(await freePort()),
    };
    const first = await start(env);
    expect(first.output()).toContain("DEMO MODE");
    const origin = `http://localhost:${port}`;
    const agent = new Agent();
    const response = await agent.login(origin, "demo-player");
    expect(response.status).toBe(200);
    const token = agent.cookie(origin, "__Host-Http-session");
    expect((await agent.fetch(`${origin}/auth/me`)).status).toBe(200);

    const exited = exitOf(first.child);
    first.child.kill("SIGTERM");
    expect(await exited).toBe(0);

    const second = await start(env);
    try {
      const me = await fetch(`${origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${token}` } });
      expect(me.status).toBe(200);
    } finally {
      const stopped = exitOf(second.child);
      second.child.kill("SIGTERM");
      await stopped;
    }
  });

  it("refuses demo mode in production and lists every configuration problem before listening", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      env: { PATH: process.env.PATH ?? "", NODE_ENV: "production", PORT: "not-a-port", DATABASE_PATH: join(dir, "prod.sqlite") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    expect(await exitOf(child)).toBe(1);
    expect(stderr).toContain("demo mode is refused");
    expect(stderr).toContain("PORT");
    expect(stderr).toContain("TOKEN_ENCRYPTION_KEYS is required");
  });
});

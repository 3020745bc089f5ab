import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../fixtures/stack";

interface Started {
  child: ChildProcess;
  output: () => string;
}

/** A process that prints "Portcullis is serving" once it listens. */
function start(command: string, args: string[], env: Record<string, string>): Promise<Started> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
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

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
}

async function answers(url: string): Promise<boolean> {
  try {
    await fetch(url, { signal: AbortSignal.timeout(2_000) });
    return true;
  } catch {
    return false;
  }
}

describe("production start (issue 18)", () => {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-prod-start-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function demoEnv(name: string): Promise<Record<string, string>> {
    return {
      PORT: String(await freePort()),
      DATABASE_PATH: join(dir, name, "portcullis.sqlite"),
      DEMO_IDP_PORT: "0",
      DEMO_GAME_PORT: "0",
    };
  }

  describe("npm run build, then npm run start:prod", () => {
    beforeAll(() => {
      const built = spawnSync("npm", ["run", "build"], { encoding: "utf8" });
      if (built.status !== 0) throw new Error(`npm run build failed:\n${built.stdout}\n${built.stderr}`);
    }, 180_000);

    it("runs dist/main.js with plain node: it serves, and SIGTERM stops it cleanly", async () => {
      const env = await demoEnv("dist");
      const started = await start(process.execPath, ["dist/main.js"], env);
      const origin = `http://localhost:${env.PORT}`;
      // Plain node ran it; the migrations (db/) and the page (public/) were found from dist/.
      expect(await (await fetch(`${origin}/healthz`)).json()).toEqual({ status: "ok" });
      expect((await fetch(`${origin}/`)).status).toBe(200);
      const exited = exitOf(started.child);
      started.child.kill("SIGTERM");
      expect(await exited).toEqual({ code: 0, signal: null });
      expect(await answers(`${origin}/healthz`)).toBe(false);
    });

    it("npm run start:prod hands SIGTERM to the server: nothing keeps listening after npm exits", async () => {
      const env = await demoEnv("start-prod");
      const started = await start("npm", ["run", "start:prod"], env);
      const origin = `http://localhost:${env.PORT}`;
      expect((await fetch(`${origin}/healthz`)).status).toBe(200);
      const exited = exitOf(started.child);
      started.child.kill("SIGTERM");
      await exited;
      expect(started.output()).toContain("SIGTERM: shutting down");
      expect(await answers(`${origin}/healthz`)).toBe(false);
    });
  });

  it("a SIGTERM to the `npm start` process reaches the server: no orphan keeps relaying", async () => {
    const env = await demoEnv("npm-start");
    const started = await start("npm", ["start"], env);
    const origin = `http://localhost:${env.PORT}`;
    expect((await fetch(`${origin}/healthz`)).status).toBe(200);
    const exited = exitOf(started.child);
    started.child.kill("SIGTERM");
    await exited;
    expect(started.output()).toContain("SIGTERM: shutting down");
    expect(await answers(`${origin}/healthz`)).toBe(false);
  }, 60_000);
});

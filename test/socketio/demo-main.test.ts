import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Agent } from "../fixtures/agent";
import { freePort } from "../fixtures/stack";

describe("npm start in demo mode serves the Socket.IO lobby (issue 12)", () => {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-lobby-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("relays the lobby's long-polling handshake to the demo game, for a logged-in player", async () => {
    const port = await freePort();
    const ports = { PORT: String(port), DEMO_IDP_PORT: String(await freePort()), DEMO_GAME_PORT: String(await freePort()) };
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", DATABASE_PATH: join(dir, "db", "portcullis.sqlite"), ...ports },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    try {
      let log = "";
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (chunk: Buffer) => {
          log += chunk.toString();
          if (log.includes("Portcullis is serving")) resolve();
        });
        void exited.then((code) => reject(new Error(`exited ${code}:\n${log}`)));
      });
      const origin = `http://localhost:${port}`;
      const agent = new Agent();
      expect((await agent.login(origin, "lobby-demo")).status).toBe(200);
      const handshake = await agent.fetch(`${origin}/socket.io/?EIO=4&transport=polling`, { headers: { "x-csrf": "1", origin } });
      expect(handshake.status).toBe(200);
      expect(await handshake.text()).toMatch(/^0\{"sid":"[^"]+","upgrades":\["websocket"\]/);
      expect((await fetch(`${origin}/lobby.html`)).status).toBe(200);
    } finally {
      child.kill("SIGTERM");
      await exited;
    }
  });
});

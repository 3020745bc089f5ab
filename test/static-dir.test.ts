import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config";
import { startHarness, type Harness } from "./fixtures/harness";

/** One raw HTTP/1.1 request, byte for byte: fetch() would normalise `..` away before sending. */
function rawGet(origin: string, target: string): Promise<{ status: number; text: string }> {
  const { hostname, port } = new URL(origin);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(`GET ${target} HTTP/1.1\r\nHost: ${new URL(origin).host}\r\nConnection: close\r\n\r\n`);
    });
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", reject);
    socket.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text });
    });
  });
}

describe("STATIC_DIR: a studio's own built front-end behind the same headers (issue 18 item 1)", () => {
  const outside = mkdtempSync(join(tmpdir(), "portcullis-static-"));
  const dist = join(outside, "dist");
  let h: Harness;

  beforeAll(async () => {
    mkdirSync(join(dist, "assets"), { recursive: true });
    writeFileSync(join(dist, "index.html"), '<!doctype html><title>Studio game</title><script type="module" src="/assets/main-1a2b.js"></script>');
    writeFileSync(join(dist, "assets", "main-1a2b.js"), 'console.log("studio game");\n');
    // A file beside the folder, not in it: no request may reach it.
    writeFileSync(join(outside, "secret.txt"), "TOP-SECRET-BESIDE-DIST");
    // What a build folder may carry by accident (the review's F5): dotfiles, and a link
    // pointing out of the folder.
    writeFileSync(join(dist, ".env"), "TOP-SECRET-DOTENV");
    mkdirSync(join(dist, ".git"));
    writeFileSync(join(dist, ".git", "config"), "TOP-SECRET-GIT");
    symlinkSync(join(outside, "secret.txt"), join(dist, "assets", "linked.txt"));
    writeFileSync(join(dist, "assets", "inside.txt"), "fine");
    symlinkSync(join(dist, "assets", "inside.txt"), join(dist, "alias.txt"));
    h = await startHarness({ env: { STATIC_DIR: dist } });
  });
  afterAll(async () => {
    await h?.close();
    rmSync(outside, { recursive: true, force: true });
  });

  it.each(["/.env", "/%2eenv", "/.git/config", "/%2Egit/config", "/assets/linked.txt", "/assets/./linked.txt"])(
    "answers %s with 404: no dotfile, no link out of the folder",
    async (target) => {
      const { status, text } = await rawGet(h.origin, target);
      expect(status).toBe(404);
      expect(text).not.toContain("TOP-SECRET");
    },
  );

  it("still serves a link that stays inside the folder", async () => {
    const response = await fetch(`${h.origin}/alias.txt`);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("fine");
  });

  it("serves the folder's index.html and assets with the CSP and the other fixed headers", async () => {
    const page = await fetch(`${h.origin}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("<title>Studio game</title>");
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const script = await fetch(`${h.origin}/assets/main-1a2b.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get("content-type")).toMatch(/^text\/javascript; charset=utf-8$/);
    for (const response of [page, script]) {
      expect(response.headers.get("content-security-policy")).toContain("script-src 'self'");
      expect(response.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
      expect(response.headers.get("x-content-type-options")).toBe("nosniff");
      expect(response.headers.get("x-frame-options")).toBe("DENY");
      expect(response.headers.get("cross-origin-opener-policy")).toBe("same-origin");
    }
  });

  it("serves only that folder: the demo client in public/ is not there any more", async () => {
    expect((await fetch(`${h.origin}/app.js`)).status).toBe(404);
    expect((await fetch(`${h.origin}/portcullis.js`)).status).toBe(404);
    // The BFF's own routes still answer in front of the folder.
    expect((await fetch(`${h.origin}/healthz`)).status).toBe(200);
  });

  it.each(["/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt", "/..%5csecret.txt", "/assets\\..\\..\\secret.txt", "//secret.txt"])(
    "refuses the path traversal %s",
    async (target) => {
      const answer = await rawGet(h.origin, target);
      expect(answer.text).not.toContain("TOP-SECRET");
      expect([400, 404]).toContain(answer.status);
    },
  );
});

describe("STATIC_DIR at start-up", () => {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-static-conf-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function problemsOf(env: Record<string, string>): string[] {
    try {
      loadConfig(env);
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
    return [];
  }

  it("is a configuration problem when the folder is missing or is a file, listed with the others", () => {
    writeFileSync(join(dir, "index.html"), "<!doctype html>");
    expect(loadConfig({ STATIC_DIR: dir }).staticDir).toBe(dir);
    expect(loadConfig({}).staticDir).toBeNull();
    expect(problemsOf({ STATIC_DIR: join(dir, "dist"), PORT: "eighty" })).toEqual([
      'PORT: "eighty" is not a whole number',
      `STATIC_DIR: "${join(dir, "dist")}" is not a folder (it should hold the game's built index.html)`,
    ]);
    expect(problemsOf({ STATIC_DIR: join(dir, "index.html") })).toEqual([
      `STATIC_DIR: "${join(dir, "index.html")}" is not a folder (it should hold the game's built index.html)`,
    ]);
  });

  it("stops `npm start` before anything listens, saying which folder", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", PORT: "0", DEMO_IDP_PORT: "0", DEMO_GAME_PORT: "0", STATIC_DIR: join(dir, "missing"), DATABASE_PATH: join(dir, "db.sqlite") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (data: Buffer) => (output += data.toString()));
    child.stderr.on("data", (data: Buffer) => (output += data.toString()));
    // Should it start after all, it must not outlive the test.
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    clearTimeout(timer);
    expect(code).toBe(1);
    expect(output).toContain(`STATIC_DIR: "${join(dir, "missing")}" is not a folder`);
    expect(output).not.toContain("Portcullis is serving");
  });
});

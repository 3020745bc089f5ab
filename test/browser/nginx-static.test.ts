import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { connect } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Browser } from "playwright-core";
import { launchChromium } from "../fixtures/chromium";
import { startDemoGame, type DemoGame } from "../../src/demo/game";
import { createGameAPI } from "../../src/demo/game-api";
import { startDemoIdP, type DemoIdP } from "../../src/demo/idp";
import { CLIENT_ID, startHarness, type Harness } from "../fixtures/harness";
import { freePort } from "../fixtures/stack";

const NGINX = "/usr/sbin/nginx";
const DOC = fileURLToPath(new URL("../../docs/own-front-end.md", import.meta.url));
// The built game nginx serves: the demo client stands in for a studio's dist/ folder.
const GAME_FILES = fileURLToPath(new URL("../../public", import.meta.url));

/** The nginx block of docs/own-front-end.md, exactly as documented. */
function documentedBlock(): string {
  const doc = readFileSync(DOC, "utf8");
  const match = /<!-- nginx-static:begin -->\s*```nginx\n([\s\S]*?)```\s*<!-- nginx-static:end -->/.exec(doc);
  if (match?.[1] === undefined) throw new Error("docs/own-front-end.md has no nginx-static block");
  return match[1];
}

/** Replaces one documented value, failing loudly should the documentation stop containing it. */
function replaceAll(text: string, from: string, to: string): string {
  if (!text.includes(from)) throw new Error(`the documented nginx block no longer contains ${from}`);
  return text.replaceAll(from, to);
}

/** Resolves once something accepts connections on the port (nginx has no "ready" line). */
async function listening(port: number): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1", () => {
        socket.destroy();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

/**
 * docs/own-front-end.md option 2 (issue 18 item 1): nginx serves the game's files and
 * proxies /auth, /api, /ws and the JWKS to Portcullis, over TLS with a self-signed
 * certificate, with TRUST_PROXY=1. The page, the login, the socket and /api all go
 * through nginx.
 */
describe("nginx serving the game's files in front of Portcullis, as documented", () => {
  let dir: string;
  let origin: string;
  let nginx: ChildProcess;
  let idp: DemoIdP;
  let game: DemoGame;
  let h: Harness;
  let browser: Browser;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "portcullis-nginx-static-"));
    const nginxPort = await freePort();
    const bffPort = await freePort();
    origin = `https://localhost:${nginxPort}`;
    const made = spawnSync(
      "openssl",
      ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")],
      { encoding: "utf8" },
    );
    if (made.status !== 0) throw new Error(`openssl: ${made.stderr}`);

    let block = documentedBlock();
    block = replaceAll(block, "listen 443 ssl http2;", `listen 127.0.0.1:${nginxPort} ssl http2;`);
    block = replaceAll(block, "server_name play.example.com;", "server_name localhost;");
    block = replaceAll(block, "/etc/ssl/play.example.com/fullchain.pem", join(dir, "cert.pem"));
    block = replaceAll(block, "/etc/ssl/play.example.com/privkey.pem", join(dir, "key.pem"));
    block = replaceAll(block, "/srv/game/dist", GAME_FILES);
    block = replaceAll(block, "127.0.0.1:3000", `127.0.0.1:${bffPort}`);
    block = replaceAll(block, "wss://play.example.com", `wss://localhost:${nginxPort}`);
    for (const sub of ["client_body", "proxy"]) mkdirSync(join(dir, sub));
    // Started by root, nginx's workers would run as "nobody", who cannot write here.
    const user = process.getuid?.() === 0 ? `user ${userInfo().username} ${spawnSync("id", ["-gn"], { encoding: "utf8" }).stdout.trim()};` : "";
    writeFileSync(
      join(dir, "nginx.conf"),
      `${user}
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/proxy;
  uwsgi_temp_path ${dir}/proxy;
  scgi_temp_path ${dir}/proxy;
${block}
}
`,
    );
    const check = spawnSync(NGINX, ["-t", "-q", "-p", dir, "-c", join(dir, "nginx.conf")], { encoding: "utf8" });
    if (check.status !== 0) throw new Error(`nginx -t refused the documented configuration: ${check.stderr}`);

    const clientSecret = "nginx-static-secret-0123456789";
    idp = await startDemoIdP({ port: 0, clients: [{ clientId: CLIENT_ID, clientSecret, redirectURIs: [`${origin}/auth/callback/demo`] }] });
    game = await startDemoGame({ port: 0, jwksURL: `http://127.0.0.1:${bffPort}/.well-known/jwks.json`, issuer: origin, httpHandler: createGameAPI() });
    h = await startHarness({
      port: bffPort,
      reuseIdP: { idp, other: null, clientSecret },
      env: { PUBLIC_ORIGIN: origin, TRUST_PROXY: "1", GAME_BACKEND_URL: game.url, OIDC_DEMO_LABEL: "Demo" },
    });
    nginx = spawn(NGINX, ["-p", dir, "-c", join(dir, "nginx.conf")], { stdio: ["ignore", "ignore", "inherit"] });
    await listening(nginxPort);
    browser = await launchChromium({ extraArgs: ["--ignore-certificate-errors"] });
  });
  afterAll(async () => {
    await browser?.close();
    if (nginx !== undefined && nginx.exitCode === null) {
      const exited = new Promise((resolve) => nginx.once("exit", resolve));
      nginx.kill("SIGTERM");
      await exited;
    }
    await h?.close();
    await idp?.close();
    await game?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves the page with the documented headers, logs in, relays the socket and /api through nginx, with no CSP violation", async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const violations: string[] = [];
    await page.exposeBinding("__reportViolation", (_source, text: string) => {
      violations.push(text);
    });
    await page.addInitScript(() => {
      document.addEventListener("securitypolicyviolation", (event) => {
        (window as unknown as { __reportViolation(t: string): void }).__reportViolation(`${event.violatedDirective} ${event.blockedURI}`);
      });
    });

    const answer = await page.goto(`${origin}/`);
    const headers = (await answer?.allHeaders()) ?? {};
    expect(headers.server ?? "").toMatch(/^nginx/);
    expect(headers["content-security-policy"]).toBe(
      `default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'; connect-src 'self' wss://localhost:${new URL(origin).port}`,
    );
    expect(headers["x-frame-options"]).toBe("DENY");
    expect(headers["strict-transport-security"]).toBe("max-age=31536000; includeSubDomains");

    await page.getByRole("link", { name: "Log in with Demo" }).click();
    await page.waitForURL(/127\.0\.0\.1:\d+\/interaction\//);
    await page.fill("input[name=login]", "Nia");
    await page.click("button[type=submit]");
    await page.waitForURL(`${origin}/`);
    await page.locator("#player-name", { hasText: "Nia" }).waitFor();
    await page.locator("#status[data-state=connected]").waitFor();
    await page.locator("#roster li[data-name=Nia]").waitFor();
    expect(h.bff.registry.size).toBe(1);

    const profile = await page.evaluate(() => fetch("/api/game/profile", { headers: { "X-CSRF": "1" } }).then(async (r) => ({ status: r.status, body: (await r.json()) as unknown })));
    expect(profile).toMatchObject({ status: 200, body: { name: "Nia" } });
    // Portcullis's answers keep their own headers, once: nginx adds none to proxied routes.
    const me = await page.evaluate(() => fetch("/auth/me").then((r) => r.headers.get("content-security-policy")));
    expect(me).toContain("connect-src 'self' wss://localhost");
    expect(me).not.toContain(", ");
    // TRUST_PROXY=1 takes the address nginx appended, never one the client wrote itself.
    const spoofed = await new Promise<number>((resolve, reject) => {
      const request = httpsRequest(`${origin}/auth/login/demo`, { rejectUnauthorized: false, headers: { "x-forwarded-for": "203.0.113.9" } }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      request.on("error", reject);
      request.end();
    });
    expect(spoofed).toBe(302);
    expect(h.audit.named("login.started").at(-1)?.ip).toBe("127.0.0.1");
    expect(violations).toEqual([]);
    await context.close();
  });
});

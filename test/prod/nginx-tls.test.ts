import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { WebSocket } from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoGame, type DemoGame } from "../../src/demo/game";
import { createGameAPI } from "../../src/demo/game-api";
import { startDemoIdP, type DemoIdP } from "../../src/demo/idp";
import { Agent } from "../fixtures/agent";
import { CLIENT_ID, startHarness, type Harness } from "../fixtures/harness";
import { freePort } from "../fixtures/stack";

const NGINX = "/usr/sbin/nginx";

/**
 * docs/nginx-tls.conf as an operator would adapt it: the documented file with only the
 * names, ports and certificate paths it says to replace.
 */
function renderDocumentedConfig(options: { httpsPort: number; httpPort: number; bffPort: number; cert: string; key: string }): string {
  const documented = readFileSync(resolve("docs/nginx-tls.conf"), "utf8");
  const rendered = documented
    .replace("listen 443 ssl http2;", `listen 127.0.0.1:${options.httpsPort} ssl http2;`)
    .replace("listen 80;", `listen 127.0.0.1:${options.httpPort};`)
    .replace("/etc/letsencrypt/live/play.example.com/fullchain.pem", options.cert)
    .replace("/etc/letsencrypt/live/play.example.com/privkey.pem", options.key)
    .replace("server 127.0.0.1:3000;", `server 127.0.0.1:${options.bffPort};`)
    .replaceAll("server_name play.example.com;", "server_name localhost;");
  // Every replaced line must have been there: the test runs the documented file, not a copy.
  for (const placeholder of ["listen 443", "listen 80;", "/etc/letsencrypt", ":3000;", "play.example.com;"]) {
    expect(rendered.split("\n").filter((line) => !line.trim().startsWith("#")).join("\n")).not.toContain(placeholder);
  }
  return rendered;
}

/** The surroundings a distribution's nginx.conf provides, for an unprivileged test run. */
function mainConfig(dir: string, include: string): string {
  const isRoot = process.getuid?.() === 0;
  const user = isRoot ? `user ${spawnSync("id", ["-un"], { encoding: "utf8" }).stdout.trim()} ${spawnSync("id", ["-gn"], { encoding: "utf8" }).stdout.trim()};\n` : "";
  return `${user}worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  include ${include};
}
`;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
  });
}

describe("docs/nginx-tls.conf: TLS at nginx, TRUST_PROXY=1, login, /api and a relayed socket (issue 18)", () => {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-nginx-tls-"));
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  let nginx: ChildProcess;
  let idp: DemoIdP;
  let game: DemoGame;
  let h: Harness;
  let origin: string;
  let httpPort: number;
  const rejectUnauthorized = process.env.NODE_TLS_REJECT_UNAUTHORIZED;

  beforeAll(async () => {
    const made = spawnSync(
      "openssl",
      ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost", "-keyout", key, "-out", cert],
      { encoding: "utf8" },
    );
    if (made.status !== 0) throw new Error(`openssl: ${made.stderr}`);
    // The test's own fetch trusts the self-signed certificate (the sockets below pass it as a CA).
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";

    const httpsPort = await freePort();
    httpPort = await freePort();
    const bffPort = await freePort();
    origin = `https://localhost:${httpsPort}`;
    const clientSecret = randomBytes(24).toString("base64url");
    idp = await startDemoIdP({ port: 0, clients: [{ clientId: CLIENT_ID, clientSecret, redirectURIs: [`${origin}/auth/callback/demo`] }] });
    // The game checks assertions issued by the public origin, and fetches the keys directly.
    game = await startDemoGame({ port: 0, jwksURL: `http://localhost:${bffPort}/.well-known/jwks.json`, issuer: origin, httpHandler: createGameAPI() });
    h = await startHarness({
      port: bffPort,
      reuseIdP: { idp, other: null, clientSecret },
      env: { PUBLIC_ORIGIN: origin, TRUST_PROXY: "1", GAME_BACKEND_URL: game.url, OIDC_DEMO_LABEL: "Demo" },
    });

    const include = join(dir, "portcullis.conf");
    writeFileSync(include, renderDocumentedConfig({ httpsPort, httpPort, bffPort, cert, key }));
    const configPath = join(dir, "nginx.conf");
    writeFileSync(configPath, mainConfig(dir, include));
    const check = spawnSync(NGINX, ["-t", "-q", "-p", dir, "-c", configPath], { encoding: "utf8" });
    if (check.status !== 0) throw new Error(`nginx -t: ${check.stderr}`);
    nginx = spawn(NGINX, ["-p", dir, "-c", configPath], { stdio: ["ignore", "ignore", "pipe"] });
    for (let attempt = 0; !(await accepts(httpsPort)); attempt += 1) {
      if (attempt > 100) throw new Error(`nginx did not start: ${readFileSync(join(dir, "error.log"), "utf8")}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }, 60_000);

  afterAll(async () => {
    if (rejectUnauthorized === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    else process.env.NODE_TLS_REJECT_UNAUTHORIZED = rejectUnauthorized;
    if (nginx?.exitCode === null) {
      const exited = new Promise((resolve) => nginx.once("exit", resolve));
      nginx.kill("SIGQUIT");
      await exited;
    }
    await h?.close();
    await idp?.close();
    await game?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("sends plain http to https", async () => {
    const response = await fetch(`http://localhost:${httpPort}/`, { redirect: "manual" });
    expect(response.status).toBe(301);
    expect(response.headers.get("location")).toBe("https://localhost/");
  });

  it("logs in through the real provider over https, calls /api and relays a game socket", async () => {
    const agent = new Agent();
    const callback = await agent.login(origin, "tls-player");
    expect(callback.status).toBe(200);
    const token = agent.cookie(origin, "__Host-Http-session");
    expect(token).not.toBeNull();
    expect(callback.headers.getSetCookie().some((c) => c.startsWith("__Host-Http-session=") && /; Secure/i.test(c))).toBe(true);

    // A forged X-Forwarded-For is overwritten by nginx: the audited client is the real peer.
    const me = await agent.fetch(`${origin}/auth/me`, { headers: { "x-forwarded-for": "203.0.113.9" } });
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ user: { displayName: "tls-player" } });
    expect(h.audit.named("login.success").at(-1)).toMatchObject({ ip: "127.0.0.1" });
    expect(h.audit.text()).not.toContain("203.0.113.9");

    const profile = await agent.fetch(`${origin}/api/game/profile`, { headers: { "x-csrf": "1", origin } });
    expect(profile.status).toBe(200);
    expect(await profile.json()).toMatchObject({ name: "tls-player" });

    const ticketResponse = await agent.fetch(`${origin}/auth/ws-ticket`, { method: "POST", headers: { "x-csrf": "1", origin } });
    expect(ticketResponse.status).toBe(200);
    const { ticket } = (await ticketResponse.json()) as { ticket: string };
    const ws = new WebSocket(`${origin.replace("https", "wss")}/ws`, ["game.v1", `ticket.${ticket}`], {
      headers: { origin, cookie: `__Host-Http-session=${token}` },
      ca: readFileSync(cert),
    });
    try {
      const welcome = await new Promise<Record<string, unknown>>((resolve, reject) => {
        ws.once("message", (data) => resolve(JSON.parse(String(data)) as Record<string, unknown>));
        ws.once("error", reject);
        ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade answered ${res.statusCode}`)));
      });
      expect(ws.protocol).toBe("game.v1");
      expect(welcome).toMatchObject({ type: "welcome", you: { name: "tls-player" } });
    } finally {
      ws.close();
    }
  });
});

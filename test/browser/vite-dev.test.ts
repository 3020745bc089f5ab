import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Browser } from "playwright-core";
import { launchChromium } from "../fixtures/chromium";
import { createServer, type ViteDevServer } from "vite";
import { startDemoGame, type DemoGame } from "../../src/demo/game";
import { createGameAPI } from "../../src/demo/game-api";
import { startDemoIdP, type DemoIdP } from "../../src/demo/idp";
import { CLIENT_ID, startHarness, type Harness } from "../fixtures/harness";
import { freePort } from "../fixtures/stack";
import { portcullisDevConfig } from "../fixtures/vite-app/vite.config";

const FIXTURE = fileURLToPath(new URL("../fixtures/vite-app", import.meta.url));

/**
 * Development with a real Vite dev server in front (issue 18 item 1): the page, its hot
 * reload and the BFF on the Vite origin, which is Portcullis's PUBLIC_ORIGIN. Vite proxies
 * /auth, /api and /ws (a WebSocket upgrade) to Portcullis.
 */
describe("a studio's front-end on a Vite dev server, Portcullis behind its proxy", () => {
  let app: string;
  let viteOrigin: string;
  let vite: ViteDevServer;
  let idp: DemoIdP;
  let game: DemoGame;
  let h: Harness;
  let browser: Browser;

  beforeAll(async () => {
    // A temporary copy: the hot-reload test edits a file of it.
    app = mkdtempSync(join(tmpdir(), "portcullis-vite-app-"));
    cpSync(FIXTURE, app, { recursive: true, filter: (source) => !source.endsWith("vite.config.ts") });
    const vitePort = await freePort();
    const bffPort = await freePort();
    viteOrigin = `http://localhost:${vitePort}`;
    const clientSecret = "vite-dev-secret-0123456789";
    // The provider sends the browser back to the Vite origin, the only one the page knows.
    idp = await startDemoIdP({ port: 0, clients: [{ clientId: CLIENT_ID, clientSecret, redirectURIs: [`${viteOrigin}/auth/callback/demo`] }] });
    game = await startDemoGame({ port: 0, jwksURL: `http://localhost:${bffPort}/.well-known/jwks.json`, issuer: viteOrigin, httpHandler: createGameAPI() });
    h = await startHarness({
      port: bffPort,
      reuseIdP: { idp, other: null, clientSecret },
      env: { PUBLIC_ORIGIN: viteOrigin, GAME_BACKEND_URL: game.url, OIDC_DEMO_LABEL: "Demo" },
    });
    vite = await createServer({ configFile: false, ...portcullisDevConfig({ root: app, port: vitePort, portcullis: h.origin }) });
    await vite.listen();
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await vite?.close();
    await h?.close();
    await idp?.close();
    await game?.close();
    rmSync(app, { recursive: true, force: true });
  });

  it("logs in through the real provider on the Vite origin, calls /api and relays the game socket through Vite's proxy, then hot-reloads a module without losing any of it", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));

    await page.goto(`${viteOrigin}/`);
    await page.locator("#greeting", { hasText: "Hello from Vite" }).waitFor();
    await page.getByRole("link", { name: "Log in with Demo" }).click();
    await page.waitForURL(/127\.0\.0\.1:\d+\/interaction\//);
    await page.fill("input[name=login]", "Vi");
    await page.click("button[type=submit]");
    await page.waitForURL(`${viteOrigin}/`);
    await page.locator("#who", { hasText: "Vi" }).waitFor();
    // The session cookie belongs to the Vite origin: the BFF's own origin never saw the page.
    const cookies = await context.cookies(viteOrigin);
    expect(cookies.find((c) => c.name === "__Host-Http-session")).toMatchObject({ httpOnly: true, secure: true, sameSite: "Strict" });
    expect(h.audit.named("login.success")).toHaveLength(1);

    // /api through Vite to Portcullis to the game backend, with the assertion.
    await page.locator("#profile", { hasText: "profile of Vi" }).waitFor();
    // The relayed socket: ticket, upgrade through Vite's ws proxy, the game's welcome, a chat echo.
    await page.locator("#status[data-state=connected]").waitFor();
    await page.locator("#log li[data-type=welcome]").waitFor();
    await page.evaluate(() => (window as unknown as { sendChat(text: string): void }).sendChat("through vite"));
    await page.locator("#log li[data-type=chat]", { hasText: "Vi: through vite" }).waitFor();
    expect(h.bff.registry.size).toBe(1);

    // Hot reload: edit a module of the running app; Vite swaps it in, the page is not reloaded.
    await page.evaluate(() => {
      (window as unknown as { marker: string }).marker = "same page";
    });
    const greeting = join(app, "greeting.js");
    writeFileSync(greeting, readFileSync(greeting, "utf8").replace("Hello from Vite", "Hello, hot reload"));
    await page.locator("#greeting", { hasText: "Hello, hot reload" }).waitFor();
    expect(await page.evaluate(() => (window as unknown as { marker?: string }).marker)).toBe("same page");
    expect(await page.locator("#status").getAttribute("data-state")).toBe("connected");
    await page.evaluate(() => (window as unknown as { sendChat(text: string): void }).sendChat("still here"));
    await page.locator("#log li[data-type=chat]", { hasText: "Vi: still here" }).waitFor();
    expect(await page.locator("#log li[data-type=welcome]").count()).toBe(1);
    const me = await page.evaluate(() => fetch("/auth/me").then((r) => r.status));
    expect(me).toBe(200);
    expect(errors).toEqual([]);
    await context.close();
  });
});

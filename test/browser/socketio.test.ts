import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { launchChromium } from "../fixtures/chromium";
import { startStack } from "../fixtures/stack";
import { startSocketIOStack, type SocketIOStack } from "../fixtures/socketio-stack";

const SOCKET_IO_ROUTE = JSON.stringify([{ path: "/socket.io/", backendProtocol: null }]);

type State = [string, Record<string, unknown>];

async function launch(): Promise<Browser> {
  return launchChromium();
}

/** What a page saw that it should not have: CSP violations and console errors. */
async function watch(page: Page): Promise<string[]> {
  const problems: string[] = [];
  await page.exposeBinding("__reportViolation", (_source, text: string) => {
    problems.push(`CSP: ${text}`);
  });
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (event) => {
      (window as unknown as { __reportViolation(t: string): void }).__reportViolation(`${event.violatedDirective} ${event.blockedURI}`);
    });
  });
  page.on("console", (message) => {
    // The contract's 401 before login, and a refused or failed connection the test provokes, are expected.
    if (message.type() === "error" && !/status of 40[13]|status of 50[23]|WebSocket connection to|net::ERR_/.test(message.text())) problems.push(message.text());
  });
  return problems;
}

describe("the demo's Socket.IO lobby in a real Chromium (issue 12)", () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  let browser: Browser;
  beforeAll(async () => {
    stack = await startStack({ env: { WS_ROUTES: SOCKET_IO_ROUTE } });
    browser = await launch();
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.close();
  });

  async function enterLobby(context: BrowserContext, name: string): Promise<{ page: Page; problems: string[] }> {
    const page = await context.newPage();
    const problems = await watch(page);
    await page.goto(`${stack.h.origin}/`);
    await page.getByRole("link", { name: "Log in with Demo" }).click();
    await page.waitForURL(/127\.0\.0\.1:\d+\/interaction\//);
    await page.fill("input[name=login]", name);
    await page.click("button[type=submit]");
    await page.waitForURL(`${stack.h.origin}/`);
    await page.getByRole("link", { name: "Lobby chat" }).click();
    await page.waitForURL(`${stack.h.origin}/lobby.html`);
    await page.locator("#status[data-state=connected]").waitFor();
    await page.locator("#transport", { hasText: "websocket" }).waitFor();
    return { page, problems };
  }

  it("two players chat in the lobby beside the arena, through polling upgraded to a WebSocket, under the page's CSP", async () => {
    const contextA = await browser.newContext();
    const contextB = await browser.newContext();
    const a = await enterLobby(contextA, "Lou");
    const b = await enterLobby(contextB, "Mo");
    await a.page.locator("#roster li[data-name=Mo]").waitFor();
    await a.page.fill("#chat-input", "anyone for a match?");
    await a.page.press("#chat-input", "Enter");
    await b.page.locator("#chat-log li", { hasText: "anyone for a match?" }).waitFor();
    await b.page.fill("#chat-input", "me!");
    await b.page.press("#chat-input", "Enter");
    await a.page.locator("#chat-log li", { hasText: "me!" }).waitFor();
    expect(stack.game.lobby.playerCount()).toBe(2);
    // Logging out elsewhere ends the lobby page's session: it shows the login, and stops.
    await b.page.evaluate(() => fetch("/auth/logout", { method: "POST", headers: { "X-CSRF": "1" } }));
    await b.page.locator("#status[data-state=ended]").waitFor();
    await b.page.locator("#login-view:not([hidden])").waitFor();
    await a.page.locator("#roster li[data-name=Mo]").waitFor({ state: "detached" });
    expect(a.problems).toEqual([]);
    expect(b.problems).toEqual([]);
    await contextA.close();
    await contextB.close();
  });
});

/**
 * The helper in Chromium against the stock Socket.IO fixture (the migration guide's server).
 * Each test opens /lobby.html — the real page, with its real CSP — with lobby.js stubbed out,
 * and drives public/portcullis-socketio.js from the page, as a game's own script would.
 */
describe("connectSocketIO in a real Chromium against a stock Socket.IO 4.8 game (issue 12)", () => {
  let stack: SocketIOStack;
  let browser: Browser;
  beforeAll(async () => {
    stack = await startSocketIOStack({ backend: { transports: ["polling", "websocket"], refuse: (identity) => identity.name.startsWith("banned") } });
    browser = await launch();
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.close();
  });

  interface Client {
    page: Page;
    problems: string[];
    /** POST /auth/ws-ticket requests the page made. */
    tickets: () => number;
    states: () => Promise<State[]>;
    reached(state: string, options?: { from?: number; ms?: number; transport?: string }): Promise<Record<string, unknown>>;
    run<T>(source: string): Promise<T>;
  }

  async function client(name: string, options: Record<string, unknown>): Promise<Client> {
    const context = await browser.newContext();
    const page = await context.newPage();
    const problems = await watch(page);
    await page.route("**/lobby.js", (route) => route.fulfill({ contentType: "text/javascript", body: "" }));
    let tickets = 0;
    page.on("request", (request) => {
      if (request.url().endsWith("/auth/ws-ticket")) tickets += 1;
    });
    // A real login through the identity provider, landing on the (stubbed) lobby page.
    await page.goto(`${stack.h.origin}/auth/login/demo?returnTo=%2Flobby.html`);
    await page.waitForURL(/127\.0\.0\.1:\d+\/interaction\//);
    await page.fill("input[name=login]", name);
    await page.click("button[type=submit]");
    await page.waitForURL(`${stack.h.origin}/lobby.html`);
    // Plain JavaScript, as the game's page has it (the modules are ours, from our origin).
    await page.evaluate(`(async () => {
      const { io } = await import("/vendor/socket.io.esm.min.js");
      const { connectSocketIO } = await import("/portcullis.js");
      window.states = [];
      window.socket = connectSocketIO(io, { ...${JSON.stringify(options)}, onState: (state, detail) => window.states.push([state, detail]) });
      window.socket.on("question", (question, ack) => ack(question + "!"));
    })()`);
    const states = (): Promise<State[]> => page.evaluate("window.states");
    return {
      page,
      problems,
      tickets: () => tickets,
      states,
      async reached(state, { from = 0, ms = 10_000, transport } = {}) {
        let found: Record<string, unknown> | undefined;
        const deadline = Date.now() + ms;
        while (found === undefined) {
          const seen = await states();
          found = seen.slice(from).find(([s, d]) => s === state && (transport === undefined || d.transport === transport))?.[1];
          if (found === undefined && Date.now() > deadline) throw new Error(`state ${state} not reached: ${JSON.stringify(seen.slice(from))}`);
          if (found === undefined) await page.waitForTimeout(20);
        }
        return found;
      },
      run: (source) => page.evaluate(source),
    };
  }

  const transportCases: [string, ("polling" | "websocket")[]][] = [
    ["WebSocket only", ["websocket"]],
    ["polling only", ["polling"]],
    ["polling upgraded to WebSocket", ["polling", "websocket"]],
  ];
  it.each(transportCases)("%s: acks both ways, binary, the query string; one ticket at most", async (_name, transports) => {
    const c = await client("chr-transport", { transports, query: { room: "r 9" } });
    await c.reached("connected", { transport: transports.at(-1) });
    expect(await c.run("window.socket.timeout(5000).emitWithAck('echo', 'hi', 3)")).toEqual(["hi", 3]);
    expect(await c.run("window.socket.timeout(5000).emitWithAck('ask', 'go')")).toBe("go!");
    const bytes = await c.run<number[]>(
      "window.socket.timeout(5000).emitWithAck('echo', new Uint8Array([0, 1, 254, 255])).then(([b]) => [...new Uint8Array(b)])",
    );
    expect(bytes).toEqual([0, 1, 254, 255]);
    const who = await c.run<{ query: Record<string, string>; identity: { name: string } }>("window.socket.timeout(5000).emitWithAck('whoami')");
    expect(who.query).toMatchObject({ room: "r 9", EIO: "4" });
    expect(who.identity.name).toBe("chr-transport");
    expect(c.tickets()).toBe(transports.includes("websocket") ? 1 : 0);
    expect(c.problems).toEqual([]);
    await c.page.context().close();
  });

  it.each(transportCases)("%s: logout ends the client, with no retry loop", async (_name, transports) => {
    const c = await client("chr-logout", { transports });
    await c.reached("connected", { transport: transports.at(-1) });
    const tickets = c.tickets();
    let socketIORequests = 0;
    c.page.on("request", (request) => {
      if (request.url().includes("/socket.io/")) socketIORequests += 1;
    });
    await c.run("fetch('/auth/logout', { method: 'POST', headers: { 'X-CSRF': '1' } })");
    expect(await c.reached("ended")).toEqual({ why: "session" });
    const requestsAtEnd = socketIORequests;
    const ticketsAtEnd = c.tickets();
    await c.page.waitForTimeout(2_000);
    expect(c.tickets()).toBe(ticketsAtEnd);
    expect(ticketsAtEnd - tickets).toBeLessThanOrEqual(1);
    expect(socketIORequests).toBe(requestsAtEnd);
    expect((await c.states()).filter(([s]) => s === "ended")).toHaveLength(1);
    await c.page.context().close();
  });

  it("a refused player: over polling the game's 403 ends it at once; over a WebSocket after maxRefusals attempts", async () => {
    const polling = await client("banned-chr", {});
    expect(await polling.reached("refused")).toEqual({ why: "forbidden", status: 403 });
    const ws = await client("banned-chr", { transports: ["websocket"], maxRefusals: 3, maxDelayMs: 300 });
    expect(await ws.reached("refused")).toMatchObject({ why: "upgrade refused", attempts: 3 });
    await ws.page.waitForTimeout(1_500);
    expect(ws.tickets()).toBe(3);
    expect(polling.tickets()).toBe(1);
    await polling.page.context().close();
    await ws.page.context().close();
  });

  const restarts: [string, "portcullis" | "game", ("polling" | "websocket")[]][] = [
    ["Portcullis, WebSocket", "portcullis", ["websocket"]],
    ["Portcullis, polling upgraded to WebSocket", "portcullis", ["polling", "websocket"]],
    ["the game, WebSocket", "game", ["websocket"]],
    ["the game, polling", "game", ["polling"]],
  ];
  it.each(restarts)("a restart of %s: back within 10 s with fresh tickets", async (_name, which, transports) => {
    const c = await client("chr-restart", { transports });
    await c.reached("connected", { transport: transports.at(-1) });
    const from = (await c.states()).length;
    const tickets = c.tickets();
    const started = Date.now();
    if (which === "portcullis") await stack.restartPortcullis();
    else await stack.restartGame();
    await c.reached("connected", { from, ms: 10_000, transport: transports.at(-1) });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect((await c.states()).slice(from).some(([s]) => s === "ended" || s === "refused")).toBe(false);
    if (transports.includes("websocket")) expect(c.tickets()).toBeGreaterThan(tickets);
    expect(await c.run("window.socket.timeout(5000).emitWithAck('echo', 'back')")).toEqual(["back"]);
    await c.page.context().close();
  });
});

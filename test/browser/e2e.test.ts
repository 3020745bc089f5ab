import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Browser, type BrowserContext, type Page, type Response } from "playwright-core";
import { launchChromium } from "../fixtures/chromium";
import { OAuth2Client, OAuth2RequestError } from "arctic";
import { startStack } from "../fixtures/stack";
import { CLIENT_ID, type Harness } from "../fixtures/harness";


interface Observed {
  responses: Response[];
  violations: string[];
  consoleErrors: string[];
  navigations: string[];
}

describe("the game in a real Chromium (issue 5, SECURITY.md A1, C12, F30)", () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  let h: Harness;
  let browser: Browser;
  const observed = new Map<Page, Observed>();

  beforeAll(async () => {
    stack = await startStack();
    h = stack.h;
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.close();
  });

  async function newPage(context: BrowserContext): Promise<Page> {
    const page = await context.newPage();
    const record: Observed = { responses: [], violations: [], consoleErrors: [], navigations: [] };
    observed.set(page, record);
    await page.exposeBinding("__reportViolation", (_source, text: string) => {
      record.violations.push(text);
    });
    await page.addInitScript(() => {
      document.addEventListener("securitypolicyviolation", (event) => {
        (window as unknown as { __reportViolation(t: string): void }).__reportViolation(`${event.violatedDirective} ${event.blockedURI}`);
      });
    });
    page.on("response", (response) => record.responses.push(response));
    page.on("console", (message) => {
      // The page asks /auth/me before login and gets the contract's 401: expected, not an error.
      if (message.type() === "error" && !/status of 401/.test(message.text())) record.consoleErrors.push(message.text());
    });
    page.on("framenavigated", (frame) => {
      if (frame === page.mainFrame()) record.navigations.push(frame.url());
    });
    return page;
  }

  async function login(page: Page, name: string): Promise<void> {
    await page.goto(`${h.origin}/`);
    await page.getByRole("link", { name: "Log in with Demo" }).click();
    await page.waitForURL(/127\.0\.0\.1:\d+\/interaction\//);
    await page.fill("input[name=login]", name);
    await page.click("button[type=submit]");
    await page.waitForURL(`${h.origin}/`);
    await page.locator("#player-name", { hasText: name }).waitFor();
    await page.locator("#status[data-state=connected]").waitFor();
  }

  it("logs in through the identity provider on another site and lands logged in, first try, no loop", async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await login(page, "Ada");
    const navigations = observed.get(page)?.navigations ?? [];
    const origins = navigations.map((url) => new URL(url).origin);
    expect(origins[0]).toBe(h.origin);
    expect(origins.some((o) => o.includes("127.0.0.1"))).toBe(true);
    expect(navigations.filter((url) => url.includes("/auth/login/"))).toHaveLength(0);
    expect(navigations.filter((url) => url.includes("/auth/callback/"))).toHaveLength(1);
    expect(navigations.at(-1)).toBe(`${h.origin}/`);
    expect(h.audit.named("login.started").length).toBe(1);
    await context.close();
  });

  it("shows two players each other's moves and chat", async () => {
    const contextA = await browser.newContext({ viewport: { width: 1360, height: 820 } });
    const contextB = await browser.newContext({ viewport: { width: 1360, height: 820 } });
    const a = await newPage(contextA);
    const b = await newPage(contextB);
    await login(a, "Bea");
    await login(b, "Cy");
    await a.locator("#roster li[data-name=Cy]").waitFor();
    await b.locator("#roster li[data-name=Bea]").waitFor();
    const x = Number(await a.locator("#roster li[data-name=Cy]").getAttribute("data-x"));
    await b.click("#arena");
    for (let i = 0; i < 6; i += 1) {
      await b.keyboard.press("ArrowRight");
      await b.waitForTimeout(60);
    }
    await b.keyboard.press("d");
    await a.waitForFunction(
      ([selector, from]) => Number(document.querySelector(selector)?.getAttribute("data-x")) > from,
      ["#roster li[data-name=Cy]", x] as const,
    );
    await a.fill("#chat-input", "good game, Cy");
    await a.press("#chat-input", "Enter");
    await b.locator("#chat-log li", { hasText: "good game, Cy" }).waitFor();
    await b.fill("#chat-input", "thanks Bea!");
    await b.press("#chat-input", "Enter");
    await a.locator("#chat-log li", { hasText: "thanks Bea!" }).waitFor();
    // The README's pictures come from `npm run screenshots`, never from a test run (issue 18).

    for (const page of [a, b]) {
      expect(observed.get(page)?.violations).toEqual([]);
      expect(observed.get(page)?.consoleErrors, JSON.stringify(observed.get(page)?.consoleErrors)).toEqual([]);
    }
    await contextA.close();
    await contextB.close();
  });

  it("keeps every token out of the page: no readable cookie, no storage, no token in any response", async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await login(page, "Dee");
    await page.evaluate(() => fetch("/auth/me").then((r) => r.text()));
    const exposure = await page.evaluate(async () => ({
      cookie: document.cookie,
      local: localStorage.length,
      session: sessionStorage.length,
      databases: (await indexedDB.databases()).length,
    }));
    expect(exposure).toEqual({ cookie: "", local: 0, session: 0, databases: 0 });

    const tokens = [...h.idp.issued.accessTokens, ...h.idp.issued.refreshTokens, ...h.idp.issued.idTokens];
    expect(tokens.length).toBeGreaterThan(0);
    const responses = (observed.get(page)?.responses ?? []).filter((r) => r.url().startsWith(h.origin));
    expect(responses.length).toBeGreaterThan(3);
    for (const response of responses) {
      const headers = JSON.stringify(await response.allHeaders());
      const body = await response.body().catch(() => Buffer.alloc(0));
      for (const token of tokens) {
        expect(headers.includes(token)).toBe(false);
        expect(body.includes(Buffer.from(token))).toBe(false);
      }
      for (const setCookie of (await response.headerValues("set-cookie")).flatMap((v) => v.split("\n"))) {
        expect(setCookie).toMatch(/^__Host-Http-(session|login)=[^;]*; HttpOnly; Secure; SameSite=(Strict|Lax); Path=\/; Max-Age=\d+$/);
      }
    }
    const cookies = await context.cookies(h.origin);
    const session = cookies.find((c) => c.name === "__Host-Http-session");
    expect(session).toMatchObject({ httpOnly: true, secure: true, sameSite: "Strict", path: "/" });
    expect(observed.get(page)?.violations).toEqual([]);
    await context.close();
  });

  /** Nothing of the last player left on a logged-out page: no game, no names, no chat, no sessions. */
  async function expectNothingStale(page: Page): Promise<void> {
    await page.locator("#login-view").waitFor({ state: "visible" });
    for (const selector of ["#game-view", "#who", "#logout"]) {
      expect(await page.locator(selector).isVisible(), selector).toBe(false);
    }
    expect(await page.locator("#roster li").count(), "players").toBe(0);
    expect(await page.locator("#chat-log li").count(), "chat").toBe(0);
    expect(await page.locator("#sessions li").count(), "sessions").toBe(0);
    expect(await page.locator("#player-name").textContent()).toBe("");
    expect(await page.getByRole("link", { name: "Log in with Demo" }).count()).toBe(1);
  }

  it("logging out in one tab closes the other tab's socket and shows the session ended; neither keeps the old players, chat or sessions (issue 18 item 5)", async () => {
    const context = await browser.newContext();
    const first = await newPage(context);
    await login(first, "Eve");
    const second = await newPage(context);
    await second.goto(`${h.origin}/`);
    await second.locator("#status[data-state=connected]").waitFor();
    await second.locator("#roster li", { hasText: "Eve (2)" }).waitFor();
    await first.fill("#chat-input", "brb");
    await first.press("#chat-input", "Enter");
    await second.locator("#chat-log li", { hasText: "brb" }).waitFor();
    await second.locator("#sessions li").first().waitFor();
    await first.click("#logout");
    await second.locator("#status[data-state=ended]").waitFor();
    await second.locator("#ended", { hasText: "Your session ended" }).waitFor({ state: "visible" });
    await expectNothingStale(first);
    await expectNothingStale(second);
    await context.close();
  });

  it("labels an account's second session \"Kai (2)\" in both players' lists (issue 18 item 5)", async () => {
    const contextA = await browser.newContext();
    const contextB = await browser.newContext();
    const a = await newPage(contextA);
    const b = await newPage(contextB);
    await login(a, "Kai");
    await login(b, "Kai");
    await a.locator("#roster li[data-label='Kai (2)']", { hasText: "Kai (2)" }).waitFor();
    await b.locator("#roster li", { hasText: "Kai (2) (you)" }).waitFor();
    expect(await b.locator("#roster li").allTextContents()).toEqual(expect.arrayContaining(["Kai", "Kai (2) (you)"]));
    await contextA.close();
    await contextB.close();
  });

  it("\"Log out of Demo too\" ends the session here and at the identity provider, and lands back on the game signed out of both (issue 15 item 2)", async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await login(page, "Lou");
    const providerSession = async (): Promise<boolean> => (await context.cookies()).some((c) => c.domain === "127.0.0.1" && c.name.startsWith("_session"));
    expect(await providerSession()).toBe(true);
    await page.locator("#logout-provider", { hasText: "Log out of Demo too" }).click();
    // The provider's end-session page asks before it signs the player out.
    await page.waitForURL((url) => url.origin === h.idp.issuer);
    await page.click("button[type=submit]");
    await page.waitForURL(`${h.origin}/`);
    await page.locator("#login-view").waitFor({ state: "visible" });
    expect(await page.evaluate(() => fetch("/auth/me").then((r) => r.status))).toBe(401);
    expect(await providerSession()).toBe(false);
    await context.close();
  });

  it("after logging out, \"Log in with Demo\" asks for a name again, so another player can sit down (issue 18 item 4)", async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await login(page, "Hal");
    await page.click("#logout");
    await page.locator("#login-view").waitFor({ state: "visible" });
    // The identity provider still remembers Hal (its own session cookie is still there)…
    expect((await context.cookies()).some((c) => c.domain === "127.0.0.1")).toBe(true);
    // …but shows its form anyway, and the next player is Ivy, not Hal again.
    await login(page, "Ivy");
    expect(await page.locator("#roster li", { hasText: "Hal" }).count()).toBe(0);
    const me = (await page.evaluate(() => fetch("/auth/me").then((r) => r.json()))) as { user: { displayName: string } };
    expect(me.user.displayName).toBe("Ivy");
    await context.close();
  });

  it("logging in again ends the first session: gone from /auth/sessions, its cookie refused, its grant revoked (issue 11 item 4, SECURITY.md A3, I43)", async () => {
    const context = await browser.newContext();
    const page = await newPage(context);
    await login(page, "Gus");
    const firstCookie = (await context.cookies(h.origin)).find((c) => c.name === "__Host-Http-session")?.value ?? "";
    const firstId = firstCookie.split(".")[0];
    const firstRefreshToken = h.idp.issued.refreshTokens.at(-1) ?? "";
    expect(firstId).toMatch(/^[a-z2-7]{26}$/);
    // Log in again from the logged-in page, as a link on it would: a same-origin navigation
    // to /auth/login, then the provider's sign-in form on another site (its own session is
    // gone, as after signing out there), then the callback. That navigation starts on the
    // provider's page, so Chromium sends it without the Strict session cookie.
    await context.clearCookies({ domain: "127.0.0.1" });
    const callbackCookies: Promise<string>[] = [];
    page.on("request", (request) => {
      if (request.url().includes("/auth/callback/")) callbackCookies.push(request.allHeaders().then((headers) => headers.cookie ?? ""));
    });
    await page.evaluate(() => {
      window.location.assign("/auth/login/demo?returnTo=%2F");
    });
    await page.waitForURL(/127\.0\.0\.1:\d+\/interaction\//);
    await page.fill("input[name=login]", "Gus");
    await page.click("button[type=submit]");
    await page.waitForURL(`${h.origin}/`);
    await page.locator("#player-name", { hasText: "Gus" }).waitFor();
    await page.locator("#status[data-state=connected]").waitFor();
    const sent = await Promise.all(callbackCookies);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toContain("__Host-Http-login=");
    expect(sent[0]).not.toContain("__Host-Http-session");

    const secondCookie = (await context.cookies(h.origin)).find((c) => c.name === "__Host-Http-session")?.value ?? "";
    expect(secondCookie).not.toBe(firstCookie);
    const listed = (await page.evaluate(() => fetch("/auth/sessions").then((r) => r.json()))) as { sessions: { id: string; current: boolean }[] };
    expect(listed.sessions.map((s) => [s.id, s.current])).toEqual([[secondCookie.split(".")[0], true]]);
    const refused = await fetch(`${h.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${firstCookie}` } });
    expect(refused.status).toBe(401);
    expect(h.audit.named("session.revoked").some((e) => e.reason === "replaced")).toBe(true);
    await h.bff.sessions.revocationsSettled();
    const client = new OAuth2Client(CLIENT_ID, h.clientSecret, null);
    const grant = await client.refreshAccessToken(`${h.idp.issuer}/token`, firstRefreshToken, []).catch((e: unknown) => e);
    expect(grant instanceof OAuth2RequestError ? grant.code : "ok").toBe("invalid_grant");
    expect(observed.get(page)?.violations).toEqual([]);
    await context.close();
  });

  it("revoking a session from context A's Sessions panel ends context B's session", async () => {
    const contextA = await browser.newContext({ userAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36" });
    const contextB = await browser.newContext({ userAgent: "Mozilla/5.0 (Windows NT 10.0) Firefox/140.0" });
    const a = await newPage(contextA);
    const b = await newPage(contextB);
    await login(b, "Fay");
    await login(a, "Fay");
    await a.reload();
    const revoke = a.locator("#sessions button.revoke");
    await revoke.first().waitFor();
    expect(await revoke.count()).toBe(1);
    await revoke.first().click();
    await b.locator("#status[data-state=ended]").waitFor();
    await b.locator("#ended").waitFor({ state: "visible" });
    await expectNothingStale(b);
    await a.locator("#sessions button.revoke").waitFor({ state: "detached" });
    expect(await a.locator("#status").getAttribute("data-state")).toBe("connected");
    await contextA.close();
    await contextB.close();
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Browser, type BrowserContext, type Page } from "playwright-core";
import { launchChromium } from "../fixtures/chromium";
import { startStack } from "../fixtures/stack";
import type { Harness } from "../fixtures/harness";


interface Box {
  left: number;
  right: number;
}

interface Layout {
  innerWidth: number;
  scrollWidth: number;
  send: Box | null;
  side: Box | null;
  sessions: Box | null;
  thisSession: Box | null;
}

/** What the page measures of itself: the document's width and the boxes that were cut off. */
function measure(page: Page): Promise<Layout> {
  return page.evaluate(() => {
    const box = (selector: string): { left: number; right: number } | null => {
      const element = document.querySelector(selector);
      if (element === null) return null;
      const rect = element.getBoundingClientRect();
      return { left: rect.left, right: rect.right };
    };
    return {
      innerWidth: window.innerWidth,
      scrollWidth: document.documentElement.scrollWidth,
      send: box("#chat-form button[type=submit]"),
      side: box("aside.side"),
      sessions: box("#sessions"),
      thisSession: box("#sessions .this"),
    };
  });
}

describe("the arena's layout at common window widths (issue 11)", () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  let h: Harness;
  let browser: Browser;

  beforeAll(async () => {
    stack = await startStack();
    h = stack.h;
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.close();
  });

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

  /** A phone: 390 px wide, touch events, a coarse pointer. */
  function phone(): Promise<BrowserContext> {
    return browser.newContext({ viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true, deviceScaleFactor: 2 });
  }

  it.each([
    [1280, 800],
    [390, 844],
  ])("at %i×%i px, logged out: only the login card, no game, no players, no 'Log out', no overflow (issue 18 item 5)", async (width, height) => {
    const context = await browser.newContext({ viewport: { width, height } });
    try {
      const page = await context.newPage();
      await page.goto(`${h.origin}/`);
      await page.getByRole("link", { name: "Log in with Demo" }).waitFor();
      expect(await page.locator("#login-view").isVisible()).toBe(true);
      for (const selector of ["#game-view", "#arena", "#roster", "#chat-form", "#sessions", "#who", "#logout", "#touch"]) {
        expect(await page.locator(selector).isVisible(), selector).toBe(false);
      }
      const layout = await measure(page);
      expect(layout.scrollWidth, "document width").toBeLessThanOrEqual(width);
    } finally {
      await context.close();
    }
  });

  it("on a phone, the on-screen arrows move the player by touch; a desktop window has none (issue 18 item 5)", async () => {
    const context = await phone();
    const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    try {
      const page = await context.newPage();
      await login(page, "Thumb");
      const me = page.locator("#roster li[data-name=Thumb]");
      await me.waitFor();
      const right = page.getByRole("button", { name: "Move right" });
      const down = page.getByRole("button", { name: "Move down" });
      expect(await right.isVisible()).toBe(true);
      const layout = await measure(page);
      expect(layout.scrollWidth, "document width with the arrows").toBeLessThanOrEqual(390);
      const x = Number(await me.getAttribute("data-x"));
      const y = Number(await me.getAttribute("data-y"));
      for (let i = 0; i < 3; i += 1) {
        await right.tap();
        await down.tap();
      }
      await page.waitForFunction(
        ([from, fromY]) => {
          const item = document.querySelector("#roster li[data-name=Thumb]");
          return Number(item?.getAttribute("data-x")) > from && Number(item?.getAttribute("data-y")) > fromY;
        },
        [x, y] as const,
      );

      const wide = await desktop.newPage();
      await login(wide, "Mouse");
      expect(await wide.locator("#touch").isVisible()).toBe(false);
    } finally {
      await context.close();
      await desktop.close();
    }
  });

  it.each([
    [1360, 820],
    [1280, 800],
    [390, 844],
  ])("at %i×%i px, logged in: no horizontal overflow, Send and the sessions column fully visible", async (width, height) => {
    const context = await browser.newContext({ viewport: { width, height } });
    try {
      const page = await context.newPage();
      await page.goto(`${h.origin}/`);
      await page.getByRole("link", { name: "Log in with Demo" }).click();
      await page.waitForURL(/127\.0\.0\.1:\d+\/interaction\//);
      await page.fill("input[name=login]", `Layout${width}`);
      await page.click("button[type=submit]");
      await page.waitForURL(`${h.origin}/`);
      await page.locator("#player-name", { hasText: `Layout${width}` }).waitFor();
      await page.locator("#status[data-state=connected]").waitFor();
      await page.locator("#sessions .this").waitFor();

      const layout = await measure(page);
      expect(layout.innerWidth).toBe(width);
      expect(layout.scrollWidth, "document width").toBeLessThanOrEqual(layout.innerWidth);
      for (const [name, box] of [
        ["Send", layout.send],
        ["the side column", layout.side],
        ["the sessions list", layout.sessions],
        ["'this session'", layout.thisSession],
      ] as const) {
        expect(box, name).not.toBeNull();
        expect(box?.left ?? -1, `${name} left`).toBeGreaterThanOrEqual(0);
        expect(box?.right ?? Infinity, `${name} right`).toBeLessThanOrEqual(layout.innerWidth);
      }
    } finally {
      await context.close();
    }
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser, type Page } from "playwright-core";
import { startStack } from "../fixtures/stack";
import type { Harness } from "../fixtures/harness";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

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
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.close();
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

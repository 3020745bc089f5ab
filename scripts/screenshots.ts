// The README's pictures: `npm run screenshots` starts the demo stack (identity provider,
// game backend, Portcullis, all on free ports), logs two players in through the real login
// in Chromium, one at 1,280 px and one on a 390 px touch phone, and writes
// docs/arena.png and docs/arena-phone.png. Tests never write tracked files (issue 18).
import { mkdirSync } from "node:fs";
import { type BrowserContext, type Page } from "playwright-core";
import { launchChromium } from "../test/fixtures/chromium";
import { startStack } from "../test/fixtures/stack";


async function login(context: BrowserContext, origin: string, name: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${origin}/`);
  await page.getByRole("link", { name: "Log in with Demo" }).click();
  await page.waitForURL(/\/interaction\//);
  await page.fill("input[name=login]", name);
  await page.click("button[type=submit]");
  await page.waitForURL(`${origin}/`);
  await page.locator("#status[data-state=connected]").waitFor();
  await page.locator("#sessions .this").waitFor();
  return page;
}

async function main(): Promise<void> {
  const stack = await startStack();
  const browser = await launchChromium();
  try {
    const origin = stack.h.origin;
    const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true, deviceScaleFactor: 2 });
    const ada = await login(desktop, origin, "Ada");
    const bo = await login(phone, origin, "Bo");
    await ada.locator("#roster li[data-name=Bo]").waitFor();

    // A few moves from each, and a short exchange in the chat.
    await ada.click("#arena");
    for (const key of ["ArrowRight", "ArrowRight", "ArrowDown", "ArrowRight", "ArrowDown"]) {
      await ada.keyboard.press(key);
      await ada.waitForTimeout(60);
    }
    for (const direction of ["left", "left", "up", "left"]) {
      await bo.getByRole("button", { name: `Move ${direction}` }).tap();
      await bo.waitForTimeout(60);
    }
    await ada.fill("#chat-input", "good game, Bo");
    await ada.press("#chat-input", "Enter");
    await bo.locator("#chat-log li", { hasText: "good game, Bo" }).waitFor();
    await bo.fill("#chat-input", "thanks Ada!");
    await bo.press("#chat-input", "Enter");
    await ada.locator("#chat-log li", { hasText: "thanks Ada!" }).waitFor();
    await ada.locator("#chat-input").blur();
    await bo.locator("#chat-input").blur();
    // Two animation frames, so both canvases show the last moves.
    for (const page of [ada, bo]) await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));

    mkdirSync("docs", { recursive: true });
    await ada.screenshot({ path: "docs/arena.png" });
    await bo.screenshot({ path: "docs/arena-phone.png" });
    process.stdout.write("wrote docs/arena.png (1280×800) and docs/arena-phone.png (390×844 at 2×)\n");
  } finally {
    await browser.close();
    await stack.close();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`screenshots failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});

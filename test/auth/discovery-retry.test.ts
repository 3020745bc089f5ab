import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import type { Timers } from "../../src/auth/providers";
import { startDemoGame, type DemoGame } from "../../src/demo/game";
import { createGameAPI } from "../../src/demo/game-api";
import { startDemoIdP, type DemoIdP } from "../../src/demo/idp";
import { CLIENT_ID, startHarness, type Harness } from "../fixtures/harness";
import { freePort } from "../fixtures/stack";

/** Discovery retries fired by the test, in order, instead of waiting for them. */
class ManualTimers implements Timers {
  readonly scheduled: { ms: number; callback: () => Promise<void>; cancelled: boolean }[] = [];

  schedule(callback: () => Promise<void>, ms: number): { cancel(): void } {
    const entry = { ms, callback, cancelled: false };
    this.scheduled.push(entry);
    return { cancel: () => void (entry.cancelled = true) };
  }

  /** Runs the latest retry and waits for its discovery attempt to finish. */
  async fireLatest(): Promise<void> {
    const entry = this.scheduled.at(-1);
    if (entry === undefined || entry.cancelled) throw new Error("no retry pending");
    await entry.callback();
  }
}

describe("provider discovery does not block the start (issue 18)", () => {
  let idp: DemoIdP | null = null;
  let game: DemoGame | null = null;
  let h: Harness | null = null;
  afterEach(async () => {
    await h?.close();
    await idp?.close();
    await game?.close();
    h = idp = game = null;
  });

  /** A BFF whose identity provider is down when it starts; the game backend is up. */
  async function startWithProviderDown(): Promise<{ h: Harness; idp: DemoIdP; timers: ManualTimers; reported: string[] }> {
    const port = await freePort();
    const origin = `http://localhost:${port}`;
    const clientSecret = randomBytes(24).toString("base64url");
    idp = await startDemoIdP({ port: 0, clients: [{ clientId: CLIENT_ID, clientSecret, redirectURIs: [`${origin}/auth/callback/demo`] }] });
    idp.setUnreachable(true);
    game = await startDemoGame({ port: 0, jwksURL: `${origin}/.well-known/jwks.json`, issuer: origin, httpHandler: createGameAPI() });
    const timers = new ManualTimers();
    const reported: string[] = [];
    h = await startHarness({
      port,
      reuseIdP: { idp, other: null, clientSecret },
      env: { GAME_BACKEND_URL: game.url, OIDC_DEMO_LABEL: "Demo" },
      portcullis: { timers, report: (line) => reported.push(line) },
    });
    return { h, idp, timers, reported };
  }

  it("starts while the provider is down, answers 503 on /readyz and its login, and recovers on a retry with backoff", async () => {
    const { h, idp, timers, reported } = await startWithProviderDown();
    expect(reported).toEqual([expect.stringMatching(/^identity provider demo: discovery at http:\/\/127\.0\.0\.1:\d+\/\.well-known\/openid-configuration failed: .*retrying in 1 s$/)]);
    expect(timers.scheduled.map((t) => t.ms)).toEqual([1_000]);

    const ready = await fetch(`${h.origin}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ status: "not_ready", database: true, backend: true, unavailableProviders: ["demo"] });

    const login = await h.agent().fetch(`${h.origin}/auth/login/demo`);
    expect(login.status).toBe(503);
    expect(login.headers.get("location")).toBeNull();
    expect(login.headers.get("retry-after")).toBe("30");
    // No cookie is set on this answer, so only the route's own header keeps it out of caches.
    expect(login.headers.getSetCookie()).toEqual([]);
    expect(login.headers.get("cache-control")).toBe("no-store");
    const page = await login.text();
    expect(page).toContain('data-reason="provider_down"');
    expect(page).toContain("Demo is not answering right now");
    // The operator's reason stays in the log: no URL, no error text on the player's page.
    expect(page).not.toContain("127.0.0.1");
    expect(page).not.toContain("discovery");
    expect(h.audit.named("login.failure").at(-1)).toMatchObject({ provider: "demo", reason: "provider not discovered" });

    // Still down: the next wait doubles.
    await timers.fireLatest();
    expect(timers.scheduled.map((t) => t.ms)).toEqual([1_000, 2_000]);
    expect((await fetch(`${h.origin}/readyz`)).status).toBe(503);

    idp.setUnreachable(false);
    await timers.fireLatest();
    expect(timers.scheduled).toHaveLength(2);
    expect(reported.at(-1)).toBe("identity provider demo: discovery succeeded after 2 failed attempts");
    const readyAgain = await fetch(`${h.origin}/readyz`);
    expect(readyAgain.status).toBe(200);
    expect(await readyAgain.json()).toMatchObject({ status: "ready", unavailableProviders: [] });
    const { agent } = await h.login("late-player");
    expect(await (await agent.fetch(`${h.origin}/auth/me`)).json()).toMatchObject({ user: { displayName: "late-player" } });
  });

  it("cancels the pending retry when Portcullis stops", async () => {
    const { h, timers } = await startWithProviderDown();
    expect(timers.scheduled.map((t) => t.cancelled)).toEqual([false]);
    await h.stop();
    expect(timers.scheduled.map((t) => t.cancelled)).toEqual([true]);
    // close() below would stop it twice; the harness tolerates only one close.
    const dir = h.dir;
    Object.assign(h, { close: async () => rmSync(dir, { recursive: true, force: true }) });
  });

  it("schedules nothing when the first discovery succeeds", async () => {
    const timers = new ManualTimers();
    h = await startHarness({ portcullis: { timers, report: () => undefined } });
    expect(timers.scheduled).toEqual([]);
    expect((await h.agent().fetch(`${h.origin}/auth/login/demo`)).status).toBe(302);
  });
});

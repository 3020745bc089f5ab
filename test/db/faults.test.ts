import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Agent } from "../fixtures/agent";
import { startHarness, type Harness } from "../fixtures/harness";

describe("faults", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    await h.close();
  });

  const count = (table: string): number => (h.bff.db.sqlite.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;

  it("answers 503, writes nothing and keeps running when the database turns read-only during a login", async () => {
    const agent = new Agent();
    const callback = await agent.authorize(await agent.startLogin(h.origin), "readonly-user", h.origin);
    const sessions = count("sessions");
    const accounts = count("accounts");
    h.bff.db.sqlite.pragma("query_only = ON");
    try {
      const response = await agent.fetch(callback);
      expect(response.status).toBe(503);
      expect(response.headers.get("retry-after")).toBe("5");
      expect(await response.json()).toEqual({ error: "unavailable", message: expect.any(String) });
    } finally {
      h.bff.db.sqlite.pragma("query_only = OFF");
    }
    expect(count("sessions")).toBe(sessions);
    expect(count("accounts")).toBe(accounts);
    expect(agent.cookie(h.origin, "__Host-Http-session")).toBeNull();
    expect((await fetch(`${h.origin}/healthz`)).status).toBe(200);
  });

  it("answers 503 to a logged-in player while the database refuses writes, then recovers", async () => {
    const { token } = await h.login("busy-user");
    h.clock.advance(61_000); // the next /auth/me wants to slide, i.e. to write
    h.bff.db.sqlite.pragma("query_only = ON");
    const during = await fetch(`${h.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${token}` } });
    h.bff.db.sqlite.pragma("query_only = OFF");
    expect(during.status).toBe(503);
    const after = await fetch(`${h.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${token}` } });
    expect(after.status).toBe(200);
  });

  it("shows a clear error page and writes nothing when the identity provider is unreachable at the callback", async () => {
    const agent = new Agent();
    const callback = await agent.authorize(await agent.startLogin(h.origin), "unreachable", h.origin);
    const sessions = count("sessions");
    h.idp.setUnreachable(true);
    try {
      const response = await agent.fetch(callback);
      expect(response.status).toBe(400);
      expect(await response.text()).toContain("Login failed");
    } finally {
      h.idp.setUnreachable(false);
    }
    expect(count("sessions")).toBe(sessions);
    expect(h.audit.named("login.failure").some((e) => e.reason === "unreachable")).toBe(true);
  });

  it("keeps sessions across a restart: they live in SQLite", async () => {
    const { token } = await h.login("survivor");
    const { join } = await import("node:path");
    await h.stop();
    const again = await startHarness({
      databasePath: join(h.dir, "portcullis.sqlite"),
      port: Number(new URL(h.origin).port),
      reuseIdP: { idp: h.idp, other: null, clientSecret: h.clientSecret },
      env: { TOKEN_ENCRYPTION_KEYS: h.env.TOKEN_ENCRYPTION_KEYS ?? "", ASSERTION_SIGNING_KEYS: h.env.ASSERTION_SIGNING_KEYS ?? "" },
    });
    try {
      const response = await fetch(`${again.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${token}` } });
      expect(response.status).toBe(200);
    } finally {
      await again.stop();
    }
  });
});

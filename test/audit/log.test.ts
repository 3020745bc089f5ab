import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../fixtures/agent";
import { startHarness, type Harness } from "../fixtures/harness";

describe("audit log (SECURITY.md G32, G33)", () => {
  let h: Harness;
  let logPath: string;
  beforeAll(async () => {
    logPath = join(mkdtempSync(join(tmpdir(), "portcullis-audit-")), "audit", "audit.log");
    h = await startHarness({ env: { AUDIT_LOG_PATH: logPath } });
  });
  afterAll(async () => {
    await h.close();
  });

  it("writes one JSON line per event with UTC time, to the stream and to AUDIT_LOG_PATH", async () => {
    const { agent, token } = await h.login("audited");
    await agent.fetch(`${h.origin}/auth/logout`, { method: "POST", headers: { "x-csrf": "1", origin: "https://evil.example" } });
    await agent.fetch(`${h.origin}/auth/logout`, { method: "POST", headers: h.csrf() });
    await new Agent().fetch(`${h.origin}/auth/callback/demo?state=x&code=y`);
    const names = h.audit.events().map((e) => e.event);
    expect(names).toEqual(
      expect.arrayContaining(["login.started", "session.created", "login.success", "csrf.refused", "session.logged_out", "login.failure"]),
    );
    for (const event of h.audit.events()) {
      expect(event.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
    const sessionId = token.split(".")[0] ?? "";
    const loggedOut = h.audit.named("session.logged_out")[0];
    expect(loggedOut?.session).toMatch(/^[\w-]{16}$/);
    expect(loggedOut?.session).not.toContain(sessionId);
    h.bff.audit.flush();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const file = readFileSync(logPath, "utf8");
    expect(file.trim().split("\n").length).toBeGreaterThan(4);
    expect(file).not.toContain(sessionId);
    expect(file).not.toContain(token);
  });

  it("escapes CR and LF from hostile input, so no line can be forged", async () => {
    await fetch(`${h.origin}/auth/logout`, {
      method: "POST",
      headers: { "x-csrf": "1", origin: 'https://evil.example"}\n{"event":"login.success","forged":true' },
    }).catch(() => undefined);
    await fetch(`${h.origin}/auth/callback/demo?state=x&code=y&error=${encodeURIComponent('x\r\n{"event":"forged"}')}`, {
      headers: { cookie: "__Host-Http-login=abc" },
    });
    const lines = h.audit.text().split("\n").filter((line) => line !== "");
    for (const line of lines) {
      expect(() => JSON.parse(line)).not.toThrow();
      expect(line).not.toContain('"forged":true');
    }
    expect(h.audit.events().some((e) => e.event === "forged")).toBe(false);
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";

describe("login through a real OIDC provider", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("logs in by discovery, answers 200 HTML that navigates same-origin, and sets the session cookie", async () => {
    const agent = h.agent();
    const response = await agent.login(h.origin, "alice", { returnTo: "/arena?x=1" });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/html; charset=utf-8/i);
    const html = await response.text();
    expect(html).toContain('<meta http-equiv="refresh" content="0;url=/arena?x=1">');
    const me = await agent.fetch(`${h.origin}/auth/me`);
    expect(me.status).toBe(200);
    const body = (await me.json()) as { user: { displayName: string; provider: string } };
    expect(body.user).toMatchObject({ displayName: "alice", provider: "demo" });
  });

  it("creates the account once and finds it again on the second login", async () => {
    const first = await h.login("bob");
    const second = await h.login("bob");
    const me1 = (await (await first.agent.fetch(`${h.origin}/auth/me`)).json()) as { user: { id: string }; session: { id: string } };
    const me2 = (await (await second.agent.fetch(`${h.origin}/auth/me`)).json()) as { user: { id: string }; session: { id: string } };
    expect(me2.user.id).toBe(me1.user.id);
    expect(me2.session.id).not.toBe(me1.session.id);
    const count = h.bff.db.sqlite.prepare("SELECT count(*) AS n FROM identities WHERE subject = 'bob'").get() as { n: number };
    expect(count.n).toBe(1);
  });
});

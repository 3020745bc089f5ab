import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Agent } from "../fixtures/agent";
import { startHarness, type Harness } from "../fixtures/harness";

const SECRETS = ["state", "nonce", "code_challenge"] as const;

/**
 * SECURITY.md C11 / RFC 9700 2.1.1, 4.5: state, the PKCE verifier and the nonce are fresh
 * random values per login. Lengths prove nothing about that; these tests read the values a
 * real login sends to the real provider and show what each one defends: a code obtained in
 * one login (the attacker's) must not complete another (the victim's).
 */
describe("login secrets are per login (SECURITY.md C11)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  const sessionCount = (): number => (h.bff.db.sqlite.prepare("SELECT count(*) AS n FROM sessions").get() as { n: number }).n;

  /** The victim's login in progress: its authorization URL and its login-state cookie. */
  async function victimLogin(): Promise<{ victim: Agent; url: URL }> {
    const victim = h.agent();
    return { victim, url: await victim.startLogin(h.origin) };
  }

  /** The attacker's own login, walked at the provider with `edit` applied to its URL; returns the code. */
  async function attackerCode(edit: (url: URL) => void = () => {}): Promise<string> {
    const attacker = h.agent();
    const url = await attacker.startLogin(h.origin);
    edit(url);
    const callback = await attacker.authorize(url, "attacker", h.origin);
    const code = callback.searchParams.get("code");
    if (code === null) throw new Error("the provider sent no code");
    return code;
  }

  /** The victim's browser lands on its own callback, with its own state, but the attacker's code. */
  async function injectInto(victim: Agent, url: URL, code: string): Promise<Response> {
    const callback = new URL("/auth/callback/demo", h.origin);
    callback.searchParams.set("code", code);
    callback.searchParams.set("state", url.searchParams.get("state") ?? "");
    callback.searchParams.set("iss", h.idp.issuer);
    return victim.fetch(callback);
  }

  it("sends a different state, nonce and code_challenge in every login, none equal to another", async () => {
    const seen: string[] = [];
    for (let i = 0; i < 6; i += 1) {
      const url = await h.agent().startLogin(h.origin);
      for (const name of SECRETS) {
        seen.push(url.searchParams.get(name) ?? "");
      }
    }
    expect(seen.every((value) => value.length >= 43)).toBe(true);
    expect(new Set(seen).size).toBe(seen.length);
  });

  it("refuses a code from the attacker's login injected into the victim's callback", async () => {
    const { victim, url } = await victimLogin();
    const code = await attackerCode();
    const sessions = sessionCount();
    expect((await injectInto(victim, url, code)).status).toBe(400);
    expect(sessionCount()).toBe(sessions);
    expect(victim.cookie(h.origin, "__Host-Http-session")).toBeNull();
  });

  it("refuses it by PKCE alone when the attacker's login even carried the victim's nonce (verifier per login)", async () => {
    const { victim, url } = await victimLogin();
    const code = await attackerCode((own) => own.searchParams.set("nonce", url.searchParams.get("nonce") ?? ""));
    const sessions = sessionCount();
    expect((await injectInto(victim, url, code)).status).toBe(400);
    expect(sessionCount()).toBe(sessions);
    // The provider refused the code for the victim's verifier (RFC 7636 4.6).
    expect(h.audit.named("login.failure").at(-1)).toMatchObject({ reason: "invalid_grant" });
  });

  it("refuses it by the nonce alone when the attacker's login even carried the victim's code_challenge (nonce per login)", async () => {
    const { victim, url } = await victimLogin();
    const code = await attackerCode((own) => own.searchParams.set("code_challenge", url.searchParams.get("code_challenge") ?? ""));
    const sessions = sessionCount();
    expect((await injectInto(victim, url, code)).status).toBe(400);
    expect(sessionCount()).toBe(sessions);
    expect(h.audit.named("login.failure").at(-1)).toMatchObject({ reason: "invalid_id_token" });
    expect(String(h.audit.named("login.failure").at(-1)?.detail)).toContain("nonce");
  });

  it("accepts the injected code only with both of the victim's values (so each refusal above is the one defence named)", async () => {
    const { victim, url } = await victimLogin();
    const code = await attackerCode((own) => {
      own.searchParams.set("nonce", url.searchParams.get("nonce") ?? "");
      own.searchParams.set("code_challenge", url.searchParams.get("code_challenge") ?? "");
    });
    expect((await injectInto(victim, url, code)).status).toBe(200);
  });

  it("never adopts a login-state cookie that names no login in progress: a planted or spent handle is replaced", async () => {
    const LOGIN = "__Host-Http-login";
    const agent = h.agent();
    // A handle this BFF never issued (fixation: a cookie planted before the login).
    agent.setCookie(h.origin, LOGIN, "planted-handle-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    await agent.startLogin(h.origin);
    const issued = agent.cookie(h.origin, LOGIN);
    expect(issued).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // A second tab keeps the handle while its first login is still in progress.
    await agent.startLogin(h.origin);
    expect(agent.cookie(h.origin, LOGIN)).toBe(issued);
    // Once every login of that handle has expired, the next login gets a fresh one.
    h.clock.advance(600_000);
    await agent.startLogin(h.origin);
    const fresh = agent.cookie(h.origin, LOGIN);
    expect(fresh).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(fresh).not.toBe(issued);
  });
});

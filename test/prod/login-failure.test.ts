import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOGIN_FAILURE_MESSAGES, type LoginFailureReason } from "../../src/auth/login";
import { Agent } from "../fixtures/agent";
import { startHarness, type Harness } from "../fixtures/harness";

/** The reason code and the player's sentence of a failure page, checked for leaked internals. */
async function failureOf(response: Response): Promise<{ status: number; reason: string | undefined; text: string }> {
  const page = await response.text();
  const reason = /<main data-reason="([a-z_]+)">/.exec(page)?.[1];
  const text = /<h1>Login failed<\/h1><p>([^<]*)<\/p>/.exec(page)?.[1] ?? "";
  // No OAuth error codes, parameters, URLs or stack traces: the audit log has those.
  for (const internal of ["invalid_grant", "access_denied", "state", "nonce", "127.0.0.1", "Error", "RFC"]) {
    expect(page, internal).not.toContain(internal);
  }
  expect(page).toContain('<a href="/auth/login/demo">Try again</a>');
  return { status: response.status, reason, text };
}

function sentence(reason: LoginFailureReason): string {
  return LOGIN_FAILURE_MESSAGES[reason].replaceAll("{provider}", "Demo").replaceAll("'", "&#39;");
}

describe("the login failure page says what the player can do (issue 18)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { OIDC_DEMO_LABEL: "Demo" } });
  });
  afterAll(() => h.close());

  it("expired: a state this browser's login does not know asks to start again", async () => {
    const agent = new Agent();
    await agent.startLogin(h.origin);
    const failure = await failureOf(await agent.fetch(`${h.origin}/auth/callback/demo?state=not-this-one&code=c`));
    expect(failure).toEqual({ status: 400, reason: "expired", text: sentence("expired") });
  });

  it("cookies: a callback without the login cookie asks to allow cookies", async () => {
    const failure = await failureOf(await new Agent().fetch(`${h.origin}/auth/callback/demo?state=s&code=c`));
    expect(failure).toEqual({ status: 400, reason: "cookies", text: sentence("cookies") });
    expect(failure.text).toContain("Allow cookies for this site");
  });

  it("denied: the provider's access_denied says the login was cancelled", async () => {
    const agent = new Agent();
    const authorization = await agent.startLogin(h.origin);
    const state = authorization.searchParams.get("state") ?? "";
    const failure = await failureOf(await agent.fetch(`${h.origin}/auth/callback/demo?state=${state}&error=access_denied`));
    expect(failure).toEqual({ status: 400, reason: "denied", text: sentence("denied") });
  });

  it("provider_refused: a code the provider will not exchange says it could not confirm who you are", async () => {
    const agent = new Agent();
    const callback = await agent.authorize(await agent.startLogin(h.origin), "refused", h.origin);
    callback.searchParams.set("code", "forged-code");
    const failure = await failureOf(await agent.fetch(callback));
    expect(failure).toEqual({ status: 400, reason: "provider_refused", text: sentence("provider_refused") });
    expect(h.audit.named("login.failure").at(-1)).toMatchObject({ reason: "invalid_grant" });
  });

  it("provider_down: a provider unreachable at the callback says to try again in a few minutes", async () => {
    const agent = new Agent();
    const callback = await agent.authorize(await agent.startLogin(h.origin), "down", h.origin);
    h.idp.setUnreachable(true);
    try {
      const failure = await failureOf(await agent.fetch(callback));
      expect(failure).toEqual({ status: 400, reason: "provider_down", text: sentence("provider_down") });
    } finally {
      h.idp.setUnreachable(false);
    }
  });

  it("insecure: over a plain-http public origin (outside production) the lost cookie is explained as https", async () => {
    const insecure = await startHarness({ env: { PUBLIC_ORIGIN: "http://game.example.test", OIDC_DEMO_LABEL: "Demo" } });
    try {
      const response = await fetch(`${insecure.bff.url}/auth/callback/demo?state=s&code=c`, { headers: { host: "game.example.test" } });
      const failure = await failureOf(response);
      expect(failure).toEqual({ status: 400, reason: "insecure", text: sentence("insecure") });
      expect(failure.text).toContain("https://");
    } finally {
      await insecure.close();
    }
  });
});

describe("prompt is sent only when configured (issue 18)", () => {
  it("sends no prompt by default and still gets a refresh token from the demo provider", async () => {
    const h = await startHarness();
    try {
      const authorization = await new Agent().startLogin(h.origin);
      expect(authorization.searchParams.has("prompt")).toBe(false);
      const before = h.idp.issued.refreshTokens.length;
      await h.login("no-consent-screen");
      expect(h.idp.issued.refreshTokens.length).toBe(before + 1);
    } finally {
      await h.close();
    }
  });

  it("sends OIDC_<NAME>_PROMPT as configured", async () => {
    const h = await startHarness({ env: { OIDC_DEMO_PROMPT: "consent" } });
    try {
      const authorization = await new Agent().startLogin(h.origin);
      expect(authorization.searchParams.get("prompt")).toBe("consent");
      await h.login("with-consent");
    } finally {
      await h.close();
    }
  });
});

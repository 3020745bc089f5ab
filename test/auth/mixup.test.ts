import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";
import { rewritingDiscovery } from "../fixtures/discovery";

/**
 * SECURITY.md C13 / RFC 9700 4.4: the login attempt records the provider it started with,
 * and a callback arriving at another provider's endpoint is refused before any code is
 * redeemed. Discord, GitHub and Twitch send no `iss` (RFC 9207), so for them this record is
 * the only mix-up defence: here both real providers are made to look like them, their
 * discovery documents without `authorization_response_iss_parameter_supported`, and `iss`
 * is stripped from their callbacks.
 */
describe("mix-up defence without iss (SECURITY.md C13, RFC 9700 4.4)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      secondProvider: true,
      portcullis: {
        fetch: rewritingDiscovery((_issuer, document) => {
          delete document.authorization_response_iss_parameter_supported;
          return document;
        }),
      },
    });
  });
  afterAll(async () => {
    await h.close();
  });

  const tokenRequests = (): [number, number] => [h.idp.tokenRequests.authorization_code, h.other?.tokenRequests.authorization_code ?? -1];

  it("takes a callback without iss from a provider that does not promise it (the premise of the tests below)", async () => {
    for (const provider of ["demo", "other"]) {
      const agent = h.agent();
      const callback = await agent.authorize(await agent.startLogin(h.origin, provider), `plain-${provider}`, h.origin);
      callback.searchParams.delete("iss");
      expect((await agent.fetch(callback)).status).toBe(200);
    }
  });

  it.each([
    ["other", "demo"],
    ["demo", "other"],
  ])("refuses a login started at %s whose callback, iss stripped, arrives at %s's endpoint, and redeems the code nowhere", async (startedAt, arrivesAt) => {
    const agent = h.agent();
    const callback = await agent.authorize(await agent.startLogin(h.origin, startedAt), "mixed-up", h.origin);
    expect(callback.pathname).toBe(`/auth/callback/${startedAt}`);
    callback.searchParams.delete("iss");
    const loginCookie = agent.cookie(h.origin, "__Host-Http-login");
    const elsewhere = new URL(`/auth/callback/${arrivesAt}${callback.search}`, h.origin);
    const before = tokenRequests();
    const sessionsBefore = h.bff.db.sqlite.prepare("SELECT count(*) AS n FROM sessions").get();

    const response = await agent.fetch(elsewhere);

    expect(response.status).toBe(400);
    // Zero token requests at either real provider: the code went to nobody.
    expect(tokenRequests()).toEqual(before);
    expect(h.bff.db.sqlite.prepare("SELECT count(*) AS n FROM sessions").get()).toEqual(sessionsBefore);
    expect(agent.cookie(h.origin, "__Host-Http-session")).toBeNull();
    expect(h.audit.named("login.failure").at(-1)).toMatchObject({ provider: arrivesAt, reason: "callback of another provider", detail: `started with ${startedAt}` });

    // The refused callback spent the attempt: the genuine one, cookie and all, no longer works.
    expect((await agent.fetch(callback, { headers: { cookie: `__Host-Http-login=${loginCookie}` } })).status).toBe(400);
    expect(tokenRequests()).toEqual(before);
  });
});

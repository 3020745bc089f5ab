import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";

interface Me {
  user: { id: string; displayName: string; provider: string };
}

/**
 * SECURITY.md C14 / OIDC Core 5.7: an account is found by (issuer, subject), never by the
 * subject alone. Two real oidc-provider issuers both let anyone pick the name "sam", so
 * the same subject arrives from both: they must stay two people.
 */
describe("accounts keyed by (issuer, subject) (SECURITY.md C14)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ secondProvider: true });
  });
  afterAll(async () => {
    await h.close();
  });

  async function meAt(provider: string, login: string): Promise<Me> {
    const agent = h.agent();
    const response = await agent.login(h.origin, login, { provider });
    expect(response.status).toBe(200);
    const me = await agent.fetch(`${h.origin}/auth/me`);
    expect(me.status).toBe(200);
    return (await me.json()) as Me;
  }

  it("gives the same subject at two issuers two accounts, and finds each again at its own issuer", async () => {
    const atA = await meAt("demo", "sam");
    const atB = await meAt("other", "sam");
    expect(atA.user.provider).toBe("demo");
    expect(atB.user.provider).toBe("other");
    // Provider B's "sam" must not be handed provider A's account.
    expect(atB.user.id).not.toBe(atA.user.id);

    const identities = h.bff.db.sqlite
      .prepare("SELECT issuer, account_id AS accountId FROM identities WHERE subject = 'sam'")
      .all() as { issuer: string; accountId: string }[];
    expect(new Map(identities.map((i) => [i.issuer, i.accountId]))).toEqual(
      new Map([
        [h.idp.issuer, atA.user.id],
        [h.other?.issuer, atB.user.id],
      ]),
    );

    // Logging in again at each issuer lands in that issuer's account, in either order.
    expect((await meAt("other", "sam")).user.id).toBe(atB.user.id);
    expect((await meAt("demo", "sam")).user.id).toBe(atA.user.id);
  });

  it("does not let a second issuer's first login of a known subject reach the existing account's sessions", async () => {
    const first = await h.login("tess");
    const agentB = h.agent();
    expect((await agentB.login(h.origin, "tess", { provider: "other" })).status).toBe(200);
    // The account made at A sees only its own session: B's login did not join it.
    const sessions = (await (await first.agent.fetch(`${h.origin}/auth/sessions`)).json()) as { sessions: unknown[] };
    expect(sessions.sessions).toHaveLength(1);
  });
});

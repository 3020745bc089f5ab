import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { OAuth2Client, OAuth2RequestError } from "arctic";
import { CLIENT_ID, startHarness, type Harness } from "../fixtures/harness";

interface Me {
  session: { idleExpiresAt: string };
}

async function me(h: Harness, token: string, query = ""): Promise<Response> {
  return fetch(`${h.origin}/auth/me${query}`, { headers: { cookie: `__Host-Http-session=${token}` } });
}

/** The provider's answer to a refresh grant with this token, once the BFF's revocations are done. */
async function refreshAtProvider(h: Harness, refreshToken: string): Promise<string> {
  await h.bff.sessions.revocationsSettled();
  const client = new OAuth2Client(CLIENT_ID, h.clientSecret, null);
  const outcome = await client.refreshAccessToken(`${h.idp.issuer}/token`, refreshToken, []).catch((e: unknown) => e);
  return outcome instanceof OAuth2RequestError ? outcome.code : "ok";
}

// Each test moves the BFF's clock hours ahead, so each gets its own BFF and provider.
describe("session timeouts", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    await h.close();
  });

    it("ends a session idle for longer than the idle timeout", async () => {
      const { token } = await h.login("idler");
      h.clock.advance(1800 * 1000 - 1);
      expect((await me(h, token, "?slide=false")).status).toBe(200);
      h.clock.advance(1);
      expect((await me(h, token)).status).toBe(401);
      expect(h.audit.named("session.expired").length).toBeGreaterThan(0);
    });

    it("revokes the refresh token of a session found expired on use (SECURITY.md I43)", async () => {
      const { token } = await h.login("lazy-expiry");
      const refreshToken = h.idp.issued.refreshTokens.at(-1) ?? "";
      h.clock.advance(1800 * 1000);
      expect((await me(h, token)).status).toBe(401);
      expect(await refreshAtProvider(h, refreshToken)).toBe("invalid_grant");
    });

    it("revokes the refresh tokens of the sessions the sweeper deletes, idle or past their absolute timeout", async () => {
      const idle = await h.login("swept-idle");
      const idleRefresh = h.idp.issued.refreshTokens.at(-1) ?? "";
      const busy = await h.login("swept-busy");
      const busyRefresh = h.idp.issued.refreshTokens.at(-1) ?? "";
      for (let elapsed = 0; elapsed < 43200; elapsed += 1200) {
        h.clock.advance(1200 * 1000);
        if (elapsed + 1200 < 43200) expect((await me(h, busy.token)).status).toBe(200);
      }
      // What the sweeper runs every minute.
      expect(h.bff.sessions.sweepExpired()).toBe(2);
      expect(await refreshAtProvider(h, idleRefresh)).toBe("invalid_grant");
      expect(await refreshAtProvider(h, busyRefresh)).toBe("invalid_grant");
      expect(h.audit.named("session.expired").length).toBe(2);
      expect((await me(h, idle.token)).status).toBe(401);
    });

    it("ends an active session at the absolute timeout", async () => {
      const { token } = await h.login("busy");
      for (let elapsed = 0; elapsed < 43200 - 1200; elapsed += 1200) {
        h.clock.advance(1200 * 1000);
        expect((await me(h, token)).status).toBe(200);
      }
      h.clock.advance(1200 * 1000);
      expect((await me(h, token)).status).toBe(401);
    });

    it("leaves a session past its absolute timeout out of the player's list from that very moment, before the sweeper deletes it", async () => {
      const old = await h.login("lister");
      const [oldId] = old.token.split(".");
      h.clock.advance(1200 * 1000);
      const current = await h.login("lister");
      const [currentId] = current.token.split(".");
      const listed = async (): Promise<string[]> => {
        const response = await fetch(`${h.origin}/auth/sessions`, { headers: { cookie: `__Host-Http-session=${current.token}` } });
        return ((await response.json()) as { sessions: { id: string }[] }).sessions.map((s) => s.id);
      };
      // Both stay active (never idle); the old one reaches its 12 h exactly.
      for (let elapsed = 1200; elapsed < 43200; elapsed += 1200) {
        expect((await me(h, old.token)).status).toBe(200);
        expect(await listed()).toEqual([oldId, currentId]);
        h.clock.advance(1200 * 1000);
      }
      expect(await listed()).toEqual([currentId]);
      const row = h.bff.db.sqlite.prepare("SELECT count(*) AS n FROM sessions WHERE id = ?").get(oldId) as { n: number };
      expect(row.n).toBe(1);
    });

    it("slides the idle window at most once a minute, and not at all with ?slide=false", async () => {
      const { token } = await h.login("slider");
      const [id] = token.split(".");
      const lastSeen = (): number =>
        (h.bff.db.sqlite.prepare("SELECT last_seen_at AS t FROM sessions WHERE id = ?").get(id) as { t: number }).t;
      const start = lastSeen();
      h.clock.advance(30_000);
      await me(h, token);
      expect(lastSeen()).toBe(start);
      h.clock.advance(31_000);
      await me(h, token, "?slide=false");
      expect(lastSeen()).toBe(start);
      const body = (await (await me(h, token)).json()) as Me;
      expect(lastSeen()).toBe(start + 61_000);
      expect(Date.parse(body.session.idleExpiresAt)).toBe(start + 61_000 + 1800 * 1000);
    });
  
  it("caps the session at the provider refresh token's lifetime when it is known (SECURITY.md A5)", async () => {
    const { token } = await h.login("capped");
    const [id] = token.split(".");
    const created = h.bff.sessions.create({
      accountId: (h.bff.db.sqlite.prepare("SELECT account_id AS a FROM sessions WHERE id = ?").get(id) as { a: string }).a,
      provider: "demo",
      userAgent: "cap test",
      tokens: { accessToken: "a", accessTokenExpiresAt: null, refreshToken: "r", refreshTokenExpiresAt: h.clock.now() + 3600_000, idToken: null },
    });
    expect(created.session.expiresAt).toBe(h.clock.now() + 3600_000);
    h.clock.advance(3600_000);
    expect((await me(h, created.token, "?slide=false")).status).toBe(401);
  });
});

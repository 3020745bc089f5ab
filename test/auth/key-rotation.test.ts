import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, testKey, type Harness } from "../fixtures/harness";

describe("TOKEN_ENCRYPTION_KEYS rotation (SECURITY.md D18)", () => {
  let first: Harness;
  beforeAll(async () => {
    first = await startHarness({ env: { TOKEN_ENCRYPTION_KEYS: `old:${testKey()}` } });
  });
  afterAll(async () => {
    await first.close();
  });

  it("keeps sessions made under the old key working after a restart with a new key first", async () => {
    const { token } = await first.login("rotator");
    const [id] = token.split(".");
    const accessToken = first.bff.sessions.readTokens(id ?? "")?.accessToken;
    await first.stop();

    const oldKeys = first.env.TOKEN_ENCRYPTION_KEYS ?? "";
    const rotated = await startHarness({
      databasePath: join(first.dir, "portcullis.sqlite"),
      port: Number(new URL(first.origin).port),
      reuseIdP: { idp: first.idp, other: null, clientSecret: first.clientSecret },
      env: { TOKEN_ENCRYPTION_KEYS: `new:${testKey()},${oldKeys}`, ASSERTION_SIGNING_KEYS: first.env.ASSERTION_SIGNING_KEYS ?? "" },
    });
    try {
      const me = await fetch(`${rotated.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${token}` } });
      expect(me.status).toBe(200);
      expect(rotated.bff.sessions.readTokens(id ?? "")?.accessToken).toBe(accessToken);
      // New sessions are sealed with the new key.
      const fresh = await rotated.login("rotator-2");
      const [freshId] = fresh.token.split(".");
      const row = rotated.bff.db.sqlite.prepare("SELECT access_token FROM sessions WHERE id = ?").get(freshId) as { access_token: string };
      expect(row.access_token.split(".")[1]).toBe("new");
    } finally {
      await rotated.stop();
    }
  });
});

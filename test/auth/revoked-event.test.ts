import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLIENT_ID, startHarness, type Harness } from "../fixtures/harness";
import { startRecordingUpstream, type RecordingUpstream } from "../fixtures/http-upstream";

/**
 * SECURITY.md G32: a revoked session is audited as `session.revoked`, whichever way it was
 * revoked (issue 17: not writing the event passed every other test). Each case looks for
 * the event naming exactly the revoked session.
 */
describe("the session.revoked audit event (SECURITY.md G32)", () => {
  let echo: RecordingUpstream;
  let h: Harness;
  beforeAll(async () => {
    echo = await startRecordingUpstream();
    h = await startHarness({
      upstreams: () => ({ routes: [{ prefix: "/api/echo/", target: `${echo.url}/echo/`, credential: "provider-token", provider: "demo" }] }),
    });
  });
  afterAll(async () => {
    await h.close();
    await echo.close();
  });

  const idOf = (token: string): string => token.split(".")[0] ?? "";
  const revokedRefs = (): unknown[] => h.audit.named("session.revoked").map((e) => e.session);

  it("is written for DELETE /auth/sessions/:id", async () => {
    const laptop = await h.login("revoke-one");
    const phone = await h.login("revoke-one");
    const response = await laptop.agent.fetch(`${h.origin}/auth/sessions/${idOf(phone.token)}`, { method: "DELETE", headers: h.csrf() });
    expect(response.status).toBeLessThan(300);
    expect(revokedRefs()).toContain(h.bff.audit.sessionRef(idOf(phone.token)));
    expect(revokedRefs()).not.toContain(h.bff.audit.sessionRef(idOf(laptop.token)));
  });

  it("is written for every session DELETE /auth/sessions revokes, and not for the current one", async () => {
    const keep = await h.login("revoke-others");
    const others = [await h.login("revoke-others"), await h.login("revoke-others")];
    const response = await keep.agent.fetch(`${h.origin}/auth/sessions`, { method: "DELETE", headers: h.csrf() });
    expect(response.status).toBeLessThan(300);
    for (const other of others) expect(revokedRefs()).toContain(h.bff.audit.sessionRef(idOf(other.token)));
    expect(revokedRefs()).not.toContain(h.bff.audit.sessionRef(idOf(keep.token)));
  });

  it("is written when the provider refuses a refresh (invalid_grant)", async () => {
    const { token } = await h.login("refresh-refused");
    const sessionId = idOf(token);
    const refreshToken = h.idp.issued.refreshTokens.at(-1) ?? "";
    const revoked = await fetch(`${h.idp.issuer}/token/revocation`, {
      method: "POST",
      headers: {
        authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${h.clientSecret}`).toString("base64")}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ token: refreshToken, token_type_hint: "refresh_token" }),
    });
    expect(revoked.status).toBe(200);
    const expiresAt = (h.bff.db.sqlite.prepare("SELECT access_token_expires_at AS t FROM sessions WHERE id = ?").get(sessionId) as { t: number }).t;
    h.clock.advance(expiresAt - h.clock.now());
    const response = await fetch(`${h.origin}/api/echo/x`, { headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } });
    expect(response.status).toBe(401);
    expect(h.audit.named("token.refresh.failed").some((e) => e.reason === "invalid_grant")).toBe(true);
    expect(revokedRefs()).toContain(h.bff.audit.sessionRef(sessionId));
  });
});

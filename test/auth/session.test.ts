import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OAuth2Client, OAuth2RequestError } from "arctic";
import { Agent } from "../fixtures/agent";
import { CLIENT_ID, startHarness, type Harness } from "../fixtures/harness";

const SESSION_COOKIE_PATTERN = /^__Host-Http-session=[a-z2-7]{26}\.[a-z2-7]{40}; HttpOnly; Secure; SameSite=Strict; Path=\/; Max-Age=(\d+)$/;

interface Me {
  user: { id: string; displayName: string; provider: string };
  session: { id: string; expiresAt: string; idleExpiresAt: string };
}

async function me(h: Harness, token: string, query = ""): Promise<Response> {
  return fetch(`${h.origin}/auth/me${query}`, { headers: { cookie: `__Host-Http-session=${token}` } });
}

/**
 * What the provider answers a refresh grant with this refresh token, once every revocation
 * the BFF started has been answered: "ok", or the OAuth error code.
 */
async function refreshAtProvider(h: Harness, refreshToken: string): Promise<string> {
  await h.bff.sessions.revocationsSettled();
  const client = new OAuth2Client(CLIENT_ID, h.clientSecret, null);
  const outcome = await client.refreshAccessToken(`${h.idp.issuer}/token`, refreshToken, []).catch((e: unknown) => e);
  return outcome instanceof OAuth2RequestError ? outcome.code : "ok";
}

/** Logs in and returns the session with the refresh token the provider issued for it. */
async function loginWithGrant(h: Harness, name: string): Promise<{ agent: Agent; token: string; refreshToken: string }> {
  const session = await h.login(name);
  const refreshToken = h.idp.issued.refreshTokens.at(-1) ?? "";
  expect(h.bff.sessions.readTokens(session.token.split(".")[0] ?? "")?.refreshToken).toBe(refreshToken);
  return { ...session, refreshToken };
}

describe("sessions", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  describe("the session cookie (SECURITY.md A1)", () => {
    it("is __Host-Http-session, HttpOnly, Secure, SameSite=Strict, Path=/, no Domain, Max-Age within the absolute timeout", async () => {
      const { agent } = await h.login("cookie-snapshot");
      const set = agent.setCookies.filter((c) => c.startsWith("__Host-Http-session="));
      expect(set).toHaveLength(1);
      const match = SESSION_COOKIE_PATTERN.exec(set[0] ?? "");
      expect(match).not.toBeNull();
      expect(Number(match?.[1])).toBeLessThanOrEqual(43200);
      expect(Number(match?.[1])).toBeGreaterThan(43000);
      expect(set[0]).not.toMatch(/domain/i);
    });
  });

  describe("#validate (SECURITY.md A2, A3)", () => {
    it("refuses a cookie built from a database row's values", async () => {
      const { token } = await h.login("row-forger");
      const [id] = token.split(".");
      const row = h.bff.db.sqlite.prepare("SELECT id, secret_hash FROM sessions WHERE id = ?").get(id) as { id: string; secret_hash: Buffer };
      for (const forged of [
        `${row.id}.${row.secret_hash.toString("hex")}`,
        `${row.id}.${row.secret_hash.toString("base64url")}`,
        `${row.id}.${Buffer.from(row.secret_hash).toString("hex").slice(0, 40)}`,
        row.id,
      ]) {
        expect((await me(h, forged)).status).toBe(401);
      }
      expect((await me(h, token)).status).toBe(200);
    });

    it("stores only the SHA-256 of the secret", async () => {
      const { token } = await h.login("hash-only");
      const [id, secret] = token.split(".");
      const row = h.bff.db.sqlite.prepare("SELECT * FROM sessions WHERE id = ?").get(id) as Record<string, unknown>;
      expect(JSON.stringify(row)).not.toContain(secret);
      expect(Buffer.from(row.secret_hash as Buffer)).toHaveLength(32);
    });

    it("makes a new session at login and ends a cookie planted before it", async () => {
      const { token: planted } = await h.login("attacker");
      const victim = new Agent();
      victim.setCookie(h.origin, "__Host-Http-session", planted);
      const response = await victim.login(h.origin, "victim");
      expect(response.status).toBe(200);
      const fresh = victim.cookie(h.origin, "__Host-Http-session");
      expect(fresh).not.toBeNull();
      expect(fresh).not.toBe(planted);
      const body = (await (await me(h, fresh ?? "")).json()) as Me;
      expect(body.user.displayName).toBe("victim");
      expect((await me(h, planted)).status).toBe(401);
    });

    it("ends a session cookie that arrives only with the callback (a same-site provider, a client that is not a browser)", async () => {
      const { token: earlier } = await h.login("callback-cookie");
      const client = new Agent();
      const callback = await client.authorize(await client.startLogin(h.origin), "callback-cookie", h.origin);
      // Not sent when the login started; set just before the provider sends the client back.
      client.setCookie(h.origin, "__Host-Http-session", earlier);
      expect((await client.fetch(callback)).status).toBe(200);
      expect(client.cookie(h.origin, "__Host-Http-session")).not.toBe(earlier);
      expect((await me(h, earlier)).status).toBe(401);
      expect(h.audit.named("session.revoked").at(-1)).toMatchObject({ reason: "replaced" });
    });

    it("ends the session a browser had when it logs in again, though the cross-site callback carries no session cookie (issue 11 item 4)", async () => {
      const first = await loginWithGrant(h, "relogger");
      const [firstId] = first.token.split(".");
      // GET /auth/login is same-site: the Strict cookie goes along. The callback comes from
      // the provider's site, and a browser withholds it there; so does this agent.
      const authorization = await first.agent.startLogin(h.origin);
      const callback = await first.agent.authorize(authorization, "relogger", h.origin);
      first.agent.clearCookie(h.origin, "__Host-Http-session");
      const ended: string[] = [];
      const stop = h.bff.events.onEnded((event) => ended.push(`${event.reason}:${event.sessionId}`));
      expect((await first.agent.fetch(callback)).status).toBe(200);
      stop();
      const second = first.agent.cookie(h.origin, "__Host-Http-session") ?? "";
      expect(second.split(".")[0]).not.toBe(firstId);
      expect(ended).toEqual([`replaced:${firstId}`]);
      expect((await me(h, first.token)).status).toBe(401);
      const listed = (await (await first.agent.fetch(`${h.origin}/auth/sessions`)).json()) as { sessions: { id: string }[] };
      expect(listed.sessions.map((s) => s.id)).toEqual([second.split(".")[0]]);
      expect(h.audit.named("session.revoked").some((e) => e.reason === "replaced")).toBe(true);
      // The ended session's grant goes with it; the new session's is untouched.
      expect(await refreshAtProvider(h, first.refreshToken)).toBe("invalid_grant");
      expect((await me(h, second)).status).toBe(200);
    });

    it("reads the token from the cookie only: ?session= and Authorization are ignored", async () => {
      const { token } = await h.login("query-user");
      expect((await fetch(`${h.origin}/auth/me?session=${token}`)).status).toBe(401);
      expect((await fetch(`${h.origin}/auth/me`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(401);
    });

    it("ignores a cookie header that names the session cookie twice", async () => {
      const { token } = await h.login("twice");
      const response = await fetch(`${h.origin}/auth/me`, {
        headers: { cookie: `__Host-Http-session=${token}; __Host-Http-session=${token}` },
      });
      expect(response.status).toBe(401);
    });
  });

  describe("/auth/me", () => {
    it("answers the contract's shape, with no-store and no token anywhere", async () => {
      const { token } = await h.login("shape");
      const response = await me(h, token);
      expect(response.headers.get("cache-control")).toBe("no-store");
      const text = await response.text();
      const body = JSON.parse(text) as Me;
      expect(Object.keys(body).sort()).toEqual(["session", "user"]);
      expect(Object.keys(body.user).sort()).toEqual(["displayName", "id", "provider"]);
      expect(Object.keys(body.session).sort()).toEqual(["expiresAt", "id", "idleExpiresAt"]);
      for (const issued of [...h.idp.issued.accessTokens, ...h.idp.issued.refreshTokens, ...h.idp.issued.idTokens]) {
        expect(text).not.toContain(issued);
      }
      expect(text).not.toContain(token.split(".")[1]);
    });

    it("answers 401 JSON without a session", async () => {
      const response = await fetch(`${h.origin}/auth/me`);
      expect(response.status).toBe(401);
      expect(await response.json()).toEqual({ error: "no_session", message: "You are not logged in, or your session has ended." });
    });

    it("keeps the first 256 characters of a long User-Agent for the session list", async () => {
      const { agent } = await h.login("long-agent", { userAgent: `Mozilla/5.0 ${"x".repeat(400)}` });
      const listed = (await (await agent.fetch(`${h.origin}/auth/sessions`)).json()) as { sessions: { userAgent: string; current: boolean }[] };
      expect(listed.sessions.find((s) => s.current)?.userAgent).toBe(`Mozilla/5.0 ${"x".repeat(400)}`.slice(0, 256));
    });

    it("lists the providers to log in with, by name and label (GET /auth/providers, no session needed)", async () => {
      const response = await fetch(`${h.origin}/auth/providers`);
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ providers: [{ name: "demo", label: expect.any(String) }] });
    });
  });

  describe("POST /auth/logout (SECURITY.md A6)", () => {
    it("deletes the row, revokes the refresh token at the provider, expires the cookie, clears site data", async () => {
      const { agent, token } = await h.login("leaver");
      const refreshToken = h.idp.issued.refreshTokens.at(-1) ?? "";
      const response = await agent.fetch(`${h.origin}/auth/logout`, { method: "POST", headers: h.csrf() });
      expect(response.status).toBe(204);
      expect(response.headers.get("clear-site-data")).toBe('"cookies"');
      expect(response.headers.get("cache-control")).toBe("no-store");
      expect(response.headers.getSetCookie()).toEqual(["__Host-Http-session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"]);
      expect((await me(h, token)).status).toBe(401);
      const [id] = token.split(".");
      expect(h.bff.db.sqlite.prepare("SELECT 1 FROM sessions WHERE id = ?").get(id)).toBeUndefined();
      // The provider no longer honours the refresh token.
      expect(await refreshAtProvider(h, refreshToken)).toBe("invalid_grant");
      expect(h.audit.named("session.logged_out").length).toBeGreaterThan(0);
    });

    it("is not a GET: GET /auth/logout answers 405 and the session lives on", async () => {
      const { token } = await h.login("getter");
      const response = await fetch(`${h.origin}/auth/logout`, { headers: { cookie: `__Host-Http-session=${token}` } });
      expect(response.status).toBe(405);
      expect((await me(h, token)).status).toBe(200);
    });

    it("answers 401 without a session", async () => {
      expect((await fetch(`${h.origin}/auth/logout`, { method: "POST", headers: h.csrf() })).status).toBe(401);
    });
  });

  describe("/auth/sessions", () => {
    it("lists the user's live sessions with the current one marked, and nobody else's", async () => {
      const first = await h.login("lister", { userAgent: "Laptop" });
      await h.login("lister", { userAgent: "Phone" });
      await h.login("someone-else");
      const response = await first.agent.fetch(`${h.origin}/auth/sessions`);
      expect(response.headers.get("cache-control")).toBe("no-store");
      const body = (await response.json()) as { sessions: { id: string; userAgent: string; current: boolean; createdAt: string; lastSeenAt: string }[] };
      expect(body.sessions.map((s) => [s.userAgent, s.current])).toEqual([
        ["Laptop", true],
        ["Phone", false],
      ]);
      expect(Object.keys(body.sessions[0] ?? {}).sort()).toEqual(["createdAt", "current", "id", "lastSeenAt", "userAgent"]);
    });

    it("revokes one of the user's own sessions, and answers 404 for another user's", async () => {
      const laptop = await h.login("revoker");
      const phone = await h.login("revoker");
      const stranger = await h.login("stranger");
      const phoneId = phone.token.split(".")[0];
      const strangerId = stranger.token.split(".")[0];
      const refused = await laptop.agent.fetch(`${h.origin}/auth/sessions/${strangerId}`, { method: "DELETE", headers: h.csrf() });
      expect(refused.status).toBe(404);
      expect(await refused.json()).toEqual({ error: "not_found", message: "No such session." });
      // Revoking another of one's own sessions leaves one's own cookie alone.
      expect(refused.headers.getSetCookie()).toEqual([]);
      expect((await me(h, stranger.token)).status).toBe(200);
      const revoked = await laptop.agent.fetch(`${h.origin}/auth/sessions/${phoneId}`, { method: "DELETE", headers: h.csrf() });
      expect(revoked.status).toBe(204);
      expect(revoked.headers.getSetCookie()).toEqual([]);
      expect((await me(h, phone.token)).status).toBe(401);
      expect((await me(h, laptop.token)).status).toBe(200);
    });

    it("revokes the refresh token of a session revoked from the list (SECURITY.md I43)", async () => {
      const laptop = await loginWithGrant(h, "grant-revoker");
      const phone = await loginWithGrant(h, "grant-revoker");
      const phoneId = phone.token.split(".")[0];
      expect((await laptop.agent.fetch(`${h.origin}/auth/sessions/${phoneId}`, { method: "DELETE", headers: h.csrf() })).status).toBe(204);
      expect(await refreshAtProvider(h, phone.refreshToken)).toBe("invalid_grant");
    });

    it("revokes the refresh tokens of all other sessions, and none of the current one's", async () => {
      const a = await loginWithGrant(h, "grant-purger");
      const b = await loginWithGrant(h, "grant-purger");
      const c = await loginWithGrant(h, "grant-purger");
      expect((await a.agent.fetch(`${h.origin}/auth/sessions`, { method: "DELETE", headers: h.csrf() })).status).toBe(204);
      expect(await refreshAtProvider(h, b.refreshToken)).toBe("invalid_grant");
      expect(await refreshAtProvider(h, c.refreshToken)).toBe("invalid_grant");
      expect(h.audit.named("token.revoke.failed")).toEqual([]);
      // Last: a successful refresh rotates a's refresh token behind the BFF's back.
      expect(await refreshAtProvider(h, a.refreshToken)).toBe("ok");
    });

    it("ends the session at once when the provider is down, and audits the failed revocation", async () => {
      const laptop = await loginWithGrant(h, "down-revoker");
      const phone = await loginWithGrant(h, "down-revoker");
      h.idp.setUnreachable(true);
      try {
        const revoked = await laptop.agent.fetch(`${h.origin}/auth/sessions/${phone.token.split(".")[0]}`, { method: "DELETE", headers: h.csrf() });
        expect(revoked.status).toBe(204);
        expect((await me(h, phone.token)).status).toBe(401);
        await h.bff.sessions.revocationsSettled();
      } finally {
        h.idp.setUnreachable(false);
      }
      const failed = h.audit.named("token.revoke.failed");
      expect(failed.length).toBe(1);
      expect(failed[0]).toMatchObject({ provider: "demo" });
      expect(h.audit.text()).not.toContain(phone.refreshToken);
    });

    it("revokes all other sessions and keeps the current one", async () => {
      const a = await h.login("purger");
      const b = await h.login("purger");
      const c = await h.login("purger");
      const response = await a.agent.fetch(`${h.origin}/auth/sessions`, { method: "DELETE", headers: h.csrf() });
      expect(response.status).toBe(204);
      expect((await me(h, a.token)).status).toBe(200);
      expect((await me(h, b.token)).status).toBe(401);
      expect((await me(h, c.token)).status).toBe(401);
    });
  });

  describe("provider tokens at rest (SECURITY.md D17, D19)", () => {
    it("leaves no token bytes in the database file or its WAL", async () => {
      await h.login("at-rest");
      h.bff.db.sqlite.pragma("wal_checkpoint(PASSIVE)");
      const files = [h.bff.db.path, `${h.bff.db.path}-wal`].map((path) => readFileSync(path));
      const tokens = [...h.idp.issued.accessTokens, ...h.idp.issued.refreshTokens, ...h.idp.issued.idTokens];
      expect(tokens.length).toBeGreaterThan(3);
      for (const file of files) {
        for (const token of tokens) {
          expect(file.includes(Buffer.from(token))).toBe(false);
          // The ID token's signature part alone must not be there either.
          expect(file.includes(Buffer.from(token.split(".").at(-1) ?? token))).toBe(false);
        }
      }
    });

    it("refuses to open a token whose ciphertext was flipped or moved to another session", async () => {
      const a = await h.login("flipper");
      const b = await h.login("flipper2");
      const [idA] = a.token.split(".");
      const [idB] = b.token.split(".");
      expect(h.bff.sessions.readTokens(idA ?? "")?.accessToken).toBe(h.idp.issued.accessTokens.at(-2));
      const { access_token: sealed } = h.bff.db.sqlite.prepare("SELECT access_token FROM sessions WHERE id = ?").get(idA) as { access_token: string };
      const flipped = sealed.slice(0, -2) + (sealed.at(-2) === "A" ? "B" : "A") + sealed.at(-1);
      h.bff.db.sqlite.prepare("UPDATE sessions SET access_token = ? WHERE id = ?").run(flipped, idA);
      expect(() => h.bff.sessions.readTokens(idA ?? "")).toThrow(/authentication/);
      h.bff.db.sqlite.prepare("UPDATE sessions SET access_token = ? WHERE id = ?").run(sealed, idB);
      expect(() => h.bff.sessions.readTokens(idB ?? "")).toThrow(/authentication/);
    });

    it("creates the database, WAL and SHM files mode 0600 with secure_delete on", async () => {
      const { statSync } = await import("node:fs");
      for (const path of [h.bff.db.path, `${h.bff.db.path}-wal`, `${h.bff.db.path}-shm`]) {
        expect(statSync(path).mode & 0o777).toBe(0o600);
      }
      expect(h.bff.db.sqlite.pragma("secure_delete", { simple: true })).toBe(1);
      expect(h.bff.db.sqlite.pragma("foreign_keys", { simple: true })).toBe(1);
      expect(h.bff.db.sqlite.pragma("journal_mode", { simple: true })).toBe("wal");
    });
  });

  it("never writes a token, cookie secret, code or state into the audit log (SECURITY.md G33)", async () => {
    const agent = new Agent();
    const url = await agent.startLogin(h.origin);
    const callback = await agent.authorize(url, "canary", h.origin);
    await agent.fetch(callback);
    const token = agent.cookie(h.origin, "__Host-Http-session") ?? "";
    const log = h.audit.text();
    const canaries = [
      token,
      token.split(".")[0] ?? "",
      token.split(".")[1] ?? "",
      url.searchParams.get("state") ?? "",
      url.searchParams.get("nonce") ?? "",
      callback.searchParams.get("code") ?? "",
      ...h.idp.issued.accessTokens,
      ...h.idp.issued.refreshTokens,
    ];
    for (const canary of canaries) {
      expect(canary.length).toBeGreaterThan(10);
      expect(log).not.toContain(canary);
    }
  });
});

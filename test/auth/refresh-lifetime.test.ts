import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";
import { rewritingDiscovery } from "../fixtures/discovery";

/**
 * A loopback proxy in front of the real provider's token endpoint that adds
 * `refresh_token_expires_in` (or Keycloak's `refresh_expires_in`) to each answer carrying a
 * refresh token, as GitHub's token endpoint does and oidc-provider does not. Everything else passes unchanged.
 */
interface LifetimeProxy {
  url: string;
  /** Seconds to announce, or null to pass answers through untouched. */
  lifetime: number | null;
  /** The field's name: the common one, or Keycloak's `refresh_expires_in`. */
  field: string;
  /** The real token endpoint, learnt from discovery. */
  target: string | null;
  /** Any other change to every successful answer (a field dropped or set), or null. */
  rewrite: ((answer: Record<string, unknown>) => Record<string, unknown>) | null;
  close(): Promise<void>;
}

async function startLifetimeProxy(): Promise<LifetimeProxy> {
  const proxy: LifetimeProxy = { url: "", lifetime: null, field: "refresh_token_expires_in", target: null, rewrite: null, close: async () => {} };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      void (async () => {
        const headers: Record<string, string> = {};
        for (const name of ["authorization", "content-type", "accept"]) {
          const value = req.headers[name];
          if (typeof value === "string") headers[name] = value;
        }
        const upstream = await fetch(proxy.target ?? "http://127.0.0.1:9/", { method: "POST", headers, body: Buffer.concat(chunks) });
        let body = await upstream.text();
        const parsed: unknown = upstream.ok ? JSON.parse(body) : null;
        if (proxy.lifetime !== null && typeof parsed === "object" && parsed !== null && "refresh_token" in parsed) {
          body = JSON.stringify({ ...parsed, [proxy.field]: proxy.lifetime });
        }
        if (proxy.rewrite !== null && upstream.ok) {
          body = JSON.stringify(proxy.rewrite(JSON.parse(body) as Record<string, unknown>));
        }
        res.writeHead(upstream.status, { "content-type": upstream.headers.get("content-type") ?? "application/json", "cache-control": "no-store" });
        res.end(body);
      })().catch(() => {
        res.writeHead(502);
        res.end();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
  proxy.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return proxy;
}

interface Me {
  session: { expiresAt: string };
}

/**
 * SECURITY.md A5 / BBA: when the provider says how
 * long its refresh token lives, the session ends no later than that, at login and again at
 * each refresh. The identity provider is the real oidc-provider; only its token answers
 * gain the lifetime field.
 */
describe("the session never outlives the provider's refresh token (SECURITY.md A5)", () => {
  let proxy: LifetimeProxy;
  let h: Harness;
  let token: string;
  const get = (path: string): Promise<Response> =>
    fetch(`${h.origin}${path}`, { headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } });
  const expiresAt = async (): Promise<number> => {
    const response = await get("/auth/me");
    expect(response.status).toBe(200);
    return Date.parse(((await response.json()) as Me).session.expiresAt);
  };
  /** Keeps the session active (idle timeout 30 min) up to `until`; returns the status there. */
  const activeUntil = async (until: number): Promise<number> => {
    while (until - h.clock.now() > 1_200_000) {
      h.clock.advance(1_200_000);
      expect((await get("/auth/me")).status).toBe(200);
    }
    h.clock.advance(until - h.clock.now());
    return (await get("/auth/me")).status;
  };

  beforeAll(async () => {
    proxy = await startLifetimeProxy();
  });
  afterAll(async () => {
    await proxy.close();
  });
  beforeEach(async () => {
    proxy.lifetime = null;
    proxy.field = "refresh_token_expires_in";
    proxy.rewrite = null;
    h = await startHarness({
      idp: { refreshTokenTTLSeconds: 7200 },
      portcullis: {
        fetch: rewritingDiscovery((_issuer, document) => {
          proxy.target = typeof document.token_endpoint === "string" ? document.token_endpoint : null;
          return { ...document, token_endpoint: proxy.url };
        }),
      },
      upstreams: ({ issuer }) => ({
        routes: [{ prefix: "/api/me/", target: `${issuer}/me`, credential: "provider-token", provider: "demo", methods: ["GET"] }],
      }),
    });
  });
  afterEach(async () => {
    await h.close();
  });

  it("lets the session run its 12 h when the provider says nothing (the baseline)", async () => {
    const started = h.clock.now();
    token = (await h.login("uncapped")).token;
    expect(await expiresAt()).toBe(started + 43_200_000);
  });

  it.each(["refresh_token_expires_in", "refresh_expires_in"])("caps the session at login at the lifetime announced as %s, in the cookie too, and ends it there", async (field) => {
    proxy.field = field;
    proxy.lifetime = 7200;
    const started = h.clock.now();
    const login = await h.login("capped-at-login");
    token = login.token;
    expect(await expiresAt()).toBe(started + 7_200_000);
    const cookie = login.agent.setCookies.find((c) => c.startsWith("__Host-Http-session="));
    expect(cookie).toMatch(/; Max-Age=7200$/);
    expect(await activeUntil(started + 7_200_000 - 1)).toBe(200);
    h.clock.advance(1);
    expect((await get("/auth/me")).status).toBe(401);
  });

  it("lowers the cap at a refresh that announces a shorter lifetime, and ends the session there", async () => {
    proxy.lifetime = 7200;
    token = (await h.login("capped-at-refresh")).token;
    // Into the last minute of the 600 s access token: the next provider-token request refreshes.
    h.clock.advance(570_000);
    proxy.lifetime = 900;
    const before = h.idp.tokenRequests.refresh_token;
    const refreshedAt = h.clock.now();
    expect((await get("/api/me")).status).toBe(200);
    expect(h.idp.tokenRequests.refresh_token).toBe(before + 1);
    expect(await expiresAt()).toBe(refreshedAt + 900_000);
    expect(await activeUntil(refreshedAt + 900_000 - 1)).toBe(200);
    h.clock.advance(1);
    expect((await get("/auth/me")).status).toBe(401);
  });

  it("never extends the session at a refresh that announces a longer lifetime", async () => {
    proxy.lifetime = 900;
    const started = h.clock.now();
    token = (await h.login("not-extended")).token;
    h.clock.advance(570_000);
    proxy.lifetime = 7200;
    const before = h.idp.tokenRequests.refresh_token;
    expect((await get("/api/me")).status).toBe(200);
    expect(h.idp.tokenRequests.refresh_token).toBe(before + 1);
    expect(await expiresAt()).toBe(started + 900_000);
  });

  it("reads a refresh-token lifetime of 0 as unknown (Keycloak's offline tokens: no expiry), not as a session already over", async () => {
    proxy.lifetime = 0;
    const started = h.clock.now();
    token = (await h.login("zero-lifetime")).token;
    expect(await expiresAt()).toBe(started + 43_200_000);
  });

  it("reads an access-token lifetime of 0 as unknown: no refresh before the provider refuses the token", async () => {
    proxy.rewrite = (answer) => ({ ...answer, expires_in: 0 });
    token = (await h.login("zero-access-lifetime")).token;
    const before = h.idp.tokenRequests.refresh_token;
    expect((await get("/api/me")).status).toBe(200);
    expect(h.idp.tokenRequests.refresh_token).toBe(before);
  });

  it("keeps no empty refresh token: a session whose provider sent refresh_token \"\" has none to revoke or use", async () => {
    proxy.rewrite = ({ refresh_token: _dropped, ...answer }) => ({ ...answer, refresh_token: "" });
    token = (await h.login("empty-refresh")).token;
    const [id] = token.split(".");
    expect((await h.bff.sessions.readTokens(id ?? ""))?.refreshToken).toBeNull();
  });

  it.each([
    ["without an ID token", ({ id_token: _dropped, ...answer }: Record<string, unknown>) => answer, "invalid_id_token", "the token response has no readable ID token"],
    ["without an access token", ({ access_token: _dropped, ...answer }: Record<string, unknown>) => answer, "invalid_token_response", "the token response has no access token"],
  ])("refuses a login whose token answer comes %s: the failure page, no session, the reason audited", async (_name, rewrite, reason, detail) => {
    proxy.rewrite = rewrite;
    const agent = h.agent();
    const response = await agent.login(h.origin, "broken-answer");
    expect(response.status).toBe(400);
    expect(await response.text()).toContain('data-reason="provider_refused"');
    expect(agent.cookie(h.origin, "__Host-Http-session")).toBeNull();
    expect(h.audit.named("login.failure").at(-1)).toMatchObject({ reason, detail });
  });
});

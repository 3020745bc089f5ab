import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AppEnv } from "../../src/app-env";
import { securityHeadersMiddleware } from "../../src/http/headers";
import { startHarness, type Harness } from "../fixtures/harness";

/**
 * SECURITY.md A7 / RFC 9111 3, 5.2.2.5: an answer that sets a cookie is never stored by a
 * shared or browser cache, or the next visitor behind the same proxy would be handed it.
 */
describe("no-store wherever a cookie is set (SECURITY.md A7)", () => {
  describe("the login routes", () => {
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness();
    });
    afterAll(async () => {
      await h.close();
    });

    it("answers GET /auth/login/:provider, which sets the login-state cookie, with no-store", async () => {
      const response = await h.agent().fetch(`${h.origin}/auth/login/demo`);
      expect(response.status).toBe(302);
      expect(response.headers.getSetCookie()).not.toEqual([]);
      expect(response.headers.get("cache-control")).toBe("no-store");
    });

    it("answers the successful callback, which sets the session cookie, with no-store", async () => {
      const agent = h.agent();
      const response = await agent.login(h.origin, "no-store");
      expect(response.status).toBe(200);
      expect(response.headers.getSetCookie().some((c) => c.startsWith("__Host-Http-session="))).toBe(true);
      expect(response.headers.get("cache-control")).toBe("no-store");
    });

    it("answers a refused callback, which expires the login-state cookie, with no-store", async () => {
      const agent = h.agent();
      const callback = await agent.authorize(await agent.startLogin(h.origin), "no-store-refused", h.origin);
      // The provider says no: the attempt is spent and, as the browser's last, its cookie expired.
      callback.searchParams.delete("code");
      callback.searchParams.set("error", "access_denied");
      const response = await agent.fetch(callback);
      expect(response.status).toBe(400);
      expect(response.headers.getSetCookie()).not.toEqual([]);
      expect(response.headers.get("cache-control")).toBe("no-store");
    });

    it("answers a refused callback that sets no cookie with no-store (the browser's other login keeps its login-state cookie alive)", async () => {
      const agent = h.agent();
      const callback = await agent.authorize(await agent.startLogin(h.origin), "no-store-pending", h.origin);
      // A second tab's login is still waiting: the refused one leaves the cookie alone.
      await agent.startLogin(h.origin);
      callback.searchParams.delete("code");
      callback.searchParams.set("error", "access_denied");
      const response = await agent.fetch(callback);
      expect(response.status).toBe(400);
      expect(response.headers.getSetCookie()).toEqual([]);
      expect(response.headers.get("cache-control")).toBe("no-store");
    });
  });

  /**
   * The rule lives in the security-headers middleware so that no route can get it wrong: the
   * real middleware in front of routes that set a cookie and ask for caching anyway.
   */
  describe("the security-headers middleware", () => {
    let server: Server;
    let origin: string;
    beforeAll(async () => {
      const app = new Hono<AppEnv>();
      app.use(securityHeadersMiddleware({ publicOrigin: "http://localhost", formActionOrigins: [], connectOrigins: [] }));
      app.use(async (c, next) => {
        c.set("noStore", false);
        await next();
      });
      app.get("/weaker", (c) => {
        c.header("Set-Cookie", "a=1; HttpOnly; Secure; SameSite=Strict; Path=/");
        c.header("Cache-Control", "private, max-age=600");
        return c.text("cached?");
      });
      app.get("/weaker-late", (c) => {
        // Cache-Control set after the cookie, on the finished response itself.
        const response = c.text("cached?");
        response.headers.append("Set-Cookie", "a=1; Path=/");
        response.headers.set("Cache-Control", "public, max-age=86400, immutable");
        return response;
      });
      app.get("/targeted", () =>
        new Response("cached?", {
          headers: {
            "set-cookie": "a=1; Path=/",
            "cache-control": "public, max-age=86400",
            // RFC 9213: these win over Cache-Control at the caches they target (CDNs, surrogates).
            "cdn-cache-control": "max-age=600",
            "surrogate-control": "max-age=600",
          },
        }),
      );
      app.get("/no-cookie", (c) => {
        c.header("Cache-Control", "public, max-age=300");
        return c.text("cacheable");
      });
      server = createServer(getRequestListener(app.fetch));
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
      origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    it.each(["/weaker", "/weaker-late", "/targeted"])("turns %s's weaker caching into no-store because it sets a cookie", async (path) => {
      const response = await fetch(`${origin}${path}`);
      expect(response.status).toBe(200);
      expect(response.headers.getSetCookie()).not.toEqual([]);
      expect(response.headers.get("cache-control")).toBe("no-store");
      expect(response.headers.get("cdn-cache-control")).toBeNull();
      expect(response.headers.get("surrogate-control")).toBeNull();
    });

    it("leaves a route's own caching alone when it sets no cookie", async () => {
      const response = await fetch(`${origin}/no-cookie`);
      expect(response.headers.get("cache-control")).toBe("public, max-age=300");
    });
  });
});

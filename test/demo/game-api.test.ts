import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock";
import { createGameAPI } from "../../src/demo/game-api";
import { AssertionVerifier } from "../../src/demo/verify-assertion";
import { AssertionSigner } from "../../src/proxy/assertion";

const ISSUER = "https://play.example.com";
const AUDIENCE = "http://game.internal";

describe("#createGameAPI", () => {
  const clock = new ManualClock(Date.now());
  const signer = new AssertionSigner([{ id: "k", key: randomBytes(32) }], ISSUER, clock, randomBytes);
  // The BFF's real signer and JWKS; only the transport of the JWKS document is skipped.
  const verifier = new AssertionVerifier({ jwksURL: "http://bff.invalid/.well-known/jwks.json", issuer: ISSUER, audience: AUDIENCE, now: () => clock.now(), fetch: async () => new Response(signer.jwksJSON()) });
  let server: Server;
  let base: string;
  const bearer = (claims: Partial<{ sub: string; name: string; aud: string }> = {}): Record<string, string> => ({
    authorization: `Bearer ${signer.sign({ sub: "acc-1", sid: "sid-1", name: "Ada", aud: AUDIENCE, ...claims })}`,
  });

  beforeAll(async () => {
    const api = createGameAPI(verifier);
    server = createServer((req, res) => {
      if (api(req, res)) return;
      res.writeHead(404);
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("answers the profile from the assertion alone", async () => {
    const response = await fetch(`${base}/api/game/profile`, { headers: bearer() });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ id: "acc-1", name: "Ada", session: "sid-1", best: 0, plays: 0 });
  });

  it("records scores per account, whatever the body claims about the player", async () => {
    const post = (score: unknown, claims = {}): Promise<Response> =>
      fetch(`${base}/api/game/score`, { method: "POST", headers: { ...bearer(claims), "content-type": "application/json" }, body: JSON.stringify({ score, sub: "acc-2" }) });
    expect(await (await post(40)).json()).toEqual({ id: "acc-1", best: 40, plays: 1 });
    expect(await (await post(7)).json()).toEqual({ id: "acc-1", best: 40, plays: 2 });
    expect(await (await post(3, { sub: "acc-2" })).json()).toEqual({ id: "acc-2", best: 3, plays: 1 });
    for (const bad of [-1, 1.5, "9", 1_000_001, null]) expect((await post(bad)).status).toBe(400);
  });

  it("refuses a missing, foreign-audience, forged or expired assertion with 401", async () => {
    const good = bearer().authorization ?? "";
    const [header, payload, signature] = good.slice(7).split(".");
    const forgedPayload = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload ?? "", "base64url").toString()), sub: "admin" })).toString("base64url");
    for (const headers of [{}, { authorization: "Basic eDp5" }, bearer({ aud: "http://other.game" }), { authorization: `Bearer ${header}.${forgedPayload}.${signature}` }]) {
      expect((await fetch(`${base}/api/game/profile`, { headers })).status).toBe(401);
    }
    const stale = bearer();
    clock.advance(120_000);
    expect((await fetch(`${base}/api/game/profile`, { headers: stale })).status).toBe(401);
  });

  it("answers 405 for other methods, 413 for a large body, and leaves other paths to the server", async () => {
    expect((await fetch(`${base}/api/game/profile`, { method: "DELETE", headers: bearer() })).status).toBe(405);
    expect((await fetch(`${base}/api/game/score`, { method: "POST", headers: bearer(), body: JSON.stringify({ score: 1, pad: "x".repeat(10_000) }) })).status).toBe(413);
    expect((await fetch(`${base}/api/game/other`, { headers: bearer() })).status).toBe(404);
  });

  it("answers 503 while no verifier is available", async () => {
    const api = createGameAPI();
    const lonely = createServer((req, res) => void api(req, res));
    await new Promise<void>((resolve) => lonely.listen(0, "127.0.0.1", () => resolve()));
    try {
      const response = await fetch(`http://127.0.0.1:${(lonely.address() as AddressInfo).port}/api/game/profile`, { headers: bearer() });
      expect(response.status).toBe(503);
    } finally {
      lonely.closeAllConnections();
      await new Promise((resolve) => lonely.close(resolve));
    }
  });
});

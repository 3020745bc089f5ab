import { createPublicKey, verify } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock";
import { ConfigError } from "../../src/config";
import { AssertionSigner } from "../../src/proxy/assertion";
import { parseUpstreams, resolveUpstream } from "../../src/proxy/upstreams";
import { AssertionVerifier } from "../../src/demo/verify-assertion";
import { randomBytes } from "node:crypto";

describe("#parseUpstreams", () => {
  it("reports every problem of the file at once", () => {
    let problems: string[] = [];
    try {
      parseUpstreams(
        {
          routes: [
            { prefix: "api/game", target: "ftp://x", methods: ["TRACE"], credential: "magic" },
            { prefix: "/api/me/", target: "https://id.example.com/me?x=1", credential: "provider-token", provider: "nope" },
            { prefix: "/api/me/", target: "https://ok.example.com/", audience: "" },
          ],
        },
        ["demo"],
        "upstreams.json",
      );
    } catch (error) {
      if (error instanceof ConfigError) problems = error.problems;
    }
    expect(problems).toEqual([
      expect.stringContaining("routes[0].prefix"),
      expect.stringContaining("routes[0].target"),
      expect.stringContaining("routes[0].methods"),
      expect.stringContaining("routes[0].credential"),
      expect.stringContaining("routes[1].target"),
      expect.stringContaining("routes[1].provider"),
      expect.stringContaining("routes[2].prefix \"/api/me/\" appears twice"),
      expect.stringContaining("routes[2].audience"),
    ]);
  });

  it("resolves only inside a route's target", () => {
    const routes = parseUpstreams({ routes: [{ prefix: "/api/game/", target: "http://10.0.0.1:9000/v1/" }] }, [], "test");
    expect(resolveUpstream(routes, "/api/game/a/b?c=d")).toMatchObject({ url: new URL("http://10.0.0.1:9000/v1/a/b?c=d") });
    expect(resolveUpstream(routes, "/api/game")).toMatchObject({ url: new URL("http://10.0.0.1:9000/v1/") });
    expect(resolveUpstream(routes, "/api/game/../x")).toEqual({ refusal: "bad_path" });
    expect(resolveUpstream(routes, "/api/games/x")).toEqual({ refusal: "no_route" });
  });
});

describe("assertion keys (SECURITY.md D18 for signing keys)", () => {
  it("publishes every key and keeps old assertions verifiable after rotation", async () => {
    const clock = new ManualClock(Date.now());
    const oldKey = { id: "old", key: randomBytes(32) };
    const newKey = { id: "new", key: randomBytes(32) };
    const before = new AssertionSigner([oldKey], "https://play.example.com", clock, randomBytes);
    const issuedBefore = before.sign({ sub: "acc", sid: "sid", name: "n", aud: "game" });
    const after = new AssertionSigner([newKey, oldKey], "https://play.example.com", clock, randomBytes);
    const jwks = JSON.parse(after.jwksJSON()) as { keys: { kid: string; x: string }[] };
    expect(jwks.keys.map((k) => k.kid)).toEqual(["new", "old"]);
    const verifier = new AssertionVerifier({
      jwksURL: "http://jwks.invalid/",
      issuer: "https://play.example.com",
      audience: "game",
      now: () => clock.now(),
      fetch: async () => new Response(after.jwksJSON()),
    });
    expect((await verifier.verify(issuedBefore)).sub).toBe("acc");
    const issuedAfter = after.sign({ sub: "acc2", sid: "sid2", name: "n", aud: "game" });
    expect(JSON.parse(Buffer.from(issuedAfter.split(".")[0] ?? "", "base64url").toString()).kid).toBe("new");
    expect((await verifier.verify(issuedAfter)).sub).toBe("acc2");
    // EdDSA over the signing input, checkable with nothing but node:crypto.
    const [header, payload, signature] = issuedAfter.split(".");
    const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: jwks.keys[0]?.x ?? "" }, format: "jwk" });
    expect(verify(null, Buffer.from(`${header}.${payload}`), key, Buffer.from(signature ?? "", "base64url"))).toBe(true);
    const claims = JSON.parse(Buffer.from(payload ?? "", "base64url").toString()) as Record<string, unknown>;
    expect(Object.keys(claims).sort()).toEqual(["aud", "exp", "iat", "iss", "jti", "name", "nbf", "sid", "sub"]);
    expect(Number(claims.exp) - Number(claims.iat)).toBe(60);
  });

  it("refuses an expired assertion, a wrong audience and a tampered payload", async () => {
    const clock = new ManualClock(Date.now());
    const signer = new AssertionSigner([{ id: "k", key: randomBytes(32) }], "https://play.example.com", clock, randomBytes);
    const verifier = new AssertionVerifier({
      jwksURL: "http://jwks.invalid/",
      issuer: "https://play.example.com",
      audience: "game",
      now: () => clock.now(),
      fetch: async () => new Response(signer.jwksJSON()),
    });
    const good = signer.sign({ sub: "a", sid: "s", name: "n", aud: "game" });
    await expect(verifier.verify(signer.sign({ sub: "a", sid: "s", name: "n", aud: "other" }))).rejects.toThrow(/audience/);
    const [h, p, s] = good.split(".");
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p ?? "", "base64url").toString()), sub: "admin" })).toString("base64url");
    await expect(verifier.verify(`${h}.${forged}.${s}`)).rejects.toThrow(/signature/);
    clock.advance(66_000);
    await expect(verifier.verify(good)).rejects.toThrow(/expired/);
  });
});

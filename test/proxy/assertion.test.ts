import { createPublicKey, randomBytes, verify } from "node:crypto";
import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock";
import { AssertionVerifier } from "../../src/demo/verify-assertion";
import { AssertionSigner } from "../../src/proxy/assertion";
import { startHarness, testKey, type Harness } from "../fixtures/harness";
import { startRecordingUpstream, type RecordingUpstream } from "../fixtures/http-upstream";

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

describe("assertion reuse for HTTP requests (issue 14)", () => {
  const claims = { sub: "acc", sid: "sid", name: "n", aud: "game", idp: "demo", idpSub: "sam" };
  const expOf = (jwt: string): number => Number((JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString()) as { exp: number }).exp);

  it("reuses one assertion for 30 s, always with 30 s or more left, then signs a new one", () => {
    const clock = new ManualClock(Date.UTC(2026, 10, 29));
    const signer = new AssertionSigner([{ id: "k", key: randomBytes(32) }], "https://play.example.com", clock, randomBytes);
    const first = signer.signReusable(claims);
    clock.advance(29_999);
    expect(signer.signReusable(claims)).toBe(first);
    expect(expOf(first) * 1000 - clock.now()).toBeGreaterThanOrEqual(30_000);
    clock.advance(1);
    const second = signer.signReusable(claims);
    expect(second).not.toBe(first);
    expect(expOf(second)).toBe(expOf(first) + 30);
    // A clock that went back does not stretch an assertion's use either.
    clock.advance(-5_000);
    expect(signer.signReusable(claims)).not.toBe(second);
  });

  it("never hands one session's, audience's or name's assertion to another, and the handshake's are always fresh", () => {
    const clock = new ManualClock(Date.UTC(2026, 10, 29));
    const signer = new AssertionSigner([{ id: "k", key: randomBytes(32) }], "https://play.example.com", clock, randomBytes);
    const base = signer.signReusable(claims);
    for (const changed of [{ sid: "other" }, { sub: "other" }, { aud: "other" }, { name: "renamed" }, { idp: "other" }, { idpSub: "other" }]) {
      expect(signer.signReusable({ ...claims, ...changed })).not.toBe(base);
    }
    expect(signer.sign(claims)).not.toBe(base);
    expect(signer.sign(claims)).not.toBe(signer.sign(claims));
  });
});

describe("GET /.well-known/jwks.json across a signing-key rotation (SECURITY.md D18)", () => {
  let upstream: RecordingUpstream;
  let h: Harness;
  const oldKey = testKey();
  const newKey = testKey();
  const kidOf = (jwt: string): unknown => JSON.parse(Buffer.from(jwt.split(".")[0] ?? "", "base64url").toString("utf8")).kid;

  /** The assertion the upstream received for one /api call by a freshly logged-in player. */
  async function assertionThroughAPI(name: string): Promise<string> {
    const { token } = await h.login(name);
    const before = upstream.requests.length;
    const response = await fetch(`${h.origin}/api/game/profile`, { headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } });
    expect(response.status).toBe(200);
    const authorization = upstream.requests[before]?.headers.authorization ?? "";
    expect(authorization).toMatch(/^Bearer /);
    return authorization.slice("Bearer ".length);
  }

  beforeAll(async () => {
    upstream = await startRecordingUpstream();
  });
  afterAll(async () => {
    await h.close();
    await upstream.close();
  });

  it("publishes both keys after the restart, signs with the new one, and old assertions still verify", async () => {
    h = await startHarness({ env: { GAME_BACKEND_URL: upstream.url, ASSERTION_SIGNING_KEYS: `old:${oldKey}` } });
    const issuedBefore = await assertionThroughAPI("before-rotation");
    expect(kidOf(issuedBefore)).toBe("old");

    // The operator rotates: the new key first (it signs), the old one second (still published).
    await h.stop();
    rmSync(h.dir, { recursive: true, force: true });
    h = await startHarness({
      port: Number(new URL(h.origin).port),
      reuseIdP: { idp: h.idp, other: null, clientSecret: h.clientSecret },
      env: { GAME_BACKEND_URL: upstream.url, ASSERTION_SIGNING_KEYS: `new:${newKey},old:${oldKey}` },
    });
    const jwksResponse = await fetch(`${h.origin}/.well-known/jwks.json`);
    expect(jwksResponse.status).toBe(200);
    expect(jwksResponse.headers.get("content-type")).toMatch(/^application\/jwk-set\+json/);
    const jwks = (await jwksResponse.json()) as { keys: Record<string, unknown>[] };
    expect(jwks.keys.map((k) => k.kid)).toEqual(["new", "old"]);
    for (const key of jwks.keys) {
      expect(Object.keys(key).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x"]);
    }

    const verifier = new AssertionVerifier({ jwksURL: `${h.origin}/.well-known/jwks.json`, issuer: h.origin, audience: upstream.url });
    expect((await verifier.verify(issuedBefore)).name).toBe("before-rotation");
    const issuedAfter = await assertionThroughAPI("after-rotation");
    expect(kidOf(issuedAfter)).toBe("new");
    expect((await verifier.verify(issuedAfter)).name).toBe("after-rotation");
  });
});

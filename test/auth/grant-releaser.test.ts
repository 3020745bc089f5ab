import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createAuditLog } from "../../src/audit/log";
import { ManualClock } from "../../src/clock";
import { TokenCipher } from "../../src/crypto/token-cipher";
import { GrantReleaser, associatedData, type EndedGrant } from "../../src/auth/session";
import { AuditCapture } from "../fixtures/harness";

// The one piece of code both engines hand an ended session's refresh token to (SECURITY.md I43).
// The revoker is the provider call the token refresher injects; here it is a function whose
// answer the test holds back.
function setup(): { releaser: GrantReleaser; cipher: TokenCipher; out: AuditCapture; calls: EndedGrant[]; answer: (error?: unknown) => void } {
  const cipher = new TokenCipher([{ id: "k1", key: randomBytes(32) }]);
  const out = new AuditCapture();
  const audit = createAuditLog({ stream: out, notices: new AuditCapture(), clock: new ManualClock(), hashKey: new Uint8Array(32) });
  const releaser = new GrantReleaser(cipher, audit);
  const calls: EndedGrant[] = [];
  const pending: Array<{ resolve: () => void; reject: (error: unknown) => void }> = [];
  releaser.setRevoker((grant) => {
    calls.push(grant);
    return new Promise<void>((resolve, reject) => pending.push({ resolve, reject }));
  });
  const answer = (error?: unknown): void => {
    const next = pending.shift();
    if (error === undefined) next?.resolve();
    else next?.reject(error);
  };
  return { releaser, cipher, out, calls, answer };
}

const row = (cipher: TokenCipher, id: string): { id: string; provider: string; refreshToken: string } => ({
  id,
  provider: "demo",
  refreshToken: cipher.seal(`refresh-of-${id}`, associatedData(id, "refresh_token")),
});

const settledWithin = async (promise: Promise<void>): Promise<boolean> =>
  Promise.race([promise.then(() => true), new Promise<boolean>((resolve) => setImmediate(() => resolve(false)))]);

describe("GrantReleaser (SECURITY.md I43)", () => {
  it("hands the opened refresh token to the revoker, and settled() waits until the provider has answered", async () => {
    const { releaser, cipher, calls, answer } = setup();
    releaser.release(row(cipher, "s1"), "logout");
    expect(calls).toEqual([{ sessionId: "s1", provider: "demo", refreshToken: "refresh-of-s1" }]);
    // Shutdown waits on this: it must not resolve while the revocation is still out.
    expect(await settledWithin(releaser.settled())).toBe(false);
    answer();
    expect(await settledWithin(releaser.settled())).toBe(true);
    // An answered revocation is forgotten: one per ended session would otherwise pile up.
    expect(releaser["revocations"].size).toBe(0);
  });

  it("revokes nothing for a grant the provider itself refused, or a session without a refresh token", () => {
    const { releaser, cipher, calls } = setup();
    releaser.release(row(cipher, "s2"), "refresh_refused");
    releaser.release({ id: "s3", provider: "demo", refreshToken: null }, "expired");
    expect(calls).toEqual([]);
  });

  it("audits a revocation the provider failed, and still settles", async () => {
    const { releaser, cipher, out, answer } = setup();
    releaser.release(row(cipher, "s4"), "revoked");
    answer(new Error("provider said 503"));
    await releaser.settled();
    // A rejection that is not an Error still gets a line, with a detail that says what failed.
    releaser.release(row(cipher, "s5"), "revoked");
    answer("not an Error");
    await releaser.settled();
    expect(out.named("token.revoke.failed")).toEqual([
      expect.objectContaining({ provider: "demo", detail: "provider said 503" }),
      expect.objectContaining({ provider: "demo", detail: "revocation failed" }),
    ]);
  });
});

import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { DecryptionError, TokenCipher } from "../../src/crypto/token-cipher";

const k1 = { id: "k1", key: randomBytes(32) };
const k2 = { id: "k2", key: randomBytes(32) };

describe("TokenCipher", () => {
  it("seals with AES-256-GCM, a fresh 96-bit IV and the key id, and opens again", () => {
    const cipher = new TokenCipher([k1]);
    const a = cipher.seal("refresh-token-value", "s1/refresh_token");
    const b = cipher.seal("refresh-token-value", "s1/refresh_token");
    expect(a).not.toBe(b);
    expect(a.split(".")[1]).toBe("k1");
    expect(Buffer.from(a.split(".")[2] ?? "", "base64url")).toHaveLength(12);
    expect(a).not.toContain("refresh-token-value");
    expect(cipher.open(a, "s1/refresh_token")).toBe("refresh-token-value");
  });

  it("refuses a ciphertext with one flipped byte", () => {
    const cipher = new TokenCipher([k1]);
    const sealed = cipher.seal("access-token", "s1/access_token");
    const parts = sealed.split(".");
    const body = Buffer.from(parts[3] ?? "", "base64url");
    body[0] = (body[0] ?? 0) ^ 0x01;
    parts[3] = body.toString("base64url");
    expect(() => cipher.open(parts.join("."), "s1/access_token")).toThrow(DecryptionError);
  });

  it("refuses a ciphertext moved to another session or another field", () => {
    const cipher = new TokenCipher([k1]);
    const sealed = cipher.seal("access-token", "s1/access_token");
    expect(() => cipher.open(sealed, "s2/access_token")).toThrow(DecryptionError);
    expect(() => cipher.open(sealed, "s1/refresh_token")).toThrow(DecryptionError);
  });

  it("opens with any configured key and seals with the first (rotation)", () => {
    const before = new TokenCipher([k1]);
    const sealedOld = before.seal("old", "ad");
    const after = new TokenCipher([k2, k1]);
    expect(after.open(sealedOld, "ad")).toBe("old");
    expect(after.seal("new", "ad").split(".")[1]).toBe("k2");
    expect(() => new TokenCipher([k2]).open(sealedOld, "ad")).toThrow(/no key with id "k1"/);
  });

  it.each(["", "v1", "v2.k1.aaaa.bbbb", "v1.k1.!!.bbbb", "v1.k1.AAAAAAAAAAAAAAAA.AA"])("refuses malformed input %j", (input) => {
    expect(() => new TokenCipher([k1]).open(input, "ad")).toThrow(DecryptionError);
  });
});

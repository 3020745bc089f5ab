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

  it("refuses an authentication tag cut short, which Node's GCM would accept (a 32-bit tag is forgeable)", () => {
    // Node verifies a 4- or 8-byte tag against the tag's prefix unless told the length, and
    // a body under 16 bytes splits into a shorter ciphertext and tag: only the body-length
    // check stops it. (8-byte plaintext + 4-byte tag, and empty plaintext + 8-byte tag, are
    // the two cuts that would open.)
    const cipher = new TokenCipher([k1]);
    for (const [plaintext, tagBytes] of [["abcdefgh", 4], ["", 8]] as const) {
      const parts = cipher.seal(plaintext, "ad").split(".");
      const body = Buffer.from(parts[3] ?? "", "base64url");
      parts[3] = body.subarray(0, plaintext.length + tagBytes).toString("base64url");
      expect(() => cipher.open(parts.join("."), "ad")).toThrow(/^malformed ciphertext$/);
    }
  });

  it("opens an empty plaintext (a body that is exactly the 16-byte tag)", () => {
    const cipher = new TokenCipher([k1]);
    const sealed = cipher.seal("", "ad");
    expect(Buffer.from(sealed.split(".")[3] ?? "", "base64url")).toHaveLength(16);
    expect(cipher.open(sealed, "ad")).toBe("");
  });

  it("refuses an authentic body under another version or with a fifth part", () => {
    const cipher = new TokenCipher([k1]);
    const sealed = cipher.seal("token", "ad");
    expect(() => cipher.open(sealed.replace(/^v1\./, "v2."), "ad")).toThrow(/malformed ciphertext/);
    expect(() => cipher.open(`${sealed}.extra`, "ad")).toThrow(/malformed ciphertext/);
  });

  it("keeps the stored format: a value sealed by an earlier build still opens (known answer)", () => {
    // Fixed key and IV (the body computed with plain node:crypto): the rows already in a
    // database must stay readable across releases.
    const key = { id: "k1", key: Buffer.alloc(32, 7) };
    const cipher = new TokenCipher([key], (n) => Buffer.alloc(n, 1));
    const sealed = "v1.k1.AQEBAQEBAQEBAQEB.BITvxfXMhH33vOsZherYL1TEcdmwz7s";
    expect(cipher.seal("refresh", "s1/refresh_token")).toBe(sealed);
    expect(cipher.open(sealed, "s1/refresh_token")).toBe("refresh");
  });

  it("names each refusal for the audit detail, keeps the cause, and needs a key", () => {
    const cipher = new TokenCipher([k1]);
    const sealed = cipher.seal("token", "ad");
    const parts = sealed.split(".");
    const error = ((): unknown => {
      try {
        cipher.open(sealed, "other");
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(error).toBeInstanceOf(DecryptionError);
    expect(error).toMatchObject({ name: "DecryptionError", message: "ciphertext failed authentication", cause: expect.any(Error) });
    // A 16-byte IV would fail authentication anyway; the audit detail still says why.
    const longIv = [parts[0], parts[1], Buffer.alloc(16).toString("base64url"), parts[3]].join(".");
    expect(() => cipher.open(longIv, "ad")).toThrow(/^malformed ciphertext$/);
    expect(() => cipher.open("v1", "ad")).toThrow(/^malformed ciphertext$/);
    expect(() => new TokenCipher([])).toThrow(/at least one key/);
  });

  it.each(["", "v1", "v2.k1.aaaa.bbbb", "v1.k1.!!.bbbb", "v1.k1.AAAAAAAAAAAAAAAA.AA"])("refuses malformed input %j", (input) => {
    expect(() => new TokenCipher([k1]).open(input, "ad")).toThrow(DecryptionError);
  });
});

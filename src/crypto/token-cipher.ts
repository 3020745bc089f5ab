import { createCipheriv, createDecipheriv } from "node:crypto";
import type { NamedKey } from "../config";
import { secureRandomBytes, type RandomBytes } from "../clock";

/** A sealed value could not be opened: unknown key, wrong associated data, or tampering. */
export class DecryptionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DecryptionError";
  }
}

const VERSION = "v1";
const IV_BYTES = 12; // NIST SP 800-38D: a random 96-bit IV per message.
const TAG_BYTES = 16;

/**
 * AES-256-GCM for provider tokens at rest (SECURITY.md D17). The associated data binds each
 * ciphertext to its session and column, so a ciphertext copied into another row or field
 * fails to open. The first key seals; every key opens, so keys can rotate.
 */
export class TokenCipher {
  private readonly keys: Map<string, Buffer>;
  private readonly current: NamedKey;

  constructor(
    keys: NamedKey[],
    private readonly randomBytes: RandomBytes = secureRandomBytes,
  ) {
    const first = keys[0];
    if (first === undefined) {
      throw new Error("TokenCipher needs at least one key");
    }
    this.current = first;
    this.keys = new Map(keys.map((k) => [k.id, k.key]));
  }

  /** `v1.<kid>.<iv>.<ciphertext+tag>`, base64url parts. */
  seal(plaintext: string, associatedData: string): string {
    const iv = this.randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.current.key, iv);
    cipher.setAAD(Buffer.from(associatedData, "utf8"));
    const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final(), cipher.getAuthTag()]);
    return [VERSION, this.current.id, iv.toString("base64url"), body.toString("base64url")].join(".");
  }

  open(sealed: string, associatedData: string): string {
    const parts = sealed.split(".");
    const [version, keyId, ivPart, bodyPart] = parts;
    if (parts.length !== 4 || version !== VERSION || keyId === undefined || ivPart === undefined || bodyPart === undefined) {
      throw new DecryptionError("malformed ciphertext");
    }
    const key = this.keys.get(keyId);
    if (key === undefined) {
      throw new DecryptionError(`no key with id "${keyId}"`);
    }
    const iv = Buffer.from(ivPart, "base64url");
    const body = Buffer.from(bodyPart, "base64url");
    if (iv.length !== IV_BYTES || body.length < TAG_BYTES) {
      throw new DecryptionError("malformed ciphertext");
    }
    try {
      const decipher = createDecipheriv("aes-256-gcm", key, iv);
      decipher.setAAD(Buffer.from(associatedData, "utf8"));
      decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
      return Buffer.concat([decipher.update(body.subarray(0, body.length - TAG_BYTES)), decipher.final()]).toString("utf8");
    } catch (cause) {
      throw new DecryptionError("ciphertext failed authentication", { cause });
    }
  }
}

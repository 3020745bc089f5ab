import { encodeBase32LowerCaseNoPadding } from "@oslojs/encoding";
import type { RandomBytes } from "../clock";

/**
 * A random token of `bytes` bytes from the CSPRNG, in lower-case base32 (5 bits per
 * character, so 20 bytes give 32 characters and 160 bits). Base32 keeps tokens safe in
 * cookies and subprotocol names without escaping.
 */
export function randomToken(randomBytes: RandomBytes, bytes: number): string {
  return encodeBase32LowerCaseNoPadding(randomBytes(bytes));
}

/** Base64url of `bytes` random bytes, as OAuth's state, verifier and nonce. */
export function randomBase64URL(randomBytes: RandomBytes, bytes: number): string {
  return randomBytes(bytes).toString("base64url");
}

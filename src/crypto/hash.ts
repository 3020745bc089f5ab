import { createHash, createHmac, timingSafeEqual } from "node:crypto";

export function sha256(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

export function sha256Hex(value: string): string {
  return createHash("sha256").update(value, "utf8").digest("hex");
}

/** Constant-time equality of two byte strings (false for different lengths). */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export function hmacSHA256(key: Uint8Array, value: string): Buffer {
  return createHmac("sha256", key).update(value, "utf8").digest();
}

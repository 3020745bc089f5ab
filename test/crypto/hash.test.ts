import { describe, expect, it } from "vitest";
import { constantTimeEqual, sha256 } from "../../src/crypto/hash";

describe("constantTimeEqual", () => {
  it("answers false for byte strings of different lengths instead of throwing", () => {
    // timingSafeEqual throws a RangeError on a length mismatch: a stored hash of another
    // length must read as "no match" (401), not as a server error.
    expect(constantTimeEqual(sha256("a"), sha256("a").subarray(0, 16))).toBe(false);
    expect(constantTimeEqual(sha256("a"), sha256("a"))).toBe(true);
    expect(constantTimeEqual(sha256("a"), sha256("b"))).toBe(false);
  });
});

import { describe, expect, it } from "vitest";
import { secureRandomBytes } from "../src/clock";

describe("secureRandomBytes: the CSPRNG, drawn 4 KiB at a time (issue 14)", () => {
  it("hands out every byte once, in copies a refill never changes", () => {
    const first = secureRandomBytes(16);
    const firstSeen = first.toString("hex");
    // 2,000 draws of 16 bytes cross the 4 KiB pool several times.
    const drawn = Array.from({ length: 2_000 }, () => secureRandomBytes(16).toString("hex"));
    expect(first.toString("hex")).toBe(firstSeen);
    expect(new Set([firstSeen, ...drawn]).size).toBe(2_001);
    expect(drawn.every((hex) => hex.length === 32)).toBe(true);
  });

  it("draws lengths that straddle a refill or exceed the pool whole", () => {
    const sizes = [1, 7, 4_095, 4_096, 4_097, 10_000];
    for (const size of sizes) expect(secureRandomBytes(size)).toHaveLength(size);
    // A large draw is not all zeros (the pool's initial state).
    expect(secureRandomBytes(10_000).some((byte) => byte !== 0)).toBe(true);
  });
});

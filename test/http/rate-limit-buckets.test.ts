import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock";
import { MAX_KEYS, RateLimiter } from "../../src/http/rate-limit";

// The token buckets behind every limit (SECURITY.md H34), with rates other than 1/s so that
// a rate multiplied and a rate divided differ.
describe("RateLimiter buckets", () => {
  it("refills at `rate` tokens per second, up to `burst`", () => {
    const clock = new ManualClock();
    const limiter = new RateLimiter({ rate: 2, burst: 1 }, clock);
    expect(limiter.take("k").allowed).toBe(true);
    clock.advance(1);
    expect(limiter.take("k").allowed).toBe(false);
    clock.advance(499);
    expect(limiter.take("k").allowed).toBe(true);
    clock.advance(60_000);
    expect(limiter.take("k").allowed).toBe(true);
    expect(limiter.take("k").allowed).toBe(false);
  });

  it("answers Retry-After as the seconds until one token is back, at least 1", () => {
    const clock = new ManualClock();
    const limiter = new RateLimiter({ rate: 0.1, burst: 1 }, clock);
    limiter.take("k");
    expect(limiter.take("k")).toEqual({ allowed: false, retryAfterSeconds: 10 });
    clock.advance(5_000);
    expect(limiter.take("k")).toEqual({ allowed: false, retryAfterSeconds: 5 });
    const fast = new RateLimiter({ rate: 100, burst: 1 }, clock);
    fast.take("k");
    expect(fast.take("k")).toEqual({ allowed: false, retryAfterSeconds: 1 });
  });

  it("when full of keys, forgets the buckets that have refilled and keeps the spent ones", () => {
    const clock = new ManualClock();
    const limiter = new RateLimiter({ rate: 2, burst: 2 }, clock);
    limiter.take("spent");
    for (let i = 1; i < MAX_KEYS - 1; i += 1) limiter.take(`idle-${i}`); // 1 of 2 tokens left
    clock.advance(250);
    limiter.take("recent");
    limiter.take("recent"); // 0 tokens at +250 ms
    clock.advance(250);
    limiter.take("spent");
    limiter.take("spent");
    expect(limiter.take("spent").allowed).toBe(false);
    expect(limiter.size).toBe(MAX_KEYS);
    // At +500 ms every idle bucket is back to 2 tokens: those go; "spent" (0) and "recent"
    // (0.5) stay, so a flood of new keys does not hand a limited client a fresh bucket.
    limiter.take("new");
    expect(limiter.size).toBe(3);
    expect(limiter.take("spent").allowed).toBe(false);
    expect(limiter.take("recent").allowed).toBe(false);
  });

  it("when full of spent buckets, forgets the oldest half rather than grow", () => {
    const clock = new ManualClock();
    const limiter = new RateLimiter({ rate: 1, burst: 1 }, clock);
    for (let i = 0; i < MAX_KEYS; i += 1) limiter.take(`k-${i}`);
    expect(limiter.size).toBe(MAX_KEYS);
    limiter.take("new");
    expect(limiter.size).toBe(MAX_KEYS / 2 + 1);
    expect(limiter.take(`k-${MAX_KEYS / 2 - 1}`).allowed).toBe(true); // forgotten: fresh bucket
    expect(limiter.take(`k-${MAX_KEYS / 2}`).allowed).toBe(false); // kept
    expect(limiter.take(`k-${MAX_KEYS - 1}`).allowed).toBe(false);
    expect(limiter.take("new").allowed).toBe(false);
  });
});

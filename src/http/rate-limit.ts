import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app-env";
import type { AuditLog } from "../audit/log";
import type { Clock } from "../clock";
import type { RateLimitConfig } from "../config";
import { addressGroup } from "./client-ip";
import type { Metrics } from "../metrics/metrics";
import { refuse } from "./errors";

interface Bucket {
  tokens: number;
  updatedAt: number;
}

/** Whether a request may pass and, if not, how long to wait. */
export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

export const MAX_KEYS = 100_000;

/**
 * In-memory token buckets keyed by IP or session (SECURITY.md H34). Bounded: when the map
 * is full, full (idle) buckets are dropped first, so a flood of spoofed keys cannot grow it.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly limit: RateLimitConfig,
    private readonly clock: Clock,
  ) {}

  /** Buckets held: never more than {@link MAX_KEYS}. */
  get size(): number {
    return this.buckets.size;
  }

  take(key: string): RateDecision {
    const now = this.clock.now();
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      if (this.buckets.size >= MAX_KEYS) {
        this.prune(now);
      }
      bucket = { tokens: this.limit.burst, updatedAt: now };
      this.buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(this.limit.burst, bucket.tokens + ((now - bucket.updatedAt) / 1000) * this.limit.rate);
      bucket.updatedAt = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { allowed: true };
    }
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / this.limit.rate)) };
  }

  private prune(now: number): void {
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + ((now - bucket.updatedAt) / 1000) * this.limit.rate >= this.limit.burst) {
        this.buckets.delete(key);
      }
    }
    // Still full: forget the oldest half rather than grow without bound.
    if (this.buckets.size >= MAX_KEYS) {
      let drop = this.buckets.size / 2;
      for (const key of this.buckets.keys()) {
        if (drop-- <= 0) break;
        this.buckets.delete(key);
      }
    }
  }
}

/** Refuses with 429 and `Retry-After` when the client's IP, or its session, is over `limiter`'s rate. */
export function rateLimitMiddleware(name: string, limiter: RateLimiter, audit: AuditLog, metrics: Metrics): MiddlewareHandler<AppEnv> {
  return async function rateLimit(c, next) {
    // An IPv6 /64 is one client: keyed on the full address, a host could rotate through its
    // /64 for a fresh bucket on every request.
    const keys = [`ip:${addressGroup(c.var.clientIP)}`];
    if (c.var.session !== null) {
      keys.push(`session:${c.var.session.id}`);
    }
    for (const key of keys) {
      const decision = limiter.take(key);
      if (!decision.allowed) {
        metrics.rateLimited(name);
        audit.write("ratelimit.hit", {
          reason: name,
          ip: c.var.clientIP,
          path: c.req.path,
          requestId: c.var.requestId,
          ...(c.var.session ? { sessionId: c.var.session.id } : {}),
        });
        refuse(429, "rate_limited", "Too many requests; slow down.", { "retry-after": String(decision.retryAfterSeconds) });
      }
    }
    return next();
  };
}

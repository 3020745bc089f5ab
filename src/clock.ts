import { randomFillSync } from "node:crypto";

/** Milliseconds since the epoch. Injected wherever behaviour depends on time. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Cryptographically secure random bytes. Injected so tests can count or seed draws. */
export type RandomBytes = (length: number) => Buffer;

// Drawn from the CSPRNG 4 KiB at a time and handed out in copies, as Node does for
// randomUUID: one call into OpenSSL per few hundred tickets, masks and nonces instead of one
// each (issue 14). Every byte is handed out once; a copy never changes when the pool refills.
const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let poolOffset = POOL_BYTES;

export const secureRandomBytes: RandomBytes = (length) => {
  if (length > POOL_BYTES) return randomFillSync(Buffer.allocUnsafe(length));
  if (poolOffset + length > POOL_BYTES) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const bytes = Buffer.from(pool.subarray(poolOffset, poolOffset + length));
  poolOffset += length;
  return bytes;
};

/** A clock a test moves by hand. */
export class ManualClock implements Clock {
  constructor(private time: number = Date.UTC(2026, 0, 1)) {}

  now(): number {
    return this.time;
  }

  advance(ms: number): void {
    this.time += ms;
  }
}

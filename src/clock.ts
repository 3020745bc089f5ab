import { randomBytes as nodeRandomBytes } from "node:crypto";

/** Milliseconds since the epoch. Injected wherever behaviour depends on time. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Cryptographically secure random bytes. Injected so tests can count or seed draws. */
export type RandomBytes = (length: number) => Buffer;

export const secureRandomBytes: RandomBytes = (length) => nodeRandomBytes(length);

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

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock";
import { helperPlayer, loadHelper } from "../fixtures/socketio-helper";
import { startSocketIOStack, type SocketIOStack } from "../fixtures/socketio-stack";
import { until } from "../fixtures/wait";

/**
 * Real time for the whole stack: this test is about a real 60 Hz loop against the relay's
 * message rate (WS_MAX_MESSAGES_PER_SECOND 120, burst 240), timer jitter included, so the
 * relay's bucket must refill by the same clock the loop runs on.
 */
class WallClock extends ManualClock {
  override now(): number {
    return Date.now();
  }
}

const HZ = 60;
const SECONDS = 30;

describe("a 60 Hz game loop with binary payloads through Portcullis (issue 12)", () => {
  let stack: SocketIOStack;
  beforeAll(async () => {
    stack = await startSocketIOStack({ harness: { clock: new WallClock() } });
  });
  afterAll(() => stack.close());

  // Allowed to take its real 30 s (the soak); it runs in `npm test`, not in Chromium.
  it(`${HZ} events a second, each with a binary attachment (two WebSocket messages), for ${SECONDS} s: every ack, in order, intact; no close`, { timeout: (SECONDS + 30) * 1000 }, async () => {
    const connectSocketIO = await loadHelper();
    const { token } = await stack.h.login("loop-60hz");
    const p = helperPlayer(connectSocketIO, stack, token, { transports: ["websocket"] });
    await p.reached("connected");
    const settled = p.states.length;
    const acked: number[] = [];
    let corrupted = 0;
    const ticks = HZ * SECONDS;
    const started = performance.now();
    for (let i = 0; i < ticks; i += 1) {
      const payload = Buffer.alloc(64, i % 256);
      p.socket.emit("echo", i, payload, (args: [number, Buffer]) => {
        acked.push(args[0]);
        if (Buffer.compare(Buffer.from(args[1]), payload) !== 0) corrupted += 1;
      });
      // Drift-corrected: tick i + 1 is due at started + (i + 1) / HZ seconds.
      const due = started + ((i + 1) * 1000) / HZ;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - performance.now())));
    }
    await until(() => acked.length === ticks, "the last acks", 5_000);
    expect(acked).toEqual(Array.from({ length: ticks }, (_, i) => i));
    expect(corrupted).toBe(0);
    // Nothing happened to the connection: no state change, no rate-limit hit, no close.
    expect(p.states.slice(settled)).toEqual([]);
    expect(p.socket.connected).toBe(true);
    expect(stack.h.audit.named("ratelimit.hit")).toEqual([]);
    expect(stack.h.audit.events().filter((e) => e.event === "ws.closed" || e.event === "ws.upgrade.refused")).toEqual([]);
    p.socket.disconnect();
  });
});

import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "./fixtures/harness";
import { until } from "./fixtures/wait";

describe("/readyz does not turn into a flood at the game backend (issue 11)", () => {
  let h: Harness;
  let probes = 0;
  let held: ServerResponse[] = [];
  let hold = true;
  const backend = createServer((_req, res) => {
    probes += 1;
    if (hold) held.push(res);
    else res.end("ok");
  });
  const release = (): void => {
    hold = false;
    for (const res of held) res.end("ok");
    held = [];
  };
  let bffRequests = 0;

  beforeAll(async () => {
    await new Promise<void>((resolve) => backend.listen(0, "127.0.0.1", () => resolve()));
    h = await startHarness({ env: { GAME_BACKEND_URL: `http://127.0.0.1:${(backend.address() as AddressInfo).port}` } });
    h.bff.server.on("request", () => {
      bffRequests += 1;
    });
  });
  afterAll(async () => {
    release();
    await h.close();
    await new Promise<void>((resolve) => backend.close(() => resolve()));
  });

  it("answers 200 parallel calls with one probe, then one more once the clock passes the 2 s cache", async () => {
    // The backend holds its answer until all 200 calls have reached the BFF: every one of
    // them arrives while the first probe is still in flight, and must share it.
    const calls = Array.from({ length: 200 }, () => fetch(`${h.origin}/readyz`));
    await until(() => bffRequests >= 200 && probes >= 1, "200 /readyz calls at the BFF", 10_000);
    await new Promise((resolve) => setImmediate(resolve));
    expect(probes).toBe(1);
    release();
    const statuses = await Promise.all(calls.map(async (call) => (await call).status));
    expect(statuses.every((status) => status === 200)).toBe(true);
    expect(probes).toBe(1);

    // Within the cache: no probe at all.
    h.clock.advance(1_999);
    expect((await fetch(`${h.origin}/readyz`)).status).toBe(200);
    expect(probes).toBe(1);

    // Past it: exactly one more, shared again by parallel callers.
    h.clock.advance(1);
    const again = await Promise.all(Array.from({ length: 20 }, () => fetch(`${h.origin}/readyz`)));
    expect(again.every((response) => response.status === 200)).toBe(true);
    expect(probes).toBe(2);
  });
});

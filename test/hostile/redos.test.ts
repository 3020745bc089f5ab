import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";
import { rawUpgrade } from "../fixtures/ws-client";

/**
 * SECURITY.md I37 against a real server: a header built to make a backtracking pattern
 * explode (issue 11: `Connection: Upgrade, a<16,000 spaces>b` cost 200 ms of event loop per
 * request) costs no more than a plain header of the same size, and the upgrade rate limit
 * is taken before any header is parsed.
 *
 * The one comparative timing in the suite, as I37 names it: the CPU time of this process
 * (server and client alike) for pathological requests against plain ones of the same
 * size, each sent alone, interleaved, compared by median so that a GC pause or a busy
 * neighbour on the machine does not decide it. Before the fix the ratio was in the hundreds.
 */

const PADDING = 16_000;
const ROUNDS = 12;
const BOUND = 5;

function upgradeRequest(h: Harness, headers: Record<string, string>): string[] {
  const base: Record<string, string> = {
    "Host": new URL(h.origin).host,
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Protocol": "game.v1",
    ...headers,
  };
  return ["GET /ws HTTP/1.1", ...Object.entries(base).map(([name, value]) => `${name}: ${value}`)];
}

/** CPU microseconds (user + system) this process spent on one request, and its status line. */
async function costOf(h: Harness, lines: string[]): Promise<{ micros: number; status: string }> {
  const before = process.cpuUsage();
  const answer = await rawUpgrade(h, lines);
  const spent = process.cpuUsage(before);
  return { micros: spent.user + spent.system, status: answer.split("\r\n")[0] ?? "" };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

describe("pathological headers at the /ws gate (SECURITY.md I37)", () => {
  let h: Harness;
  beforeAll(async () => {
    // One trusted proxy hop, so that X-Forwarded-For is parsed at all.
    h = await startHarness({ env: { TRUST_PROXY: "1" } });
  });
  afterAll(async () => {
    await h.close();
  });

  // Each pair: the same header set, one with a value built to backtrack, one padded to the
  // same size with a harmless header, so both cost Node's parser the same.
  const pad = (size: number): Record<string, string> => ({ "X-Padding": "p".repeat(size) });
  const cases: [string, (h: Harness) => Record<string, string>, (h: Harness) => Record<string, string>][] = [
    ["Connection: Upgrade, a<spaces>b", () => ({ Connection: `Upgrade, a${" ".repeat(PADDING)}b` }), () => pad(PADDING + 2)],
    ["Connection: Upgrade, a<tabs>b", () => ({ Connection: `Upgrade, a${"\t".repeat(PADDING)}b` }), () => pad(PADDING + 2)],
    ["Connection: a run of spaces and commas", () => ({ Connection: `Upgrade,${" , ".repeat(PADDING / 3)}x` }), () => pad(PADDING)],
    ["Sec-WebSocket-Protocol: game.v1, <spaces>, x", () => ({ "Sec-WebSocket-Protocol": `game.v1,${" ".repeat(PADDING)},x` }), () => pad(PADDING + 10)],
    ["X-Forwarded-For: <spaces and commas>", () => ({ "X-Forwarded-For": `1.2.3.4${" , ".repeat(PADDING / 3)}5.6.7.8` }), () => pad(PADDING + 14)],
    // With an allowed Origin, so that the cookie is read; under the 8 KiB cookie cap.
    ["Cookie: <spaces and semicolons>", (h) => ({ Origin: h.origin, Cookie: `a=${" ; =".repeat(1_900)}__Host-Http-session=x` }), (h) => ({ Origin: h.origin, ...pad(7_625) })],
  ];

  it.each(cases)("%s costs no more than a plain header of the same size", async (_name, pathological, plain) => {
    const attack = upgradeRequest(h, pathological(h));
    const control = upgradeRequest(h, plain(h));
    expect(Math.abs(attack.join("").length - control.join("").length)).toBeLessThan(64);
    // Warm both paths (JIT, the first socket) before measuring.
    await costOf(h, control);
    await costOf(h, attack);
    const attackCosts: number[] = [];
    const controlCosts: number[] = [];
    const statuses = new Set<string>();
    for (let i = 0; i < ROUNDS; i += 1) {
      const a = await costOf(h, attack);
      const c = await costOf(h, control);
      attackCosts.push(a.micros);
      controlCosts.push(c.micros);
      statuses.add(a.status);
    }
    // Refused like any other request (never a 431: the header fits in Node's 16 KiB).
    expect([...statuses].every((s) => /^HTTP\/1\.1 4(0[0-9]|29) /.test(s)), [...statuses].join(", ")).toBe(true);
    const ratio = median(attackCosts) / Math.max(1, median(controlCosts));
    expect(ratio, `median CPU µs: pathological ${median(attackCosts)}, plain ${median(controlCosts)}`).toBeLessThan(BOUND);
  });
});

describe("the upgrade rate limit comes before any header parsing (SECURITY.md I37, H34)", () => {
  let h: Harness;
  const BURST = 5;
  beforeAll(async () => {
    h = await startHarness({ env: { RATE_LIMIT_UPGRADE: `1/s,${BURST}` } });
  });
  afterAll(async () => {
    await h.close();
  });

  it("refuses a malformed pathological upgrade, without cookie or Origin, with 429 once the burst is spent", async () => {
    // Malformed (no Sec-WebSocket-Key) on top of pathological: a gate that parsed headers
    // before taking a token would answer 400 forever, at whatever each parse costs.
    const lines = upgradeRequest(h, { "Connection": `Upgrade, a${" ".repeat(PADDING)}b`, "Sec-WebSocket-Key": "" });
    const statuses: string[] = [];
    for (let i = 0; i < BURST + 2; i += 1) {
      statuses.push(((await rawUpgrade(h, lines)).split("\r\n")[0] ?? "").slice(9, 12));
    }
    expect(statuses).toEqual([...Array<string>(BURST).fill("400"), "429", "429"]);
    // Refusals without a session are audited in aggregate (SECURITY.md I38): the first hit is
    // written at once, the second is counted in its window's summary line.
    expect(h.audit.named("ratelimit.hit")).toHaveLength(1);
    expect(h.audit.named("ws.upgrade.refused").at(-1)).toMatchObject({ status: 429, reason: "upgrade rate limit" });
  });
});

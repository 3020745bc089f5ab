/**
 * Issue 11 / SECURITY.md I37, measured: a few connections sending upgrade requests with a
 * pathological `Connection` header (`Upgrade, a<16,000 spaces>b`, no cookie, no ticket, no
 * Origin) in a loop, against a real Portcullis with a real identity provider, while this
 * thread asks /healthz. Prints /healthz latency p50/p99 with and without the attack.
 *
 *   npx tsx scripts/redos-attack.ts
 *
 * The attackers run in a worker thread, so their own work does not sit on the server's
 * event loop; /healthz is asked from the server's thread, so its latency is the event
 * loop's delay. Loopback only; bounded in time (REDOS_SECONDS, 5 s) and in requests
 * (REDOS_MAX_REQUESTS, 20,000). Two runs: the upgrade rate limit out of the way (what the
 * parsing itself costs) and at its default (2/s, burst 30) with the real clock.
 */
import { Worker } from "node:worker_threads";
import { systemClock } from "../src/clock";
import { startHarness } from "../test/fixtures/harness";

const SECONDS = Number(process.env.REDOS_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.REDOS_CONNECTIONS ?? 4);
const MAX_REQUESTS = Number(process.env.REDOS_MAX_REQUESTS ?? 20_000);
const SPACES = 16_000;

// Plain JavaScript, run with `eval`: a worker needs no TypeScript loader this way.
const ATTACKER = `
const { connect } = require("node:net");
const { workerData, parentPort } = require("node:worker_threads");
const { port, host, connections, deadline, maxRequests, request } = workerData;
let sent = 0;
const statuses = {};
function one() {
  return new Promise((resolve) => {
    const socket = connect(port, host, () => socket.write(request));
    let answer = "";
    socket.on("data", (d) => { answer += d.toString("latin1"); });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      const status = answer.slice(9, 12) || "closed";
      statuses[status] = (statuses[status] || 0) + 1;
      resolve();
    });
  });
}
async function loop() {
  while (Date.now() < deadline && sent < maxRequests) {
    sent += 1;
    await one();
  }
}
Promise.all(Array.from({ length: connections }, loop)).then(() => parentPort.postMessage({ sent, statuses }));
`;

interface Latency {
  count: number;
  mean: number;
  p50: number;
  p99: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN;
}

async function probe(url: string, until: number): Promise<Latency> {
  const samples: number[] = [];
  while (Date.now() < until) {
    const started = performance.now();
    const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    await response.arrayBuffer();
    samples.push(performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  samples.sort((a, b) => a - b);
  const mean = samples.reduce((sum, sample) => sum + sample, 0) / samples.length;
  return { count: samples.length, mean, p50: percentile(samples, 50), p99: percentile(samples, 99) };
}

async function scenario(name: string, env: Record<string, string>): Promise<void> {
  const h = await startHarness({ env, portcullis: { clock: systemClock } });
  try {
    const url = new URL(h.origin);
    const request =
      "GET /ws HTTP/1.1\r\n" +
      `Host: ${url.host}\r\n` +
      "Upgrade: websocket\r\n" +
      `Connection: Upgrade, a${" ".repeat(SPACES)}b\r\n` +
      "Sec-WebSocket-Version: 13\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
      "Sec-WebSocket-Protocol: game.v1\r\n\r\n";
    // Warm up, then the baseline: no attack.
    await probe(`${h.origin}/healthz`, Date.now() + 500);
    const quiet = await probe(`${h.origin}/healthz`, Date.now() + 2_000);

    const deadline = Date.now() + SECONDS * 1_000;
    const worker = new Worker(ATTACKER, {
      eval: true,
      workerData: { port: Number(url.port), host: url.hostname, connections: CONNECTIONS, deadline, maxRequests: MAX_REQUESTS, request },
    });
    const done = new Promise<{ sent: number; statuses: Record<string, number> }>((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
    });
    const attacked = await probe(`${h.origin}/healthz`, deadline);
    const result = await done;
    await worker.terminate();

    const ms = (value: number): string => `${value.toFixed(1)} ms`;
    console.log(`${name}`);
    console.log(`  /healthz, quiet:        p50 ${ms(quiet.p50)}  p99 ${ms(quiet.p99)}  mean ${ms(quiet.mean)}  (${quiet.count} requests)`);
    console.log(`  /healthz, under attack: p50 ${ms(attacked.p50)}  p99 ${ms(attacked.p99)}  mean ${ms(attacked.mean)}  (${attacked.count} requests)`);
    console.log(`  attack: ${CONNECTIONS} connections, ${result.sent} upgrade requests in ${SECONDS} s, answers ${JSON.stringify(result.statuses)}`);
  } finally {
    await h.close();
  }
}

await scenario("upgrade rate limit out of the way (1000/s, burst 100000): the parsing alone", { RATE_LIMIT_UPGRADE: "1000/s,100000" });
await scenario("upgrade rate limit at its default (2/s, burst 30)", { RATE_LIMIT_UPGRADE: "2/s,30" });
process.exit(0);

/**
 * Direct, nginx and Portcullis side by side: same machine, same run, same client
 * (issue 6). Starts the game backend, Portcullis and nginx, each in its own process, and a
 * load generator in a fourth; measures WebSocket throughput, added latency, connection
 * setup, authenticated /api requests, memory per idle socket, and how throughput and
 * latency grow with the connection count; writes a Markdown report and a gnuplot chart.
 *
 *   npm run bench                  full run (about 6 minutes)
 *   npm run bench -- --smoke       every measurement, briefly (CI; under a minute)
 *   … -- --out DIR                 write the report and chart to DIR instead of bench/results
 *   … -- --profile                 also write a CPU profile of the Portcullis process
 *                                  (node --cpu-prof) to DIR/profile/*.cpuprofile
 *   … -- --metrics                 run Portcullis with its Prometheus metrics on (METRICS_PORT),
 *                                  scraped every 5 s as a Prometheus server would (issue 16)
 *   … -- --only setup,http         run only these sections (memory, throughput, latency, setup,
 *                                  http, scaling, stores): for profiling one path; the other
 *                                  rows of the report stay empty
 *   … -- --no-postgres             skip the SQLite / PostgreSQL comparison (bench/stores.ts),
 *                                  which needs PostgreSQL (PORTCULLIS_TEST_DATABASE_URL, as
 *                                  the tests; 127.0.0.1:5432 by default)
 *
 * Exit status: 0 when every measurement produced a figure, 1 when the harness broke
 * (a process died, a scenario failed or timed out), 2 when the whole run overran its
 * deadline. No figure is ever compared with a target here.
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { drawChart, GNUPLOT_BINARY } from "./chart";
import { forkChild, HarnessError, LoadgenClient, stopChild, waitFor } from "./children";
import { NGINX_BINARY, nginxVersion, startNginx, type Nginx } from "./nginx";
import { readNumber, readString, TARGET_NAMES, type Result, type Scenario, type Target, type TargetName } from "./protocol";
import { median, renderReport, type Row, type ScalePoint } from "./report";
import { compareStores, ENGINES, stopStores, type StoreRow } from "./stores";
import { cpuMs, describeMachine, ensureTool, loadAverage, raiseFileLimit, rssKiB } from "./system";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "..");
const SMOKE = process.argv.includes("--smoke");
const outFlag = process.argv.indexOf("--out");
const OUT_DIR = outFlag !== -1 && process.argv[outFlag + 1] !== undefined ? resolve(process.argv[outFlag + 1] ?? "") : join(REPO, "bench", "results");
const PROFILE_DIR = process.argv.includes("--profile") ? join(OUT_DIR, "profile") : null;
const METRICS = process.argv.includes("--metrics");
const onlyFlag = process.argv.indexOf("--only");
const SECTIONS = ["memory", "throughput", "latency", "setup", "http", "scaling", "stores"] as const;
const ONLY = onlyFlag === -1 ? null : new Set((process.argv[onlyFlag + 1] ?? "").split(","));
for (const name of ONLY ?? []) {
  if (!(SECTIONS as readonly string[]).includes(name)) throw new Error(`--only takes a comma-separated list of: ${SECTIONS.join(", ")}`);
}
/** Whether `--only` (when given) names this section. */
function wanted(section: (typeof SECTIONS)[number]): boolean {
  return ONLY === null || ONLY.has(section);
}
const POSTGRES = !process.argv.includes("--no-postgres") && wanted("stores");

interface Plan {
  rounds: number;
  warmupMs: number;
  throughputMs: number;
  latencyMs: number;
  latencyRate: number;
  setupMs: number;
  setupParallel: number;
  httpMs: number;
  httpConcurrency: number;
  memory: number[];
  scaling: number[];
  scalingMs: number;
  fanoutSamples: number;
  /** Rounds of the SQLite/PostgreSQL comparison: its ratio moves most with the machine's load. */
  storeRounds: number;
  deadlineMs: number;
}

const PLAN: Plan = SMOKE
  ? { rounds: 1, warmupMs: 100, throughputMs: 300, latencyMs: 500, latencyRate: 500, setupMs: 300, setupParallel: 4, httpMs: 300, httpConcurrency: 8, memory: [20, 50], scaling: [1, 10], scalingMs: 300, fanoutSamples: 5, storeRounds: 1, deadlineMs: 180_000 }
  : { rounds: 2, warmupMs: 500, throughputMs: 3_000, latencyMs: 5_000, latencyRate: 1_000, setupMs: 3_000, setupParallel: 16, httpMs: 3_000, httpConcurrency: 32, memory: [1_000, 10_000], scaling: [1, 10, 100, 1_000], scalingMs: 2_000, fanoutSamples: 200, storeRounds: 5, deadlineMs: 30 * 60_000 };

// 10,000 proxied sockets are 20,000 descriptors in the proxy, plus a margin.
const WANTED_FILE_LIMIT = 65_536;
const CONNECTIONS = 64;
const SMALL = 100;
const LARGE = 16 * 1024;
const API_PATH = "/api/game/profile";

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}

function emptyRounds(): Record<TargetName, number[]> {
  return { direct: [], nginx: [], portcullis: [] };
}

/** A time budget for one scenario: its own duration plus generous room to open sockets. */
function budget(scenario: Scenario): number {
  const open = "connections" in scenario ? scenario.connections * 30 : 0;
  const run = "ms" in scenario ? scenario.ms + ("warmupMs" in scenario ? scenario.warmupMs : 0) : 0;
  return 30_000 + open + run * 2;
}

/**
 * Waits (at most 5 s) until the backend's one-way count stops moving. A proxy still holds
 * what it buffered when the load generator dropped a stream's sockets (Portcullis up to
 * 1 MiB per socket), and flushing it into the backend would otherwise land on the first
 * measurement of the next target.
 */
async function settle(statsURL: string): Promise<void> {
  const read = async (): Promise<number | null> => readNumber(await (await fetch(statsURL)).json(), "sunk");
  let last = await read();
  for (let check = 0; check < 25; check += 1) {
    await sleep(200);
    const now = await read();
    if (now === last) return;
    last = now;
  }
}

interface Stack {
  backend: ChildProcess;
  backendPid: number;
  portcullis: ChildProcess;
  portcullisPid: number;
  nginx: Nginx | null;
  loadgen: LoadgenClient;
  targets: Record<TargetName, Target | null>;
  statsURL: string;
}

const started: { children: ChildProcess[]; nginx: Nginx | null; portcullis: ChildProcess | null } = { children: [], nginx: null, portcullis: null };

async function startStack(fileLimit: number, notes: string[]): Promise<Stack> {
  const backend = forkChild("backend.ts", []);
  started.children.push(backend);
  const backendReady = await waitFor(backend, "ready", 30_000);
  const backendPort = readNumber(backendReady, "port");
  const backendPid = readNumber(backendReady, "pid");
  if (backendPort === null || backendPid === null) throw new HarnessError("the backend did not say its port");
  const backendURL = `http://127.0.0.1:${backendPort}`;

  // The key Portcullis signs identity assertions with; the load generator signs the
  // direct and nginx sockets' assertions with it too. 32 random bytes: an Ed25519 seed.
  const keyId = "bench";
  const seed = randomBytes(32).toString("base64");
  if (PROFILE_DIR !== null) {
    mkdirSync(PROFILE_DIR, { recursive: true });
    notes.push("Portcullis ran under the CPU profiler (`--profile`): its figures are lower than in a run without it.");
  }
  if (METRICS) notes.push("Portcullis ran with its Prometheus metrics on (`--metrics`), scraped every 5 s.");
  const portcullis = forkChild("portcullis.ts", [backendURL, keyId, seed, ...(METRICS ? ["--metrics"] : [])], { exposeGC: true, cpuProfileDir: PROFILE_DIR });
  started.portcullis = portcullis;
  const ready = await waitFor(portcullis, "ready", 60_000);
  const origin = readString(ready, "origin");
  const token = readString(ready, "token");
  const portcullisPid = readNumber(ready, "pid");
  const sub = readString(ready, "sub");
  const sid = readString(ready, "sid");
  const name = readString(ready, "name");
  if (origin === null || token === null || portcullisPid === null || sub === null || sid === null || name === null) {
    throw new HarnessError("Portcullis did not describe its session");
  }
  backend.send({ type: "trust", issuer: origin, jwksURL: `${origin}/.well-known/jwks.json` });
  await waitFor(backend, "trusted", 10_000);

  let nginx: Nginx | null = null;
  if (ensureTool(NGINX_BINARY, "nginx-light")) {
    nginx = await startNginx({ port: await freePort(), backendPort, fileLimit });
    started.nginx = nginx;
  } else {
    notes.push("nginx could not be installed: its column is empty.");
  }

  const loadgen = new LoadgenClient(forkChild("loadgen.ts", []));
  started.children.push(loadgen.child);
  await loadgen.send(
    {
      type: "init",
      credentials: { portcullisOrigin: origin, sessionToken: token, signingSeed: seed, signingKeyId: keyId, sub, sid, name, audience: backendURL },
    },
    10_000,
  );
  const ws = (url: string): string => `${url.replace(/^http/, "ws")}/ws`;
  return {
    backend,
    backendPid,
    portcullis,
    portcullisPid,
    nginx,
    loadgen,
    statsURL: `${backendURL}/stats`,
    targets: {
      direct: { name: "direct", wsURL: ws(backendURL), httpURL: backendURL },
      nginx: nginx === null ? null : { name: "nginx", wsURL: ws(nginx.url), httpURL: nginx.url },
      portcullis: { name: "portcullis", wsURL: ws(origin), httpURL: origin },
    },
  };
}

async function stopAll(): Promise<void> {
  // Under --cpu-prof, Node writes the profile as the process exits: give it time to.
  if (started.portcullis !== null) await stopChild(started.portcullis, { message: { type: "stop" }, graceMs: PROFILE_DIR === null ? 3_000 : 60_000 });
  await Promise.all(started.children.map((child) => stopChild(child)));
  await started.nginx?.stop();
  await stopStores();
}

async function main(): Promise<number> {
  const startedAt = new Date();
  const loadBefore = loadAverage();
  const notes: string[] = [];
  const failures: string[] = [];

  const limit = raiseFileLimit(WANTED_FILE_LIMIT);
  console.log(`open files: soft ${limit.soft}, hard ${limit.hard} (${limit.note})`);
  const hasGnuplot = ensureTool(GNUPLOT_BINARY, "gnuplot-nox");
  if (!hasGnuplot) notes.push("gnuplot could not be installed: no chart.");

  const stack = await startStack(limit.soft, notes);
  const { loadgen, targets } = stack;
  console.log(`targets: ${TARGET_NAMES.map((name) => `${name} ${targets[name]?.wsURL ?? "(none)"}`).join(", ")}`);

  /** The process whose CPU time a proxied operation costs (direct: none). */
  const proxyPid = (name: TargetName): number | null => (name === "portcullis" ? stack.portcullisPid : name === "nginx" ? (stack.nginx?.workerPid ?? null) : null);
  /** The CPU time (ms) the proxy used during each target's last scenario. */
  const proxyCpu: Record<TargetName, number | null> = { direct: null, nginx: null, portcullis: null };
  /** Runs one scenario; a failure is recorded and yields null, so one broken target does not end the run. */
  const attempt = async (label: string, name: TargetName, scenario: Scenario): Promise<Result | null> => {
    try {
      await settle(stack.statsURL);
      const pid = proxyPid(name);
      const cpuBefore = pid === null ? null : cpuMs(pid);
      const result = await loadgen.run(scenario, budget(scenario));
      const cpuAfter = pid === null ? null : cpuMs(pid);
      proxyCpu[name] = cpuBefore === null || cpuAfter === null ? null : cpuAfter - cpuBefore;
      if (result.count === 0 && scenario.kind !== "release") throw new HarnessError(`no ${scenario.kind} completed${result.firstError === undefined ? "" : `: ${result.firstError}`}`);
      if (result.errors > 0) console.log(`  ${label} / ${name}: ${result.errors} errors (${result.firstError ?? "?"})`);
      return result;
    } catch (error) {
      const message = `${label} / ${name}: ${error instanceof Error ? error.message : String(error)}`;
      console.error(`  FAILED ${message}`);
      failures.push(message);
      return null;
    }
  };

  const rows: Row[] = [];
  const row = (label: string, better: Row["better"], options: { noDirect?: boolean } = {}): Row => {
    const created: Row = { label, better, rounds: emptyRounds(), ...options };
    rows.push(created);
    return created;
  };
  const each = async (make: (target: Target) => Scenario, record: (name: TargetName, result: Result) => void, label: string): Promise<void> => {
    for (const name of TARGET_NAMES) {
      const target = targets[name];
      if (target === null) continue;
      const result = await attempt(label, name, make(target));
      if (result !== null) record(name, result);
    }
  };
  const push = (target: Row, name: TargetName, value: number | undefined): void => {
    if (value !== undefined) target.rounds[name].push(value);
  };
  /** The proxy's CPU µs per completed operation in the scenario just run for `name`. */
  const pushCpu = (target: Row, name: TargetName, result: Result): void => {
    const used = proxyCpu[name];
    if (used !== null && result.count > 0) push(target, name, (used * 1000) / result.count);
  };

  // (1) throughput, (2) latency, (3) setup, (4) HTTP: rounds interleave the targets, so a
  // burst of load from elsewhere on the machine falls on all three rather than on one.
  const tput = {
    echoSmall: row(`WS echo round trips/s, ${SMALL} B, ${CONNECTIONS} connections, 8 in flight each`, "higher"),
    streamSmall: row(`WS one-way messages/s (client → backend), ${SMALL} B, ${CONNECTIONS} connections`, "higher"),
    echoLarge: row(`WS echo round trips/s, 16 KiB, ${CONNECTIONS} connections, 2 in flight each`, "higher"),
    streamLarge: row(`WS one-way messages/s (client → backend), 16 KiB, ${CONNECTIONS} connections`, "higher"),
  };
  const lat = {
    p50: row(`RTT p50 (ms), ${SMALL} B at ${PLAN.latencyRate.toLocaleString("en-US")} msg/s over 10 connections`, "lower"),
    p99: row(`RTT p99 (ms), same`, "lower"),
    p999: row(`RTT p99.9 (ms), same`, "lower"),
    // What the proxy adds to a direct round trip, taken round by round (the targets are
    // interleaved within a round, so both figures saw the same machine).
    addedP50: row(`RTT p50 added over direct (ms), same`, "lower", { noDirect: true }),
  };
  const setupRow = row(`connection setups/s, ${PLAN.setupParallel} in parallel (Portcullis: ticket request + upgrade; others: upgrade)`, "higher");
  const setupCpuRow = row("proxy CPU µs per connection setup (its process's user + system time / setups)", "lower", { noDirect: true });
  const http = {
    rate: row(`GET ${API_PATH} requests/s, ${PLAN.httpConcurrency} concurrent, keep-alive`, "higher"),
    p99: row(`GET ${API_PATH} p99 (ms)`, "lower"),
    cpu: row(`proxy CPU µs per GET ${API_PATH}`, "lower", { noDirect: true }),
  };
  const w = PLAN.warmupMs;
  const t = PLAN.throughputMs;

  // (5) memory: RSS growth of the proxy process per idle proxied socket (both of its
  // sockets), measured first, on processes that have only been warmed up: after the
  // throughput runs, freed buffers shrink the heap while sockets are being added, and the
  // delta can come out negative. Sockets are added step by step (1,000, then up to
  // 10,000) rather than closed and reopened, since memory returned to the allocator would
  // be reused and hide the cost. Portcullis collects garbage before each reading so the
  // delta is live memory.
  const gcPortcullis = async (): Promise<void> => {
    stack.portcullis.send({ type: "gc" });
    await waitFor(stack.portcullis, "gc-done", 10_000);
  };
  // Each proxied socket costs the proxy two descriptors; keep a margin for everything else.
  const capacity = Math.floor((limit.soft - 512) / 2);
  const steps = PLAN.memory.map((requested) => ({ requested, count: Math.min(requested, capacity) }));
  if (!wanted("memory")) steps.length = 0;
  for (const { requested, count } of steps) {
    if (count < requested) notes.push(`Memory at ${requested.toLocaleString("en-US")} sockets was measured with ${count.toLocaleString("en-US")}: the open-files limit (${limit.soft}) allows no more through a proxy.`);
  }
  const memoryRows = steps.map(({ count }) => row(`RSS per idle proxied connection (KiB), ${count.toLocaleString("en-US")} open`, "lower", { noDirect: true }));
  if (SMOKE) {
    // A few dozen sockets move RSS less than the allocator's own noise: the smoke run only
    // proves the measurement runs, and its memory figures (negative ones included) mean nothing.
    notes.push("Smoke run: memory is measured with a few dozen sockets, below what RSS can resolve; its memory figures (even negative ones) are noise, not measurements.");
  }
  // The first step also pays for one-off growth (heap and allocator pages that a burst of
  // handshakes needs and RSS keeps); the slope between steps is what one more idle
  // connection costs.
  const marginalRows = steps.slice(1).map(({ count }, index) =>
    row(`RSS per added idle connection (KiB), from ${(steps[index]?.count ?? 0).toLocaleString("en-US")} to ${count.toLocaleString("en-US")} open`, "lower", { noDirect: true }),
  );
  const backendGrowth: string[] = [];
  await each((target) => ({ kind: "echo", target, connections: CONNECTIONS, size: SMALL, window: 8, warmupMs: 0, ms: PLAN.warmupMs }), () => undefined, "warm-up");
  for (const name of TARGET_NAMES) {
    const target = targets[name];
    if (target === null) continue;
    // Direct has no proxy: the backend's own growth goes to a note instead.
    const pid = name === "portcullis" ? stack.portcullisPid : name === "nginx" ? (stack.nginx?.workerPid ?? 0) : stack.backendPid;
    if (name === "portcullis") await gcPortcullis();
    await sleep(300);
    const before = rssKiB(pid);
    let open = 0;
    let previous = before;
    for (const [index, { count }] of steps.entries()) {
      const held = await attempt(`memory ${count}`, name, { kind: "hold", target, connections: count - open });
      if (held === null) break;
      open = count;
      await sleep(SMOKE ? 200 : 1_000);
      if (name === "portcullis") await gcPortcullis();
      const after = rssKiB(pid);
      if (before === null || after === null) continue;
      const perConnection = (after - before) / count;
      const marginal = index > 0 && previous !== null ? (after - previous) / (count - (steps[index - 1]?.count ?? 0)) : undefined;
      previous = after;
      if (name === "direct") {
        backendGrowth.push(`${perConnection.toFixed(2)} KiB per socket at ${count.toLocaleString("en-US")}${marginal === undefined ? "" : ` (${marginal.toFixed(2)} KiB per added socket)`}`);
      } else {
        memoryRows[index]?.rounds[name].push(perConnection);
        if (marginal !== undefined) marginalRows[index - 1]?.rounds[name].push(marginal);
      }
    }
    await attempt("memory release", name, { kind: "release" });
    // Let the proxy see the closes before the next target's baseline.
    await sleep(SMOKE ? 200 : 2_000);
  }
  if (backendGrowth.length > 0) notes.push(`With no proxy, the game backend itself grew by ${backendGrowth.join(", ")}.`);
  console.log("memory done");

  for (let round = 1; round <= PLAN.rounds; round += 1) {
    console.log(`round ${round} of ${PLAN.rounds}`);
    if (wanted("throughput")) {
      await each((target) => ({ kind: "echo", target, connections: CONNECTIONS, size: SMALL, window: 8, warmupMs: w, ms: t }), (n, r) => push(tput.echoSmall, n, r.perSecond), "echo 100 B");
      await each((target) => ({ kind: "stream", target, connections: CONNECTIONS, size: SMALL, warmupMs: w, ms: t, statsURL: stack.statsURL }), (n, r) => push(tput.streamSmall, n, r.perSecond), "stream 100 B");
      await each((target) => ({ kind: "echo", target, connections: CONNECTIONS, size: LARGE, window: 2, warmupMs: w, ms: t }), (n, r) => push(tput.echoLarge, n, r.perSecond), "echo 16 KiB");
      await each((target) => ({ kind: "stream", target, connections: CONNECTIONS, size: LARGE, warmupMs: w, ms: t, statsURL: stack.statsURL }), (n, r) => push(tput.streamLarge, n, r.perSecond), "stream 16 KiB");
      console.log("  throughput done");
    }
    if (wanted("latency")) {
      await each(
        (target) => ({ kind: "latency", target, connections: 10, totalRate: PLAN.latencyRate, warmupMs: w, ms: PLAN.latencyMs }),
        (n, r) => {
          const direct = lat.p50.rounds.direct.at(-1);
          if (n !== "direct" && r.p50 !== undefined && direct !== undefined) push(lat.addedP50, n, r.p50 - direct);
          push(lat.p50, n, r.p50);
          push(lat.p99, n, r.p99);
          push(lat.p999, n, r.p999);
        },
        "latency",
      );
      console.log("  latency done");
    }
    if (wanted("setup")) {
      await each((target) => ({ kind: "setup", target, parallel: PLAN.setupParallel, ms: PLAN.setupMs }), (n, r) => {
        push(setupRow, n, r.perSecond);
        pushCpu(setupCpuRow, n, r);
      }, "setup");
      console.log("  setup done");
    }
    if (wanted("http")) {
      await each(
        (target) => ({ kind: "http", target, concurrency: PLAN.httpConcurrency, path: API_PATH, ms: PLAN.httpMs }),
        (n, r) => {
          push(http.rate, n, r.perSecond);
          push(http.p99, n, r.p99);
          pushCpu(http.cpu, n, r);
        },
        "http",
      );
      console.log("  http done");
    }
  }

  // (6) how throughput and latency grow from 1 to 1,000 connections.
  const scaling: ScalePoint[] = [];
  /** Portcullis's event-loop delay during each latency run of the scaling table. */
  const loopDelays: string[] = [];
  const loopDelay = async (): Promise<{ p99: number; max: number } | null> => {
    stack.portcullis.send({ type: "loop-delay" });
    const answer = await waitFor(stack.portcullis, "loop-delay", 10_000);
    const p99 = readNumber(answer, "p99");
    const max = readNumber(answer, "max");
    return p99 === null || max === null ? null : { p99, max };
  };
  for (const connections of wanted("scaling") ? PLAN.scaling : []) {
    const point: ScalePoint = { connections, values: { direct: {}, nginx: {}, portcullis: {} } };
    for (const name of TARGET_NAMES) {
      const target = targets[name];
      if (target === null) continue;
      const echo = await attempt(`scaling echo ${connections}`, name, { kind: "echo", target, connections, size: SMALL, window: 4, warmupMs: w, ms: PLAN.scalingMs });
      if (name === "portcullis") await loopDelay();
      const latency = await attempt(`scaling latency ${connections}`, name, { kind: "latency", target, connections, totalRate: PLAN.latencyRate, warmupMs: w, ms: PLAN.scalingMs });
      if (name === "portcullis") {
        const delay = await loopDelay();
        if (delay !== null) loopDelays.push(`${connections.toLocaleString("en-US")}: p99 ${delay.p99.toFixed(1)} ms, max ${delay.max.toFixed(1)} ms`);
      }
      const values = point.values[name];
      if (echo?.perSecond !== undefined) values.throughput = echo.perSecond;
      if (latency?.p50 !== undefined) values.p50 = latency.p50;
      if (latency?.p99 !== undefined) values.p99 = latency.p99;
    }
    scaling.push(point);
    console.log(`scaling ${connections} done`);
  }

  if (loopDelays.length > 0) notes.push(`Portcullis's event-loop delay during the scaling table's latency runs (monitorEventLoopDelay), by connections: ${loopDelays.join("; ")}.`);

  // (7) SQLite beside PostgreSQL: setups, /api, and the revocation fan-out across nodes.
  let stores: StoreRow[] | undefined;
  if (POSTGRES) {
    console.log("stores: SQLite and PostgreSQL");
    const comparison = await compareStores(
      loadgen,
      { rounds: PLAN.storeRounds, warmupMs: PLAN.warmupMs, setupMs: PLAN.setupMs, setupParallel: PLAN.setupParallel, httpMs: PLAN.httpMs, httpConcurrency: PLAN.httpConcurrency, apiPath: API_PATH, fanoutSamples: PLAN.fanoutSamples },
      budget,
      (line) => console.log(line),
    );
    stores = comparison.rows;
    notes.push(...comparison.notes);
    for (const failure of comparison.failures) {
      console.error(`  FAILED ${failure}`);
      failures.push(failure);
    }
    for (const r of stores) {
      if (ENGINES.every((engine) => median(r.values[engine]) === undefined)) failures.push(`no figure at all for "${r.label}"`);
    }
    console.log("stores done");
  }

  for (const line of stack.nginx?.problems() ?? []) notes.push(`nginx error.log: \`${line}\``);
  await stopAll();
  if (PROFILE_DIR !== null) {
    // Node names the file CPU.<date>.<time>.<pid>.<thread>.<sequence>.cpuprofile; thread 0
    // is Portcullis, the other one tsx's module-loader thread (also profiled, nearly idle).
    const profile = readdirSync(PROFILE_DIR).find((file) => file.includes(`.${stack.portcullisPid}.0.`) && file.endsWith(".cpuprofile"));
    if (profile === undefined) failures.push(`profile: Portcullis (pid ${stack.portcullisPid}) wrote no .cpuprofile to ${relative(process.cwd(), PROFILE_DIR)}`);
    else console.log(`Portcullis CPU profile: ${relative(process.cwd(), join(PROFILE_DIR, profile))} (open it in Chrome DevTools or speedscope)`);
  }

  const lifecycle = process.env.npm_lifecycle_event;
  const args = process.argv.slice(2).join(" ");
  const command = lifecycle === undefined ? `node --import tsx bench/main.ts${args === "" ? "" : ` ${args}`}` : `npm run ${lifecycle}${args === "" ? "" : ` -- ${args}`}`;
  const markdown = renderReport(rows, scaling, {
    machine: describeMachine(stack.nginx?.version ?? (ensureTool(NGINX_BINARY, "nginx-light") ? `nginx ${nginxVersion()}` : "no nginx")),
    command,
    startedAt,
    durationSeconds: (Date.now() - startedAt.getTime()) / 1000,
    loadBefore,
    loadAfter: loadAverage(),
    fileLimit: `soft ${limit.soft}, hard ${limit.hard} — ${limit.note}`,
    rounds: PLAN.rounds,
    latencyRate: PLAN.latencyRate,
    notes,
    failures,
    ...(stores === undefined ? {} : { stores }),
  });
  mkdirSync(OUT_DIR, { recursive: true });
  const reportPath = join(OUT_DIR, SMOKE ? "smoke.md" : "latest.md");
  writeFileSync(reportPath, markdown);
  console.log(`\n${markdown}`);
  console.log(`report: ${relative(process.cwd(), reportPath)}`);
  if (hasGnuplot && scaling.length > 0) {
    const chartPath = join(OUT_DIR, SMOKE ? "smoke.png" : "chart.png");
    try {
      drawChart(scaling, chartPath, PLAN.latencyRate, `${describeMachine(stack.nginx?.version ?? "no nginx")}; ${startedAt.toISOString().slice(0, 16)}Z`);
      console.log(`chart: ${relative(process.cwd(), chartPath)}`);
    } catch (error) {
      failures.push(`chart: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  const missing = rows.filter((r) => TARGET_NAMES.every((name) => median(r.rounds[name]) === undefined));
  // Under --only, the rows of the sections not run have no figures by design.
  if (ONLY === null) for (const r of missing) failures.push(`no figure at all for "${r.label}"`);
  if (failures.length > 0) console.error(`the harness broke in ${failures.length} place(s)`);
  return failures.length > 0 ? 1 : 0;
}

const deadline = setTimeout(() => {
  console.error(`the run overran its ${PLAN.deadlineMs / 1000} s deadline`);
  void stopAll().finally(() => process.exit(2));
}, PLAN.deadlineMs);

main()
  .then((code) => {
    clearTimeout(deadline);
    // Exit explicitly: a keep-alive socket left in the orchestrator must not hold CI.
    process.exit(code);
  })
  .catch(async (error: unknown) => {
    clearTimeout(deadline);
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    await stopAll();
    process.exit(1);
  });

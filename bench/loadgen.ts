/**
 * The load generator, in its own process (one core of two; the proxy under test gets the
 * other). The same code drives direct, nginx and Portcullis; only how a socket passes the
 * target's gate differs (see {@link Credentials}). Scenarios arrive over IPC, one at a
 * time; each is bounded in time, and every wait in it has a deadline.
 */
import { Agent, request } from "node:http";
import { WebSocket } from "ws";
import { secureRandomBytes, systemClock } from "../src/clock";
import { AssertionSigner } from "../src/proxy/assertion";
import { isRecord, isTargetName, readNumber, readString, type Credentials, type LoadgenReply, type Result, type Scenario, type Target } from "./protocol";

const SESSION_COOKIE = "__Host-Http-session";
const ECHO_MARK = 0x45; // "E": echoed by the backend
const SINK_MARK = 0x53; // "S": counted and dropped by the backend
const LATENCY_MARK = 0x4c; // "L": echoed; carries its send time at offset 1
const HANDSHAKE_TIMEOUT_MS = 10_000;
// Portcullis refuses more than 1,000 upgrades in progress (src/ws/gate.ts); stay well below.
const OPEN_BATCH = 200;
// A writer stops filling a socket past this, so a one-way stream measures the path, not
// how much the client can queue in its own memory.
const STREAM_HIGH_WATER = 256 * 1024;

let credentials: Credentials | null = null;
let signer: AssertionSigner | null = null;
const held: WebSocket[] = [];

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function need(): { credentials: Credentials; signer: AssertionSigner } {
  if (credentials === null || signer === null) throw new Error("the load generator has no credentials yet");
  return { credentials, signer };
}

/** `Authorization` for direct and nginx: the assertion Portcullis would have sent, signed here. */
function assertionHeader(): string {
  const { credentials: c, signer: s } = need();
  return `Bearer ${s.sign({ sub: c.sub, sid: c.sid, name: c.name, aud: c.audience })}`;
}

/**
 * Headers of an authenticated `/api/*` request through Portcullis (CONTRACT.md: session +
 * CSRF), as player number `player` (of `sessionTokens`, when there are several).
 */
function portcullisHeaders(player = 0): Record<string, string> {
  const { credentials: c } = need();
  const tokens = c.sessionTokens ?? [c.sessionToken];
  return { cookie: `${SESSION_COOKIE}=${tokens[player % tokens.length] ?? c.sessionToken}`, "x-csrf": "1", origin: c.portcullisOrigin };
}

const httpAgent = new Agent({ keepAlive: true, maxSockets: 256 });

interface HTTPAnswer {
  status: number;
  body: Buffer;
}

function httpRequest(url: string, method: string, headers: Record<string, string>, agent: Agent = httpAgent): Promise<HTTPAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent, timeout: HANDSHAKE_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

/** One ticket from `POST /auth/ws-ticket`: part of every Portcullis connection's setup cost. */
async function ticket(player: number): Promise<string> {
  const { credentials: c } = need();
  const answer = await httpRequest(`${c.authURL ?? c.portcullisOrigin}/auth/ws-ticket`, "POST", portcullisHeaders(player));
  const body: unknown = answer.status === 200 ? JSON.parse(answer.body.toString("utf8")) : null;
  const value = readString(body, "ticket");
  if (value === null) throw new Error(`POST /auth/ws-ticket answered ${answer.status}`);
  return value;
}

/** Opens one socket through the target's gate (as `player`, on Portcullis); rejects on any refusal or after 10 s. */
async function open(target: Target, player = 0): Promise<WebSocket> {
  const protocols = ["game.v1"];
  let headers: Record<string, string>;
  if (target.name === "portcullis") {
    protocols.push(`ticket.${await ticket(player)}`);
    headers = portcullisHeaders(player);
    delete headers["x-csrf"];
  } else {
    headers = { authorization: assertionHeader() };
  }
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(target.wsURL, protocols, {
      headers,
      perMessageDeflate: false,
      maxPayload: 1 << 20,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    });
    ws.once("open", () => {
      ws.removeAllListeners("error");
      // A socket that fails later is counted by the scenario through a missing reply.
      ws.on("error", () => undefined);
      resolve(ws);
    });
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => {
      ws.terminate();
      reject(new Error(`upgrade answered ${res.statusCode ?? 0}`));
    });
  });
}

/** Opens `count` sockets, at most {@link OPEN_BATCH} handshakes at a time; all or nothing. */
async function openMany(target: Target, count: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  try {
    for (let done = 0; done < count; done += OPEN_BATCH) {
      const batch = Math.min(OPEN_BATCH, count - done);
      const settled = await Promise.allSettled(Array.from({ length: batch }, () => open(target)));
      for (const outcome of settled) if (outcome.status === "fulfilled") sockets.push(outcome.value);
      const failure = settled.find((outcome): outcome is PromiseRejectedResult => outcome.status === "rejected");
      if (failure !== undefined) {
        throw new Error(`opening ${count} sockets to ${target.name}: ${failure.reason instanceof Error ? failure.reason.message : String(failure.reason)}`);
      }
    }
  } catch (error) {
    for (const ws of sockets) ws.terminate();
    throw error;
  }
  return sockets;
}

function closeAll(sockets: WebSocket[]): void {
  for (const ws of sockets) ws.terminate();
}

function percentile(sorted: Float64Array, p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

function latencyResult(samples: number[], errors: number, firstError?: string): Result {
  const sorted = Float64Array.from(samples).sort();
  const result: Result = { count: sorted.length, errors };
  const p50 = percentile(sorted, 0.5);
  const p99 = percentile(sorted, 0.99);
  const p999 = percentile(sorted, 0.999);
  if (p50 !== undefined) result.p50 = p50;
  if (p99 !== undefined) result.p99 = p99;
  if (p999 !== undefined) result.p999 = p999;
  if (firstError !== undefined) result.firstError = firstError;
  return result;
}

/** Closed loop: each socket keeps `window` echoes in flight; counts round trips. */
async function echo(s: Extract<Scenario, { kind: "echo" }>): Promise<Result> {
  const sockets = await openMany(s.target, s.connections);
  const payload = Buffer.alloc(s.size, ECHO_MARK);
  let received = 0;
  for (const ws of sockets) {
    ws.on("message", () => {
      received += 1;
      ws.send(payload, { binary: true });
    });
    for (let i = 0; i < s.window; i += 1) ws.send(payload, { binary: true });
  }
  await sleep(s.warmupMs);
  const before = received;
  const started = performance.now();
  await sleep(s.ms);
  const count = received - before;
  const elapsed = (performance.now() - started) / 1000;
  closeAll(sockets);
  return { perSecond: count / elapsed, count, errors: 0 };
}

async function sunkCount(statsURL: string): Promise<number> {
  const answer = await httpRequest(statsURL, "GET", {});
  const sunk = readNumber(JSON.parse(answer.body.toString("utf8")), "sunk");
  if (sunk === null) throw new Error(`${statsURL} did not answer a count`);
  return sunk;
}

/**
 * One way, client to backend, as fast as each socket drains; the backend counts what
 * arrives. Both counts are read while the streams run, so what is still in flight at the
 * end is not credited.
 */
async function stream(s: Extract<Scenario, { kind: "stream" }>): Promise<Result> {
  const sockets = await openMany(s.target, s.connections);
  const payload = Buffer.alloc(s.size, SINK_MARK);
  let running = true;
  const pump = (ws: WebSocket): void => {
    // A bounded batch per turn: when the kernel takes every write at once, bufferedAmount
    // never rises, and an unbounded loop would never let the timers run.
    for (let batch = 0; running && batch < 32 && ws.bufferedAmount < STREAM_HIGH_WATER; batch += 1) {
      ws.send(payload, { binary: true });
    }
    if (running) setImmediate(pump, ws);
  };
  for (const ws of sockets) pump(ws);
  try {
    await sleep(s.warmupMs);
    const before = await sunkCount(s.statsURL);
    const started = performance.now();
    await sleep(s.ms);
    const after = await sunkCount(s.statsURL);
    const elapsed = (performance.now() - started) / 1000;
    return { perSecond: (after - before) / elapsed, count: after - before, errors: 0 };
  } finally {
    running = false;
    closeAll(sockets);
  }
}

/**
 * Open loop at a fixed total rate, spread round-robin over the sockets: round-trip time of
 * 100-byte messages that carry their send time. A paced sender measures the added latency
 * at a moderate load instead of the queueing of a saturated one.
 */
async function latency(s: Extract<Scenario, { kind: "latency" }>): Promise<Result> {
  const sockets = await openMany(s.target, s.connections);
  const samples: number[] = [];
  const started = performance.now();
  const measureFrom = started + s.warmupMs;
  const stopAt = measureFrom + s.ms;
  let sent = 0;
  for (const ws of sockets) {
    ws.on("message", (data: Buffer) => {
      if (data.length < 9 || data[0] !== LATENCY_MARK) return;
      const sentAt = data.readDoubleLE(1);
      if (sentAt >= measureFrom) samples.push(performance.now() - sentAt);
    });
  }
  await new Promise<void>((resolve) => {
    const pacer = setInterval(() => {
      const now = performance.now();
      if (now >= stopAt) {
        clearInterval(pacer);
        resolve();
        return;
      }
      // Catch up on what the timer's coarseness delayed, but never more than a short burst.
      const due = Math.floor(((now - started) / 1000) * s.totalRate);
      for (let burst = 0; sent < due && burst < 100; burst += 1) {
        const payload = Buffer.alloc(100, LATENCY_MARK);
        payload.writeDoubleLE(performance.now(), 1);
        sockets[sent % sockets.length]?.send(payload, { binary: true });
        sent += 1;
      }
    }, 1);
  });
  await sleep(Math.min(1_000, 100 + s.ms / 10)); // the last answers
  closeAll(sockets);
  const expected = Math.floor((s.ms / 1000) * s.totalRate);
  // Answers missing at the end (beyond 1 %, allowing for the pacer's edges) are errors.
  const missing = Math.max(0, expected - samples.length - Math.ceil(expected / 100));
  return latencyResult(samples, missing, missing > 0 ? `${missing} of ${expected} answers missing` : undefined);
}

/** Upgrades per second, each socket opened and closed; Portcullis' include the ticket request. */
async function setup(s: Extract<Scenario, { kind: "setup" }>): Promise<Result> {
  let done = 0;
  let errors = 0;
  let firstError: string | undefined;
  const started = performance.now();
  const deadline = started + s.ms;
  await Promise.all(
    Array.from({ length: s.parallel }, async (_, player) => {
      while (performance.now() < deadline) {
        try {
          const ws = await open(s.target, player);
          done += 1;
          ws.close(1000);
        } catch (error) {
          errors += 1;
          firstError ??= error instanceof Error ? error.message : String(error);
          // A refusing target must not turn this into a busy loop.
          await sleep(10);
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const result: Result = { perSecond: done / elapsed, count: done, errors };
  if (firstError !== undefined) result.firstError = firstError;
  return result;
}

/** Closed-loop authenticated GETs over keep-alive connections, `concurrency` at a time. */
async function http(s: Extract<Scenario, { kind: "http" }>): Promise<Result> {
  const headersOf = (player: number): Record<string, string> =>
    s.target.name === "portcullis" ? portcullisHeaders(player) : { authorization: assertionHeader() };
  const agent = new Agent({ keepAlive: true, maxSockets: s.concurrency });
  const url = `${s.target.httpURL}${s.path}`;
  const times: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const started = performance.now();
  const deadline = started + s.ms;
  await Promise.all(
    Array.from({ length: s.concurrency }, async (_, player) => {
      const headers = headersOf(player);
      while (performance.now() < deadline) {
        const begun = performance.now();
        try {
          const answer = await httpRequest(url, "GET", headers, agent);
          if (answer.status === 200) times.push(performance.now() - begun);
          else throw new Error(`GET ${s.path} answered ${answer.status}`);
        } catch (error) {
          errors += 1;
          firstError ??= error instanceof Error ? error.message : String(error);
          await sleep(10);
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  return { ...latencyResult(times, errors, firstError), perSecond: times.length / elapsed };
}

async function run(scenario: Scenario): Promise<Result> {
  switch (scenario.kind) {
    case "echo":
      return echo(scenario);
    case "stream":
      return stream(scenario);
    case "latency":
      return latency(scenario);
    case "setup":
      return setup(scenario);
    case "http":
      return http(scenario);
    case "hold":
      held.push(...(await openMany(scenario.target, scenario.connections)));
      return { count: held.length, errors: 0 };
    case "release": {
      const count = held.length;
      closeAll(held.splice(0));
      return { count, errors: 0 };
    }
  }
}

function parseTarget(value: unknown): Target {
  const name = readString(value, "name");
  const wsURL = readString(value, "wsURL");
  const httpURL = readString(value, "httpURL");
  if (!isTargetName(name) || wsURL === null || httpURL === null) throw new Error("bad target");
  return { name, wsURL, httpURL };
}

function numberField(value: unknown, key: string): number {
  const field = readNumber(value, key);
  if (field === null) throw new Error(`scenario field ${key} missing`);
  return field;
}

function stringField(value: unknown, key: string): string {
  const field = readString(value, key);
  if (field === null) throw new Error(`scenario field ${key} missing`);
  return field;
}

/** Narrows a scenario from the orchestrator field by field; throws on anything else. */
function parseScenario(value: unknown): Scenario {
  const kind = readString(value, "kind");
  if (kind === "release") return { kind };
  const target = parseTarget(isRecord(value) ? value.target : undefined);
  const n = (key: string): number => numberField(value, key);
  switch (kind) {
    case "echo":
      return { kind, target, connections: n("connections"), size: n("size"), window: n("window"), warmupMs: n("warmupMs"), ms: n("ms") };
    case "stream":
      return { kind, target, connections: n("connections"), size: n("size"), warmupMs: n("warmupMs"), ms: n("ms"), statsURL: stringField(value, "statsURL") };
    case "latency":
      return { kind, target, connections: n("connections"), totalRate: n("totalRate"), warmupMs: n("warmupMs"), ms: n("ms") };
    case "setup":
      return { kind, target, parallel: n("parallel"), ms: n("ms") };
    case "http":
      return { kind, target, concurrency: n("concurrency"), path: stringField(value, "path"), ms: n("ms") };
    case "hold":
      return { kind, target, connections: n("connections") };
    default:
      throw new Error(`unknown scenario ${String(kind)}`);
  }
}

function parseCredentials(value: unknown): Credentials {
  const s = (key: string): string => stringField(value, key);
  const authURL = readString(value, "authURL");
  return {
    ...(authURL === null ? {} : { authURL }),
    portcullisOrigin: s("portcullisOrigin"),
    sessionToken: s("sessionToken"),
    ...sessionTokens(value),
    signingSeed: s("signingSeed"),
    signingKeyId: s("signingKeyId"),
    sub: s("sub"),
    sid: s("sid"),
    name: s("name"),
    audience: s("audience"),
  };
}

function reply(message: LoadgenReply): void {
  process.send?.(message);
}

process.on("message", (message: unknown) => {
  const id = readNumber(message, "id");
  if (id === null || !isRecord(message)) return;
  const handle = async (): Promise<Result> => {
    if (message.type === "init") {
      credentials = parseCredentials(message.credentials);
      signer = new AssertionSigner(
        [{ id: credentials.signingKeyId, key: Buffer.from(credentials.signingSeed, "base64") }],
        credentials.portcullisOrigin,
        systemClock,
        secureRandomBytes,
      );
      return { count: 0, errors: 0 };
    }
    return run(parseScenario(message.scenario));
  };
  handle().then(
    (result) => reply({ id, ok: true, result }),
    (error: unknown) => reply({ id, ok: false, error: error instanceof Error ? error.message : String(error) }),
  );
});
process.on("disconnect", () => process.exit(0));

/** The optional list of players' session tokens (the store comparison logs in several). */
function sessionTokens(value: unknown): { sessionTokens?: string[] } {
  const list = typeof value === "object" && value !== null && "sessionTokens" in value ? value.sessionTokens : undefined;
  if (list === undefined) return {};
  if (!Array.isArray(list) || list.length === 0 || !list.every((t): t is string => typeof t === "string")) throw new Error("sessionTokens must be a non-empty list of strings");
  return { sessionTokens: list };
}

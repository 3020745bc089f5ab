/**
 * The load generator, in its own process: the same code drives every target (direct,
 * nginx, Portcullis). Scenarios arrive over IPC; results go back the same way.
 */
import { WebSocket } from "ws";

export interface Target {
  name: string;
  /** `ws://host:port/ws` */
  wsURL: string;
  /** `http://host:port` for /api/game/profile */
  httpURL: string;
  /** Portcullis only: the BFF origin and a session token (tickets are fetched per socket). */
  portcullis?: { origin: string; token: string };
}

export type Scenario =
  | { kind: "echo"; target: Target; connections: number; size: number; window: number; ms: number }
  | { kind: "stream"; target: Target; connections: number; size: number; ms: number }
  | { kind: "latency"; target: Target; connections: number; ratePerConnection: number; ms: number }
  | { kind: "setup"; target: Target; parallel: number; ms: number }
  | { kind: "http"; target: Target; concurrency: number; ms: number }
  | { kind: "hold"; target: Target; connections: number }
  | { kind: "release" };

export interface Result {
  perSecond?: number;
  p50?: number;
  p99?: number;
  p999?: number;
  errors: number;
}

const held: WebSocket[] = [];

async function open(target: Target): Promise<WebSocket> {
  const headers: Record<string, string> = {};
  const protocols = ["game.v1"];
  if (target.portcullis) {
    const { origin, token } = target.portcullis;
    const response = await fetch(`${origin}/auth/ws-ticket`, {
      method: "POST",
      headers: { cookie: `__Host-Http-session=${token}`, "x-csrf": "1", origin },
    });
    if (response.status !== 200) throw new Error(`ticket ${response.status}`);
    const { ticket } = (await response.json()) as { ticket: string };
    protocols.push(`ticket.${ticket}`);
    headers.origin = origin;
    headers.cookie = `__Host-Http-session=${token}`;
  }
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(target.wsURL, protocols, { headers, perMessageDeflate: false, maxPayload: 1 << 20 });
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade ${res.statusCode}`)));
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN;
}

async function openMany(target: Target, count: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  for (let i = 0; i < count; i += 50) {
    sockets.push(...(await Promise.all(Array.from({ length: Math.min(50, count - i) }, () => open(target)))));
  }
  return sockets;
}

/** Closed-loop echo: each connection keeps `window` messages in flight. */
async function echo(s: Extract<Scenario, { kind: "echo" }>): Promise<Result> {
  const sockets = await openMany(s.target, s.connections);
  const payload = Buffer.alloc(s.size, 97);
  let received = 0;
  let measuring = false;
  for (const ws of sockets) {
    ws.on("message", () => {
      if (measuring) received += 1;
      ws.send(payload, { binary: true });
    });
  }
  for (const ws of sockets) for (let i = 0; i < s.window; i += 1) ws.send(payload, { binary: true });
  await sleep(300); // warm-up
  measuring = true;
  const started = performance.now();
  await sleep(s.ms);
  measuring = false;
  const elapsed = (performance.now() - started) / 1000;
  for (const ws of sockets) ws.terminate();
  return { perSecond: received / elapsed, errors: 0 };
}

/** One-way: the client writes as fast as the socket drains; the backend counts. */
async function stream(s: Extract<Scenario, { kind: "stream" }>, statsURL: string): Promise<Result> {
  // Messages starting with "S" are counted by the backend, not echoed.
  const sockets = await openMany(s.target, s.connections);
  const payload = Buffer.alloc(s.size, 0x53);
  let sent = 0;
  let running = true;
  const pump = (ws: WebSocket): void => {
    // A bounded batch per turn: when the kernel takes every write at once, bufferedAmount
    // never rises and an unbounded loop would never let the timer end the run.
    for (let batch = 0; running && batch < 64 && ws.bufferedAmount < 256 * 1024; batch += 1) {
      ws.send(payload, { binary: true });
      sent += 1;
    }
    if (running) setImmediate(() => pump(ws));
  };
  const before = await sunk(statsURL);
  const started = performance.now();
  for (const ws of sockets) pump(ws);
  await sleep(s.ms);
  running = false;
  const elapsed = (performance.now() - started) / 1000;
  for (const ws of sockets) ws.terminate();
  await sleep(300); // let what is in flight land
  const after = await sunk(statsURL);
  return { perSecond: (after - before) / elapsed, errors: sent < after - before ? 1 : 0 };
}

async function sunk(statsURL: string): Promise<number> {
  const body = (await (await fetch(statsURL)).json()) as { sunk: number };
  return body.sunk;
}

/** Open-loop latency at a fixed rate: RTT of 100-byte messages carrying their send time. */
async function latency(s: Extract<Scenario, { kind: "latency" }>): Promise<Result> {
  const sockets = await openMany(s.target, s.connections);
  const samples: number[] = [];
  for (const ws of sockets) {
    ws.on("message", (data: Buffer) => {
      samples.push(performance.now() - data.readDoubleLE(1));
    });
  }
  const payload = Buffer.alloc(100, 0x4c);
  const interval = 1000 / s.ratePerConnection;
  const timers = sockets.map((ws) =>
    setInterval(() => {
      payload.writeDoubleLE(performance.now(), 1);
      ws.send(payload, { binary: true });
    }, interval),
  );
  await sleep(s.ms);
  for (const timer of timers) clearInterval(timer);
  await sleep(100);
  for (const ws of sockets) ws.terminate();
  const sorted = samples.slice(Math.floor(samples.length * 0.05)).sort((a, b) => a - b); // drop warm-up
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), p999: percentile(sorted, 0.999), errors: 0 };
}

/** Upgrades per second, opening and closing; Portcullis' include the ticket request. */
async function setup(s: Extract<Scenario, { kind: "setup" }>): Promise<Result> {
  let done = 0;
  let errors = 0;
  const deadline = performance.now() + s.ms;
  await Promise.all(
    Array.from({ length: s.parallel }, async () => {
      while (performance.now() < deadline) {
        try {
          const ws = await open(s.target);
          done += 1;
          ws.terminate();
        } catch {
          errors += 1;
        }
      }
    }),
  );
  return { perSecond: done / (s.ms / 1000), errors };
}

async function http(s: Extract<Scenario, { kind: "http" }>): Promise<Result> {
  const headers: Record<string, string> = {};
  if (s.target.portcullis) {
    headers.cookie = `__Host-Http-session=${s.target.portcullis.token}`;
    headers["x-csrf"] = "1";
    headers.origin = s.target.portcullis.origin;
  }
  const url = `${s.target.httpURL}/api/game/profile`;
  const times: number[] = [];
  let errors = 0;
  const deadline = performance.now() + s.ms;
  await Promise.all(
    Array.from({ length: s.concurrency }, async () => {
      while (performance.now() < deadline) {
        const started = performance.now();
        try {
          const response = await fetch(url, { headers });
          await response.arrayBuffer();
          if (response.status === 200) times.push(performance.now() - started);
          else errors += 1;
        } catch {
          errors += 1;
        }
      }
    }),
  );
  const sorted = times.sort((a, b) => a - b);
  return { perSecond: times.length / (s.ms / 1000), p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), errors };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

process.on("message", (raw: unknown) => {
  const { id, scenario, statsURL } = raw as { id: number; scenario: Scenario; statsURL: string };
  const run = async (): Promise<Result> => {
    switch (scenario.kind) {
      case "echo":
        return echo(scenario);
      case "stream":
        return stream(scenario, statsURL);
      case "latency":
        return latency(scenario);
      case "setup":
        return setup(scenario);
      case "http":
        return http(scenario);
      case "hold":
        held.push(...(await openMany(scenario.target, scenario.connections)));
        return { errors: 0 };
      case "release":
        for (const ws of held.splice(0)) ws.terminate();
        return { errors: 0 };
    }
  };
  run()
    .then((result) => process.send?.({ id, result }))
    .catch((error: unknown) => process.send?.({ id, result: { errors: 1, failure: error instanceof Error ? error.message : String(error) } }));
});

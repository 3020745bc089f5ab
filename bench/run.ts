/**
 * `npm run bench`: direct / nginx / Portcullis, side by side, same machine, same run, same
 * client. Each runs in its own process (game backend, Portcullis with its identity
 * provider, nginx, the load generator), so each proxy's memory is read alone.
 *
 *   npm run bench             full run (~3 minutes), writes bench/results/latest.md and chart.png
 *   npm run bench -- --smoke  every measurement, briefly (CI: proves the harness, asserts no figure)
 *
 * Only loopback addresses; every loop is bounded in count and time.
 */
import { fork, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, rmSync, readdirSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Result, Scenario, Target } from "./loadgen";

const SMOKE = process.argv.includes("--smoke");
const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(HERE, "results");
const D = SMOKE
  ? { ms: 300, latencyMs: 600, scaling: [1, 10], hold: 50, rounds: 1 }
  : { ms: 3_000, latencyMs: 5_000, scaling: [1, 10, 100, 1000], hold: 1000, rounds: 1 };

type Name = "direct" | "nginx" | "portcullis";
const NAMES: Name[] = ["direct", "nginx", "portcullis"];

function ensure(binary: string, pkg: string): boolean {
  if (spawnSync("which", [binary]).status === 0) return true;
  console.log(`installing ${pkg} (apt-get)…`);
  spawnSync("apt-get", ["update", "-qq"], { stdio: "ignore" });
  return spawnSync("apt-get", ["install", "-y", "-qq", pkg], { stdio: "ignore", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } }).status === 0;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function forkTS(file: string, args: string[] = []): ChildProcess {
  return fork(join(HERE, file), args, { execArgv: ["--import", "tsx"], stdio: ["ignore", "ignore", "inherit", "ipc"] });
}

function ready<T>(child: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    child.once("message", (message) => resolve(message as T));
    child.once("exit", (code) => reject(new Error(`child exited ${code} before it was ready`)));
  });
}

function rssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
}

function childPids(pid: number): number[] {
  const pids: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const text = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim();
    if (text) pids.push(...text.split(/\s+/).map(Number));
  }
  return pids;
}

async function startNginx(backendPort: number): Promise<{ port: number; workerPid: number; stop(): void; version: string }> {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-nginx-"));
  const port = await freePort();
  for (const sub of ["body", "proxy", "fastcgi", "uwsgi", "scgi"]) mkdirSync(join(dir, sub));
  // One worker: the machine has 2 cores and the load generator needs the other, exactly
  // like Portcullis' single Node process. No auth: nginx only proxies.
  writeFileSync(
    join(dir, "nginx.conf"),
    `worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 16000; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream backend { server 127.0.0.1:${backendPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location /ws {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 3600s;
      proxy_buffering off;
      tcp_nodelay on;
    }
    location /api/ {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
  );
  const master = spawn("nginx", ["-p", dir, "-c", join(dir, "nginx.conf")], { stdio: "ignore" });
  for (let i = 0; i < 100; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const workers = master.pid === undefined ? [] : childPids(master.pid);
    if (workers.length > 0) {
      const version = spawnSync("nginx", ["-v"], { encoding: "utf8" }).stderr.trim();
      return {
        port,
        workerPid: workers[0] ?? 0,
        version,
        stop: () => {
          master.kill("SIGTERM");
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
  }
  throw new Error("nginx did not start");
}

async function main(): Promise<void> {
  const hasNginx = ensure("nginx", "nginx-light");
  const hasGnuplot = ensure("gnuplot", "gnuplot-nox");

  const backend = forkTS("backend.ts");
  const { port: backendPort, pid: backendPid } = await ready<{ port: number; pid: number }>(backend);
  const bff = forkTS("bff.ts", [`http://127.0.0.1:${backendPort}`]);
  const { origin, token, pid: bffPid } = await ready<{ origin: string; token: string; pid: number }>(bff);
  const nginx = hasNginx ? await startNginx(backendPort) : null;
  const loadgen = forkTS("loadgen.ts");
  const statsURL = `http://127.0.0.1:${backendPort}/stats`;

  const targets: Record<Name, Target | null> = {
    direct: { name: "direct", wsURL: `ws://127.0.0.1:${backendPort}/ws`, httpURL: `http://127.0.0.1:${backendPort}` },
    nginx: nginx === null ? null : { name: "nginx", wsURL: `ws://127.0.0.1:${nginx.port}/ws`, httpURL: `http://127.0.0.1:${nginx.port}` },
    portcullis: { name: "portcullis", wsURL: `${origin.replace("http", "ws")}/ws`, httpURL: origin, portcullis: { origin, token } },
  };
  const proxyPid: Record<Name, number> = { direct: backendPid, nginx: nginx?.workerPid ?? 0, portcullis: bffPid };

  let nextId = 0;
  const run = (scenario: Scenario): Promise<Result & { failure?: string }> =>
    new Promise((resolve) => {
      const id = nextId++;
      const onMessage = (message: unknown): void => {
        const m = message as { id: number; result: Result & { failure?: string } };
        if (m.id !== id) return;
        loadgen.off("message", onMessage);
        if (m.result.failure) console.error(`  ${scenario.kind} failed: ${m.result.failure}`);
        resolve(m.result);
      };
      loadgen.on("message", onMessage);
      loadgen.send({ id, scenario, statsURL });
      // A scenario that hangs is a broken harness: fail loudly rather than wait forever.
      setTimeout(() => {
        loadgen.off("message", onMessage);
        console.error(`  ${scenario.kind} timed out`);
        resolve({ errors: 1 });
      }, 120_000).unref();
    });

  const table: Record<string, Partial<Record<Name, number>>> = {};
  const put = (row: string, name: Name, value: number | undefined): void => {
    table[row] = { ...table[row], [name]: value };
  };
  const each = async (label: string, make: (t: Target) => Scenario | null, pick: (r: Result) => [string, number | undefined][]): Promise<void> => {
    for (const name of NAMES) {
      const target = targets[name];
      const scenario = target === null ? null : make(target);
      if (scenario === null) continue;
      const result = await run(scenario);
      for (const [row, value] of pick(result)) put(row, name, value);
    }
    console.log(`  ${label} done`);
  };

  console.log(`bench${SMOKE ? " (smoke)" : ""}: direct ${targets.direct?.wsURL}, nginx ${targets.nginx?.wsURL ?? "(not installed)"}, portcullis ${targets.portcullis?.wsURL}`);
  for (const size of [100, 16 * 1024]) {
    const label = size === 100 ? "100 B" : "16 KiB";
    await each(`echo ${label}`, (t) => ({ kind: "echo", target: t, connections: 64, size, window: 8, ms: D.ms }), (r) => [[`WS echo round trips/s, ${label}, 64 connections`, r.perSecond]]);
    await each(`stream ${label}`, (t) => ({ kind: "stream", target: t, connections: 64, size, ms: D.ms }), (r) => [[`WS one-way messages/s, ${label}, 64 connections`, r.perSecond]]);
  }
  await each("latency", (t) => ({ kind: "latency", target: t, connections: 10, ratePerConnection: 100, ms: D.latencyMs }), (r) => [
    ["RTT p50 (ms), 100 B at 1,000 msg/s", r.p50],
    ["RTT p99 (ms), 100 B at 1,000 msg/s", r.p99],
    ["RTT p99.9 (ms), 100 B at 1,000 msg/s", r.p999],
  ]);
  await each("setup", (t) => ({ kind: "setup", target: t, parallel: 8, ms: D.ms }), (r) => [["upgrades/s (Portcullis: with ticket request), 8 parallel", r.perSecond]]);
  await each("http", (t) => ({ kind: "http", target: t, concurrency: 16, ms: D.ms }), (r) => [
    ["GET /api/game/profile requests/s, 16 concurrent", r.perSecond],
    ["GET /api/game/profile p99 (ms)", r.p99],
  ]);
  for (const name of NAMES) {
    const target = targets[name];
    if (target === null) continue;
    global.gc?.();
    const before = rssKiB(proxyPid[name]);
    await run({ kind: "hold", target, connections: D.hold });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const after = rssKiB(proxyPid[name]);
    await run({ kind: "release" });
    put(`RSS per idle connection (KiB), ${D.hold} open`, name, (after - before) / D.hold);
  }
  console.log("  memory done");

  const scaling: { connections: number; values: Partial<Record<Name, { throughput?: number; p99?: number }>> }[] = [];
  for (const connections of D.scaling) {
    const values: Partial<Record<Name, { throughput?: number; p99?: number }>> = {};
    for (const name of NAMES) {
      const target = targets[name];
      if (target === null) continue;
      const echo = await run({ kind: "echo", target, connections, size: 100, window: 4, ms: Math.max(300, D.ms / 2) });
      const lat = await run({ kind: "latency", target, connections, ratePerConnection: Math.max(1, Math.floor(2000 / connections)), ms: Math.max(600, D.ms) });
      values[name] = { throughput: echo.perSecond, p99: lat.p99 };
    }
    scaling.push({ connections, values });
    console.log(`  scaling ${connections} done`);
  }

  loadgen.kill();
  bff.send("stop");
  backend.kill();
  nginx?.stop();

  const markdown = report(table, scaling, nginx?.version ?? "not installed");
  mkdirSync(RESULTS, { recursive: true });
  const out = join(RESULTS, SMOKE ? "smoke.md" : "latest.md");
  writeFileSync(out, markdown);
  console.log(markdown);
  if (hasGnuplot && !SMOKE) chart(scaling);
  const failed = Object.values(table).some((row) => Object.values(row).some((v) => v === undefined || Number.isNaN(v)));
  setTimeout(() => process.exit(failed ? 1 : 0), 200);
}

function fmt(value: number | undefined): string {
  if (value === undefined || Number.isNaN(value)) return "—";
  if (value >= 100) return Math.round(value).toLocaleString("en-US");
  return value.toFixed(value >= 10 ? 1 : 2);
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined || b === 0 || Number.isNaN(a) || Number.isNaN(b) ? "—" : `${(a / b).toFixed(2)}×`;
}

function report(
  table: Record<string, Partial<Record<Name, number>>>,
  scaling: { connections: number; values: Partial<Record<Name, { throughput?: number; p99?: number }>> }[],
  nginxVersion: string,
): string {
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown CPU";
  const lines = [
    `Machine: ${cpus().length} cores (${cpu}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${nginxVersion}; loopback; ${new Date().toISOString().slice(0, 10)}.`,
    `Command: \`npm run bench${SMOKE ? " -- --smoke" : ""}\`. Each target in its own process; the same load generator process drives all three.`,
    "",
    "| measurement | direct | nginx | Portcullis | Portcullis / direct | Portcullis / nginx |",
    "|---|---:|---:|---:|---:|---:|",
    ...Object.entries(table).map(
      ([row, v]) => `| ${row} | ${fmt(v.direct)} | ${fmt(v.nginx)} | ${fmt(v.portcullis)} | ${ratio(v.portcullis, v.direct)} | ${ratio(v.portcullis, v.nginx)} |`,
    ),
    "",
    "How it grows (100-byte echo throughput, msg/s / RTT p99 in ms at a fixed total rate of about 2,000 msg/s):",
    "",
    "| connections | direct | nginx | Portcullis |",
    "|---:|---:|---:|---:|",
    ...scaling.map(
      (s) =>
        `| ${s.connections} | ${fmt(s.values.direct?.throughput)} / ${fmt(s.values.direct?.p99)} | ${fmt(s.values.nginx?.throughput)} / ${fmt(s.values.nginx?.p99)} | ${fmt(s.values.portcullis?.throughput)} / ${fmt(s.values.portcullis?.p99)} |`,
    ),
    "",
  ];
  return lines.join("\n");
}

function chart(scaling: { connections: number; values: Partial<Record<Name, { throughput?: number; p99?: number }>> }[]): void {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-chart-"));
  const data = scaling
    .map((s) => [s.connections, ...NAMES.flatMap((n) => [s.values[n]?.throughput ?? "NaN", s.values[n]?.p99 ?? "NaN"])].join(" "))
    .join("\n");
  writeFileSync(join(dir, "data.txt"), `${data}\n`);
  const script = `set terminal pngcairo size 1200,500 font "sans,11"
set output "${join(RESULTS, "chart.png")}"
set multiplot layout 1,2 title "direct / nginx / Portcullis — 100-byte WebSocket messages, same machine, same run"
set logscale x
set xlabel "connections"
set grid
set key top left
set ylabel "echo round trips per second"
plot "${dir}/data.txt" using 1:2 with linespoints lw 2 title "direct", "" using 1:4 with linespoints lw 2 title "nginx", "" using 1:6 with linespoints lw 2 title "Portcullis"
set ylabel "RTT p99 (ms) at about 2,000 msg/s in total"
plot "${dir}/data.txt" using 1:3 with linespoints lw 2 title "direct", "" using 1:5 with linespoints lw 2 title "nginx", "" using 1:7 with linespoints lw 2 title "Portcullis"
unset multiplot
`;
  writeFileSync(join(dir, "chart.gp"), script);
  spawnSync("gnuplot", [join(dir, "chart.gp")], { stdio: "inherit" });
  rmSync(dir, { recursive: true, force: true });
}

void main();

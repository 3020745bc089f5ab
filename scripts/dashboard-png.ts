/**
 * docs/dashboard.png: the panels of docs/grafana-dashboard.json drawn with gnuplot from a
 * real Prometheus's HTTP API (issue 16). Grafana need not be installed: each panel's own
 * PromQL is asked of Prometheus (`/api/v1/query_range`) and plotted.
 *
 *   npx tsx scripts/dashboard-png.ts                 a real run: the demo stack with METRICS_PORT,
 *                                                    Debian's prometheus scraping it every 5 s from a
 *                                                    temporary folder on a loopback port, DASHBOARD_SECONDS
 *                                                    (180) of mixed load, then the picture
 *   npx tsx scripts/dashboard-png.ts --prometheus URL --start UNIX --end UNIX
 *                                                    only the picture, from a Prometheus already running
 *
 * Needs `prometheus` (apt-get install -y prometheus; nothing is started as a service) and
 * `gnuplot` (gnuplot-nox).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import { ManualClock } from "../src/clock";
import { startRecordingBackend } from "../test/fixtures/backend";
import { startHarness, type Harness } from "../test/fixtures/harness";
import { startRecordingUpstream } from "../test/fixtures/http-upstream";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const DASHBOARD = join(REPO, "docs", "grafana-dashboard.json");
const OUTPUT = join(REPO, "docs", "dashboard.png");
const SCRAPE_SECONDS = 5;
// Grafana's $__rate_interval for a 5 s scrape is at least four scrapes.
const RATE_INTERVAL = "30s";
const SECONDS = Number(process.env.DASHBOARD_SECONDS ?? 180);

/** The wall clock, where the harness wants a ManualClock (refresh and rate buckets must move). */
class WallClock extends ManualClock {
  override now(): number {
    return Date.now();
  }
}

interface Panel {
  title: string;
  unit: string;
  targets: { expr: string; legendFormat: string }[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function readPanels(): Panel[] {
  const dashboard: unknown = JSON.parse(readFileSync(DASHBOARD, "utf8"));
  if (!isRecord(dashboard) || !Array.isArray(dashboard.panels)) throw new Error("the dashboard has no panels");
  return dashboard.panels.filter(isRecord).map((panel) => {
    const unit = isRecord(panel.fieldConfig) && isRecord(panel.fieldConfig.defaults) ? String(panel.fieldConfig.defaults.unit ?? "") : "";
    const targets = (Array.isArray(panel.targets) ? panel.targets : []).filter(isRecord).map((t) => ({ expr: String(t.expr), legendFormat: String(t.legendFormat ?? "") }));
    return { title: String(panel.title), unit, targets };
  });
}

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

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

/** One series of a range query: its legend and [unix seconds, value] points. */
interface Series {
  legend: string;
  points: [number, number][];
}

async function queryRange(prometheus: string, expr: string, legendFormat: string, start: number, end: number): Promise<Series[]> {
  const url = new URL("/api/v1/query_range", prometheus);
  url.search = new URLSearchParams({ query: expr.replaceAll("$__rate_interval", RATE_INTERVAL), start: String(start), end: String(end), step: String(SCRAPE_SECONDS) }).toString();
  const body: unknown = await (await fetch(url)).json();
  if (!isRecord(body) || body.status !== "success" || !isRecord(body.data) || !Array.isArray(body.data.result)) {
    throw new Error(`Prometheus refused ${expr}: ${JSON.stringify(body).slice(0, 300)}`);
  }
  return body.data.result.filter(isRecord).map((series) => {
    const metric = isRecord(series.metric) ? series.metric : {};
    const legend = legendFormat.replace(/\{\{ *(\w+) *\}\}/g, (_all, name: string) => String(metric[name] ?? ""));
    const values = Array.isArray(series.values) ? series.values : [];
    const points = values.flatMap((pair): [number, number][] => (Array.isArray(pair) && pair.length === 2 ? [[Number(pair[0]), Number(pair[1])]] : []));
    return { legend: legend || expr, points: points.filter(([, v]) => Number.isFinite(v)) };
  });
}

/** Draws every panel, two per row as in Grafana, from Prometheus's answers. */
export async function renderDashboard(prometheus: string, start: number, end: number, output: string = OUTPUT): Promise<void> {
  const panels = readPanels();
  const dir = mkdtempSync(join(tmpdir(), "portcullis-dashboard-"));
  const plots: string[] = [];
  let file = 0;
  for (const panel of panels) {
    const lines: string[] = [];
    for (const target of panel.targets) {
      for (const series of await queryRange(prometheus, target.expr, target.legendFormat, start, end)) {
        if (series.points.length === 0) continue;
        const path = join(dir, `s${(file += 1)}.dat`);
        writeFileSync(path, series.points.map(([t, v]) => `${(t - start) / 60} ${v}`).join("\n") + "\n");
        lines.push(`'${path}' using 1:2 with lines lw 2 title "${series.legend.replaceAll('"', "'")}"`);
      }
    }
    const unit = panel.unit === "s" ? " (seconds)" : panel.unit === "Bps" ? " (bytes/s)" : "";
    plots.push(
      [
        `set title "${panel.title}${unit}" font ",13"`,
        lines.length === 0 ? `set label 1 "no data in this run" at graph 0.5,0.5 center` : "unset label 1",
        lines.length === 0 ? "plot NaN notitle" : `plot ${lines.join(", ")}`,
      ].join("\n"),
    );
  }
  const rows = Math.ceil(panels.length / 2);
  const script = [
    `set terminal pngcairo size 1600,${rows * 340 + 60} font "DejaVu Sans,10"`,
    `set output '${output}'`,
    `set multiplot layout ${rows},2 title "Portcullis — ${new Date(start * 1000).toISOString().slice(0, 16)}Z, ${Math.round((end - start) / 60)} min (docs/grafana-dashboard.json, drawn from Prometheus)" font ",14"`,
    "set termoption noenhanced",
    "set key top left font ',9' noopaque",
    "set grid",
    "set xlabel 'minutes'",
    "set yrange [0:*]",
    "set format y '%.3g'",
    ...plots,
    "unset multiplot",
  ].join("\n");
  const result = spawnSync("gnuplot", [], { input: script, encoding: "utf8" });
  rmSync(dir, { recursive: true, force: true });
  if (result.status !== 0) throw new Error(`gnuplot failed: ${result.stderr}`);
}

/** Prometheus from Debian's package, run by hand: a temporary config and data folder, loopback only. */
async function startPrometheus(target: string): Promise<{ url: string; process: ChildProcess; close(): void }> {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-prometheus-"));
  const port = await freePort();
  writeFileSync(
    join(dir, "prometheus.yml"),
    [
      "global:",
      `  scrape_interval: ${SCRAPE_SECONDS}s`,
      "scrape_configs:",
      "  - job_name: portcullis",
      "    static_configs:",
      `      - targets: ['${target}']`,
      "",
    ].join("\n"),
  );
  const child = spawn(
    "prometheus",
    [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i += 1) {
    const ready = await fetch(`${url}/-/ready`).then((r) => r.ok, () => false);
    if (ready) break;
    await sleep(200);
  }
  return {
    url,
    process: child,
    close() {
      child.kill("SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A player: a logged-in session and its sockets, each sending a message every 250 ms. */
async function openSockets(h: Harness, token: string, count: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  for (let i = 0; i < count; i += 1) {
    const ticketAnswer = await fetch(`${h.origin}/auth/ws-ticket`, { method: "POST", headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } });
    if (ticketAnswer.status !== 200) continue;
    const { ticket } = (await ticketAnswer.json()) as { ticket: string };
    const ws = new WebSocket(`${h.origin.replace("http", "ws")}/ws`, ["game.v1", `ticket.${ticket}`], {
      headers: { origin: h.origin, cookie: `__Host-Http-session=${token}` },
      perMessageDeflate: false,
    });
    ws.on("error", () => undefined);
    ws.on("open", () => {
      const timer = setInterval(() => (ws.readyState === WebSocket.OPEN ? ws.send(JSON.stringify({ move: Math.random() })) : clearInterval(timer)), 250);
      ws.on("close", () => clearInterval(timer));
    });
    sockets.push(ws);
  }
  return sockets;
}

async function run(): Promise<void> {
  const backend = await startRecordingBackend({ record: false });
  const upstream = await startRecordingUpstream();
  const h = await startHarness({
    clock: new WallClock(),
    // Access tokens of 90 s: a provider-token route refreshes them within the run.
    idp: { accessTokenTTLSeconds: 90 },
    // Every client here is 127.0.0.1: the per-address connection cap would be the first limit hit.
    env: { GAME_BACKEND_URL: backend.url, METRICS_PORT: "0", WS_MAX_SOCKETS_PER_SESSION: "4", RATE_LIMIT_TICKET: "20/s,60", MAX_CONNECTIONS_PER_IP: "100000" },
    upstreams: ({ issuer }) => ({
      routes: [
        { prefix: "/api/game/", target: `${upstream.url}/api/game/`, audience: upstream.url },
        { prefix: "/api/me/", target: `${issuer}/me`, credential: "provider-token", provider: "demo", methods: ["GET"] },
      ],
    }),
    portcullis: { auditStream: new (await import("node:stream")).Writable({ write: (_c, _e, done) => done() }) },
  });
  const metricsURL = h.bff.metricsURL;
  if (metricsURL === null) throw new Error("metrics are off");
  const prometheus = await startPrometheus(new URL(metricsURL).host);
  console.log(`metrics ${metricsURL}/metrics, Prometheus ${prometheus.url}, ${SECONDS} s of load`);
  const start = Math.floor(Date.now() / 1000);

  const players: { token: string; sockets: WebSocket[] }[] = [];
  for (let i = 0; i < 30; i += 1) {
    const { token } = await h.login(`player-${i}`);
    players.push({ token, sockets: await openSockets(h, token, 2) });
  }
  const api = (token: string, path: string): Promise<number> =>
    fetch(`${h.origin}${path}`, { headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } }).then(async (r) => {
      await r.arrayBuffer();
      return r.status;
    });
  const until = Date.now() + SECONDS * 1000;
  let tick = 0;
  while (Date.now() < until) {
    tick += 1;
    const player = players[tick % players.length];
    if (player === undefined) break;
    try {
    // /api: game calls, a path no route serves, the provider's userinfo (refreshes).
    await Promise.all([...Array.from({ length: 8 }, () => api(player.token, "/api/game/profile")), api(player.token, "/api/nowhere/x"), api(player.token, "/api/me/")]);
    // Refused upgrades: a foreign Origin, no ticket.
    for (const origin of ["https://evil.example", h.origin]) {
      const ws = new WebSocket(`${h.origin.replace("http", "ws")}/ws`, ["game.v1"], { headers: { origin, cookie: `__Host-Http-session=${player.token}` } });
      ws.on("error", () => undefined);
    }
    // The provider is down for a while in the second minute: refreshes fail.
    h.idp.setUnreachable(Date.now() - start * 1000 > 70_000 && Date.now() - start * 1000 < 100_000);
    if (tick % 5 === 0) {
      // A player logs out (its sockets close with 4401) and comes back.
      await fetch(`${h.origin}/auth/logout`, { method: "POST", headers: { cookie: `__Host-Http-session=${player.token}`, ...h.csrf() } });
      const { token } = await h.login(`player-${tick}`);
      player.token = token;
      player.sockets = await openSockets(h, token, 2);
    }
    if (tick % 15 === 0) {
      // A flooding client: over WS_MAX_MESSAGES_PER_SECOND, closed with 1008.
      const [flooder] = await openSockets(h, player.token, 1);
      flooder?.on("open", () => {
        for (let i = 0; i < 300; i += 1) flooder.send("spam");
      });
    }
    if (tick % 20 === 0) {
      // A burst of tickets over RATE_LIMIT_TICKET.
      await Promise.all(Array.from({ length: 80 }, () => fetch(`${h.origin}/auth/ws-ticket`, { method: "POST", headers: { cookie: `__Host-Http-session=${player.token}`, ...h.csrf() } })));
    }
    } catch (error) {
      // The load is only there to move the counters: one failed step does not end the run.
      console.error(`tick ${tick}: ${error instanceof Error ? error.message : String(error)}`);
    }
    await sleep(1000);
  }
  h.idp.setUnreachable(false);
  // Two more scrapes, so the last second of load is in the picture.
  await sleep(2 * SCRAPE_SECONDS * 1000);
  const end = Math.floor(Date.now() / 1000);
  await renderDashboard(prometheus.url, start, end);
  console.log(`wrote ${OUTPUT}`);
  for (const player of players) for (const ws of player.sockets) ws.terminate();
  prometheus.close();
  await h.close();
  await backend.close();
  await upstream.close();
}

async function main(): Promise<void> {
  const at = process.argv.indexOf("--prometheus");
  if (at !== -1) {
    const arg = (name: string): number => Number(process.argv[process.argv.indexOf(name) + 1]);
    await renderDashboard(process.argv[at + 1] ?? "", arg("--start"), arg("--end"));
    console.log(`wrote ${OUTPUT}`);
    return;
  }
  await run();
  process.exit(0);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

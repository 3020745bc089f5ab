/**
 * Runs Debian's slowhttptest (slowloris, then slow body) against a real Portcullis with a
 * real identity provider, while a second client keeps asking /healthz. Prints whether the
 * BFF kept answering others and how long slow connections lived.
 *
 *   npm run attack:slow            (installs slowhttptest with apt-get when missing)
 *
 * Only loopback is targeted; each attack is bounded in time and connection count.
 */
import { spawn, spawnSync } from "node:child_process";
import { startHarness } from "../test/fixtures/harness";

const SECONDS = Number(process.env.ATTACK_SECONDS ?? 40);
const CONNECTIONS = Number(process.env.ATTACK_CONNECTIONS ?? 1000);

function ensureTool(): void {
  if (spawnSync("which", ["slowhttptest"]).status === 0) return;
  console.log("installing slowhttptest (apt-get)…");
  spawnSync("apt-get", ["update", "-qq"], { stdio: "inherit" });
  const install = spawnSync("apt-get", ["install", "-y", "-qq", "slowhttptest"], { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  if (install.status !== 0) throw new Error("could not install slowhttptest");
}

interface ProbeStats {
  ok: number;
  failed: number;
  worstMs: number;
}

async function probeWhile(url: string, running: () => boolean): Promise<ProbeStats> {
  const stats: ProbeStats = { ok: 0, failed: 0, worstMs: 0 };
  while (running()) {
    const started = performance.now();
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
      await response.arrayBuffer();
      if (response.status === 200) stats.ok += 1;
      else stats.failed += 1;
    } catch {
      stats.failed += 1;
    }
    stats.worstMs = Math.max(stats.worstMs, performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return stats;
}

function attack(mode: "-H" | "-B", url: string): Promise<string> {
  return new Promise((resolve) => {
    const args = [mode, "-c", String(CONNECTIONS), "-r", "200", "-i", "5", "-l", String(SECONDS), "-p", "3", "-u", url, "-s", "8192", "-x", "24"];
    const child = spawn("slowhttptest", args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.on("close", () => resolve(output));
  });
}

function summarise(raw: string): string {
  const output = raw.replace(/\x1b\[[0-9;]*m/g, "");
  // slowhttptest redraws its status block; keep the last one.
  const blocks = output.split(/slow HTTP test status on \d+th second:/);
  const last = blocks.at(-1) ?? "";
  const pick = (label: string): string => new RegExp(`${label}:\\s*(\\S+)`).exec(last)?.[1] ?? "?";
  const exit = /Exit status: ([^\n]+)/.exec(output)?.[1] ?? "?";
  const ended = /Test ended on (\d+)th second/.exec(output)?.[1] ?? "?";
  return `ended on second ${ended}: initializing ${pick("initializing")}, pending ${pick("pending")}, connected ${pick("connected")}, error ${pick("error")}, closed ${pick("closed")}, service available ${pick("service available")}; slowhttptest: ${exit.trim()}`;
}

async function main(): Promise<void> {
  ensureTool();
  const h = await startHarness({ env: { MAX_CONNECTIONS: "20000" } });
  const results: string[] = [];
  try {
    for (const [name, mode, path] of [
      ["slowloris (slow headers)", "-H", "/healthz"],
      ["slow body (R-U-Dead-Yet)", "-B", "/auth/logout"],
    ] as const) {
      let running = true;
      const probe = probeWhile(`${h.origin}/healthz`, () => running);
      const output = await attack(mode, `${h.bff.url}${path}`);
      running = false;
      const stats = await probe;
      const line = `${name}: ${CONNECTIONS} connections for ${SECONDS} s → ${summarise(output)}; meanwhile /healthz answered ${stats.ok}/${stats.ok + stats.failed}, slowest ${stats.worstMs.toFixed(0)} ms`;
      console.log(line);
      results.push(line);
    }
  } finally {
    await h.close();
  }
  process.exit(results.every((r) => /answered (\d+)\/\1,/.test(r)) ? 0 : 1);
}

void main();

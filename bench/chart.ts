/**
 * The chart of a side-by-side run, drawn by gnuplot (Debian's gnuplot-nox, pngcairo):
 * echo throughput and p99 round trip against the connection count, one line per target.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TARGET_NAMES } from "./protocol";
import type { ScalePoint } from "./report";

export const GNUPLOT_BINARY = "/usr/bin/gnuplot";

/** gnuplot's own quoting: a double-quoted string with `\`, `"` and line breaks escaped. */
function quote(text: string): string {
  return `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;
}

/** Writes `output` (PNG); throws when gnuplot fails, since then the harness is broken. */
export function drawChart(scaling: ScalePoint[], output: string, latencyRate: number, subtitle: string): void {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-bench-chart-"));
  try {
    const dataPath = join(dir, "scaling.dat");
    // Columns: connections, then throughput and p99 for direct, nginx, Portcullis. gnuplot
    // skips NaN points, so a failed measurement leaves a gap rather than a false zero.
    const rows = scaling.map((point) =>
      [point.connections, ...TARGET_NAMES.flatMap((name) => [point.values[name].throughput ?? "NaN", point.values[name].p99 ?? "NaN"])].join(" "),
    );
    writeFileSync(dataPath, `# connections direct_tput direct_p99 nginx_tput nginx_p99 portcullis_tput portcullis_p99\n${rows.join("\n")}\n`);
    const data = quote(dataPath);
    const lines = (column: (index: number) => number): string =>
      TARGET_NAMES.map((name, index) => `${index === 0 ? data : '""'} using 1:${column(index)} with linespoints lw 2 pt 7 ps 1.2 title ${quote(name === "portcullis" ? "Portcullis" : name)}`).join(", ");
    const script = [
      `set terminal pngcairo size 1400,560 font "DejaVu Sans,12" enhanced`,
      `set output ${quote(output)}`,
      `set multiplot layout 1,2 title ${quote(`direct / nginx / Portcullis — 100-byte WebSocket messages over loopback\n{/*0.8 ${subtitle}}`)}`,
      "set logscale x 10",
      'set xlabel "open connections"',
      "set grid xtics ytics mxtics",
      "set key top left box opaque",
      "set yrange [0:*]",
      'set format y "%.0f"',
      'set ylabel "echo round trips per second"',
      `set title "Throughput (higher is better)"`,
      `plot ${lines((index) => 2 + index * 2)}`,
      'set ylabel "round trip p99 (ms)"',
      'set format y "%.1f"',
      `set title "p99 latency at ${latencyRate.toLocaleString("en-US")} msg/s in total (lower is better)"`,
      `plot ${lines((index) => 3 + index * 2)}`,
      "unset multiplot",
      "",
    ].join("\n");
    const scriptPath = join(dir, "chart.gp");
    writeFileSync(scriptPath, script);
    const answer = spawnSync(GNUPLOT_BINARY, [scriptPath], { encoding: "utf8", timeout: 30_000 });
    if (answer.status !== 0) throw new Error(`gnuplot failed: ${answer.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

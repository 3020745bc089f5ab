/**
 * The Markdown report of a side-by-side run: absolute figures, the two ratios, how the
 * figures grow with the connection count, and enough context (machine, command, load,
 * descriptor limit) for a reader to judge them. It states figures; it judges none.
 */
import { TARGET_NAMES, type TargetName } from "./protocol";
import type { StoreRow } from "./stores";

export interface Row {
  label: string;
  /** Whether a larger figure is the better one, for the reader's legend only. */
  better: "higher" | "lower";
  /** One figure per round and target; a failed measurement has none. */
  rounds: Record<TargetName, number[]>;
  /** The direct column does not apply (memory of a proxy when there is none). */
  noDirect?: boolean;
}

export interface ScalePoint {
  connections: number;
  values: Record<TargetName, { throughput?: number; p50?: number; p99?: number }>;
}

export interface ReportContext {
  machine: string;
  command: string;
  startedAt: Date;
  durationSeconds: number;
  loadBefore: number;
  loadAfter: number;
  fileLimit: string;
  rounds: number;
  /** The fixed total message rate of the latency measurements. */
  latencyRate: number;
  notes: string[];
  failures: string[];
  /** SQLite beside PostgreSQL (bench/stores.ts); absent with --no-postgres. */
  stores?: StoreRow[];
}

export function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

export function formatFigure(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return "—";
  const magnitude = Math.abs(value);
  if (magnitude >= 100) return Math.round(value).toLocaleString("en-US");
  if (magnitude >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function ratio(numerator: number | undefined, denominator: number | undefined): string {
  if (numerator === undefined || denominator === undefined || denominator === 0) return "—";
  return `${(numerator / denominator).toFixed(2)}×`;
}

/** The largest (max − min) / median over the row's targets, as a percentage; rounds > 1 only. */
function spread(row: Row): string {
  const spreads = TARGET_NAMES.flatMap((name) => {
    const values = row.rounds[name];
    const middle = median(values);
    if (values.length < 2 || middle === undefined || middle === 0) return [];
    return [(Math.max(...values) - Math.min(...values)) / Math.abs(middle)];
  });
  return spreads.length === 0 ? "—" : `±${Math.round((Math.max(...spreads) * 100) / 2)} %`;
}

export function renderReport(rows: Row[], scaling: ScalePoint[], context: ReportContext): string {
  const lines: string[] = [
    "# Portcullis side by side: direct, nginx, Portcullis",
    "",
    `- Machine: ${context.machine}.`,
    `- Command: \`${context.command}\` — ${context.startedAt.toISOString()}, ${Math.round(context.durationSeconds)} s.`,
    `- Load average (1 min) before / after: ${context.loadBefore.toFixed(2)} / ${context.loadAfter.toFixed(2)}. The 2 CPUs are shared with other work, so single figures move by tens of percent between runs; the spread column shows how far the rounds of this run disagreed.`,
    `- Open-files limit: ${context.fileLimit}.`,
    "- Processes: the game backend, Portcullis (with its identity provider), nginx (1 worker) and the load generator each run alone; the same load-generator code drives all three targets over loopback. Every figure is the median of " +
      `${context.rounds} round${context.rounds === 1 ? "" : "s"}, targets interleaved within each round.`,
    "- Direct and nginx sockets carry an identity assertion signed by the client; Portcullis sockets fetch a ticket and carry the session cookie, and Portcullis signs the assertion. The backend verifies it in all three cases.",
    ...context.notes.map((note) => `- ${note}`),
    "",
    "| measurement | better | direct | nginx | Portcullis | Portcullis / direct | Portcullis / nginx | spread |",
    "|---|:-:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const row of rows) {
    const direct = row.noDirect === true ? undefined : median(row.rounds.direct);
    const nginx = median(row.rounds.nginx);
    const portcullis = median(row.rounds.portcullis);
    lines.push(
      `| ${row.label} | ${row.better === "higher" ? "↑" : "↓"} | ${row.noDirect === true ? "n/a" : formatFigure(direct)} | ${formatFigure(nginx)} | ${formatFigure(portcullis)} | ${ratio(portcullis, direct)} | ${ratio(portcullis, nginx)} | ${spread(row)} |`,
    );
  }
  lines.push(
    "",
    `## From ${(scaling[0]?.connections ?? 1).toLocaleString("en-US")} to ${(scaling.at(-1)?.connections ?? 1).toLocaleString("en-US")} connections`,
    "",
    `100-byte messages. Throughput: closed-loop echo round trips per second, 4 in flight per connection. Latency: round trip in ms at a fixed total of ${context.latencyRate.toLocaleString("en-US")} messages per second spread over all connections.`,
    "",
    "| connections | direct msg/s | nginx msg/s | Portcullis msg/s | direct p50 / p99 | nginx p50 / p99 | Portcullis p50 / p99 |",
    "|---:|---:|---:|---:|---:|---:|---:|",
  );
  for (const point of scaling) {
    const v = point.values;
    const latency = (name: TargetName): string => `${formatFigure(v[name].p50)} / ${formatFigure(v[name].p99)}`;
    lines.push(
      `| ${point.connections.toLocaleString("en-US")} | ${formatFigure(v.direct.throughput)} | ${formatFigure(v.nginx.throughput)} | ${formatFigure(v.portcullis.throughput)} | ${latency("direct")} | ${latency("nginx")} | ${latency("portcullis")} |`,
    );
  }
  if (context.stores !== undefined) {
    lines.push(
      "",
      "## SQLite and PostgreSQL",
      "",
      "The same Portcullis on each store, one node measured (PostgreSQL: two nodes on one database, for the fan-out). Median of the rounds; the fan-out percentiles are over all its logouts. The engines take turns within each round, so each round has a ratio of its own: the last column gives their range.",
      "",
      "| measurement | better | SQLite | PostgreSQL | PostgreSQL / SQLite | rounds' ratios |",
      "|---|:-:|---:|---:|---:|---:|",
    );
    for (const row of context.stores) {
      const sqlite = row.postgresOnly === undefined ? median(row.values.sqlite) : undefined;
      const postgres = median(row.values.postgres);
      lines.push(
        `| ${row.label} | ${row.better === "higher" ? "↑" : "↓"} | ${row.postgresOnly === undefined ? formatFigure(sqlite) : `n/a (${row.postgresOnly})`} | ${formatFigure(postgres)} | ${ratio(postgres, sqlite)} | ${roundRatios(row)} |`,
      );
    }
  }
  if (context.failures.length > 0) {
    lines.push("", "## Measurements that failed", "", ...context.failures.map((failure) => `- ${failure}`));
  }
  lines.push("");
  return lines.join("\n");
}

/** The lowest and highest PostgreSQL / SQLite ratio of one round (engines paired by round); "—" without pairs. */
function roundRatios(row: StoreRow): string {
  const { sqlite, postgres } = row.values;
  if (row.postgresOnly !== undefined || sqlite.length < 2 || sqlite.length !== postgres.length) return "—";
  const ratios = sqlite.map((s, i) => (postgres[i] as number) / s).filter((r) => Number.isFinite(r));
  if (ratios.length === 0) return "—";
  return `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}×`;
}

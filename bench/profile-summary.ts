/**
 * Summarises a V8 .cpuprofile (from `npm run bench -- --profile`): self time by function,
 * and by where the code lives (our src/, node:internal, each package under node_modules),
 * so that "what does the proxy spend its time on" is answered with numbers.
 *
 *   node --import tsx bench/profile-summary.ts bench/results/profile/CPU….cpuprofile [top]
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

function readProfile(path: string): ProfileNode[] {
  const parsed: unknown = JSON.parse(readFileSync(path, "utf8"));
  if (!isRecord(parsed) || !Array.isArray(parsed.nodes)) throw new Error(`${path} is not a .cpuprofile`);
  const nodes: ProfileNode[] = [];
  for (const node of parsed.nodes as unknown[]) {
    if (!isRecord(node) || typeof node.id !== "number" || !isRecord(node.callFrame)) continue;
    const frame = node.callFrame;
    nodes.push({
      id: node.id,
      callFrame: {
        functionName: typeof frame.functionName === "string" ? frame.functionName : "",
        url: typeof frame.url === "string" ? frame.url : "",
        lineNumber: typeof frame.lineNumber === "number" ? frame.lineNumber : -1,
      },
      hitCount: typeof node.hitCount === "number" ? node.hitCount : 0,
    });
  }
  return nodes;
}

/** Where a function lives: a package name, our own file, or the runtime. */
function area(url: string, name: string): string {
  if (url === "") return name.startsWith("(") ? name : "(native)";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg?.[1] !== undefined) return pkg[1];
  if (url.startsWith("node:")) return "node:internal";
  const own = /\/(src|test|bench)\/(.+)$/.exec(url);
  return own === null ? url : `${own[1]}/${own[2]}`;
}

function main(): void {
  const [path, topArg] = process.argv.slice(2);
  if (path === undefined) throw new Error("usage: profile-summary.ts <file.cpuprofile> [top]");
  const top = Number(topArg ?? 30);
  const nodes = readProfile(path);
  const total = nodes.reduce((sum, node) => sum + (node.hitCount ?? 0), 0);
  const byFunction = new Map<string, number>();
  const byArea = new Map<string, number>();
  for (const node of nodes) {
    const hits = node.hitCount ?? 0;
    if (hits === 0) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const where = area(url, functionName);
    const key = `${functionName || "(anonymous)"}  ${where}${lineNumber >= 0 && url !== "" ? `:${lineNumber + 1}` : ""}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + hits);
    byArea.set(where, (byArea.get(where) ?? 0) + hits);
  }
  const busy = total - (byArea.get("(idle)") ?? 0);
  const show = (title: string, table: Map<string, number>, rows: number): void => {
    console.log(`\n${title} (share of busy samples; ${busy} busy of ${total})`);
    for (const [key, hits] of [...table.entries()].filter(([k]) => k !== "(idle)" && !k.startsWith("(idle)")).sort((a, b) => b[1] - a[1]).slice(0, rows)) {
      console.log(`${((hits / busy) * 100).toFixed(1).padStart(5)} %  ${key}`);
    }
  };
  show("self time by area", byArea, 15);
  show("self time by function", byFunction, top);
}

main();

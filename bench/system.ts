/**
 * What the side-by-side benchmark needs from the machine: Debian tools installed on
 * demand, the file-descriptor limit, process memory and a description for the report.
 */
import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { cpus, totalmem } from "node:os";

/** True when `binary` is on disk, installing Debian's `pkg` with apt-get first if it is not. */
export function ensureTool(binary: string, pkg: string): boolean {
  if (spawnSync("test", ["-x", binary]).status === 0) return true;
  console.log(`${binary} is missing: apt-get install -y ${pkg}`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  spawnSync("apt-get", ["update", "-qq"], { stdio: "ignore", env, timeout: 180_000 });
  spawnSync("apt-get", ["install", "-y", "-qq", pkg], { stdio: "ignore", env, timeout: 300_000 });
  return spawnSync("test", ["-x", binary]).status === 0;
}

export interface FileLimit {
  wanted: number;
  /** The soft limit this process (and so every child it starts) ended up with. */
  soft: number;
  hard: number;
  /** What happened, for the report. */
  note: string;
}

function readOpenFilesLimit(): { soft: number; hard: number } {
  const line = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(readFileSync("/proc/self/limits", "utf8"));
  const parse = (text: string | undefined): number => (text === undefined || text === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(text));
  return { soft: parse(line?.[1]), hard: parse(line?.[2]) };
}

/**
 * Raises this process's open-files limit with prlimit(1), before any child starts, so that
 * every child inherits it: 10,000 proxied sockets are 20,000 descriptors in the proxy.
 * Raising the hard limit needs CAP_SYS_RESOURCE; without it, the soft limit goes up to the
 * hard one (Node usually did that already) and the report says what we got.
 */
export function raiseFileLimit(wanted: number): FileLimit {
  const attempt = (soft: number, hard: number): boolean =>
    spawnSync("prlimit", ["--pid", String(process.pid), `--nofile=${soft}:${hard}`], { stdio: "ignore" }).status === 0;
  const before = readOpenFilesLimit();
  let note: string;
  if (before.soft >= wanted) note = `already ${before.soft}`;
  else if (attempt(wanted, Math.max(wanted, before.hard))) note = `raised to ${wanted} with prlimit`;
  else if (attempt(before.hard, before.hard)) note = `prlimit could not go above the hard limit ${before.hard} (no CAP_SYS_RESOURCE); soft limit set to it`;
  else note = `prlimit failed; left at ${before.soft}`;
  const after = readOpenFilesLimit();
  return { wanted, soft: after.soft, hard: after.hard, note };
}

/** VmRSS of a process in KiB, or null when it is gone. */
export function rssKiB(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match?.[1] === undefined ? null : Number(match[1]);
  } catch {
    return null;
  }
}

/**
 * CPU time (user + system, ms) a process has used so far, from /proc/PID/stat; null when it
 * cannot be read. On a shared machine this is steadier than a rate: a process that waits
 * for a core is slower but not costlier.
 */
export function cpuMs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the parenthesised command name (which may hold spaces): utime and stime
    // are the 14th and 15th fields, in clock ticks (USER_HZ, 100 on Linux).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks * 10 : null;
  } catch {
    return null;
  }
}

/**
 * CPU time (ms) used so far by every process whose command is `command` (the PostgreSQL
 * server's: `postgres`), children that have exited included (a parent's cutime and cstime
 * hold theirs); null when /proc cannot be read. A total only: another client of the same
 * server counts too.
 */
export function commandCpuMs(command: string): number | null {
  try {
    let ticks = 0;
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      } catch {
        continue;
      }
      if (stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")) !== command) continue;
      // utime, stime, cutime and cstime: the 14th to 17th fields.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    }
    return Number.isFinite(ticks) ? ticks * 10 : null;
  } catch {
    return null;
  }
}

/** The direct children of a process (nginx's worker under its master). */
export function childPids(pid: number): number[] {
  const pids: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim();
      if (text !== "") pids.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    // The process is gone: no children.
  }
  return pids;
}

/** The 1-minute load average, to tell a quiet machine from one shared with other work. */
export function loadAverage(): number {
  return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
}

export function describeMachine(nginxVersion: string): string {
  const model = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown CPU";
  const nproc = spawnSync("nproc", { encoding: "utf8" }).stdout.trim() || String(cpus().length);
  const kernel = spawnSync("uname", ["-r"], { encoding: "utf8" }).stdout.trim();
  return `${nproc} CPUs (nproc; ${model}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${kernel}, Node ${process.version}, ${nginxVersion}`;
}

/**
 * Soak: 2,000 relayed sockets with traffic while sessions are created, revoked and expire
 * around them. Checks that no socket of a live session is dropped, every revoked or expired
 * one is closed with 4401, and the BFF's memory stays flat. Bounded in time; loopback only.
 *
 *   npm run soak                 (SOAK_SECONDS=60 SOAK_SOCKETS=2000 by default)
 */
import { fork } from "node:child_process";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { systemClock } from "../src/clock";
import { startRecordingBackend } from "../test/fixtures/backend";
import { startHarness } from "../test/fixtures/harness";

const SECONDS = Number(process.env.SOAK_SECONDS ?? 60);
const SOCKETS = Number(process.env.SOAK_SOCKETS ?? 2000);
const PER_SESSION = 4;
// SOAK_CHURN=0 keeps only the steady traffic, to tell the relay's memory from the logins'.
const CHURN = process.env.SOAK_CHURN !== "0";

interface GroupReport {
  open: number;
  closed4401: number;
  closedOther: number[];
  echoes: number;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

async function main(): Promise<void> {
  // An echo backend that keeps nothing, so memory growth would be ours.
  const backend = await startRecordingBackend({ record: false });
  // The real clock: sessions made to expire do so on their own.
  const h = await startHarness({
    env: { GAME_BACKEND_URL: backend.url, WS_MAX_SOCKETS_PER_SESSION: String(PER_SESSION), MAX_CONNECTIONS: "20000", MAX_CONNECTIONS_PER_IP: "20000" },
    // The audit log is discarded here: kept in memory it would be the one thing that grows.
    portcullis: { clock: systemClock, ws: { recheckMs: 2_000 }, auditStream: new Writable({ write: (_chunk, _encoding, done) => done() }) },
  });
  const clients = fork(fileURLToPath(new URL("./soak-clients.ts", import.meta.url)), { execArgv: ["--import", "tsx"] });
  const pending = new Map<string, () => void>();
  let lastReport: Record<string, GroupReport> = {};
  let failedOpens = 0;
  clients.on("message", (raw: unknown) => {
    const message = raw as { type: string; token?: string; groups?: Record<string, GroupReport>; failedOpens?: number };
    if (message.type === "opened" && message.token) pending.get(message.token)?.();
    if (message.type === "report") {
      lastReport = message.groups ?? {};
      failedOpens = message.failedOpens ?? 0;
      pending.get("report")?.();
    }
  });
  const open = (token: string, sockets: number, group: string): Promise<void> =>
    new Promise((resolve) => {
      pending.set(token, resolve);
      clients.send({ type: "open", origin: h.origin, token, sockets, group });
    });
  const report = (): Promise<Record<string, GroupReport>> =>
    new Promise((resolve) => {
      pending.set("report", () => resolve(lastReport));
      clients.send({ type: "report" });
    });

  // The long-lived players: real logins through the identity provider.
  const started = performance.now();
  const base: string[] = [];
  for (let i = 0; i < SOCKETS / PER_SESSION; i += 1) base.push((await h.login(`player-${i}`)).token);
  for (let i = 0; i < base.length; i += 50) await Promise.all(base.slice(i, i + 50).map((token) => open(token, PER_SESSION, "live")));
  console.log(`${base.length * PER_SESSION} sockets open for ${base.length} sessions in ${((performance.now() - started) / 1000).toFixed(1)} s`);

  global.gc?.();
  const rssStart = process.memoryUsage().rss;
  const heapStart = process.memoryUsage().heapUsed;
  const samples: number[] = [];
  let revoked = 0;
  let expiring = 0;
  const until = Date.now() + SECONDS * 1000;
  let tick = 0;
  while (Date.now() < until) {
    tick += 1;
    if (!CHURN) {
      samples.push(process.memoryUsage().rss);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      continue;
    }
    // Churn: each second a new player logs in and opens two sockets …
    const churn = await h.login(`churn-${tick}`);
    await open(churn.token, 2, "revoked");
    // … and is revoked through the API of another of its sessions.
    const killer = await h.login(`churn-${tick}`);
    const [churnId] = churn.token.split(".");
    await fetch(`${h.origin}/auth/sessions/${churnId}`, { method: "DELETE", headers: { cookie: `__Host-Http-session=${killer.token}`, ...h.csrf() } });
    revoked += 2;
    // Every fifth second, a session whose lifetime ends 3 s later, found by the recheck.
    if (tick % 5 === 0) {
      const account = h.bff.db.sqlite.prepare("SELECT account_id AS a FROM sessions WHERE id = ?").get(killer.token.split(".")[0]) as { a: string };
      const { token } = h.bff.sessions.create({
        accountId: account.a,
        provider: "demo",
        userAgent: "soak",
        tokens: { accessToken: "x", accessTokenExpiresAt: null, refreshToken: null, refreshTokenExpiresAt: Date.now() + 3_000, idToken: null },
      });
      await open(token, 2, "expired");
      expiring += 2;
    }
    samples.push(process.memoryUsage().rss);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  // Let the last expiries pass their recheck.
  await new Promise((resolve) => setTimeout(resolve, 6_000));
  global.gc?.();
  const rssEnd = process.memoryUsage().rss;
  const heapEnd = process.memoryUsage().heapUsed;
  const result = await report();
  clients.send({ type: "stop" });

  const live = result.live ?? { open: 0, closed4401: 0, closedOther: [], echoes: 0 };
  const gone = result.revoked ?? { open: 0, closed4401: 0, closedOther: [], echoes: 0 };
  const expired = result.expired ?? { open: 0, closed4401: 0, closedOther: [], echoes: 0 };
  const lines = [
    `soak: ${SECONDS} s, ${base.length * PER_SESSION} live sockets with 1 message/s each, ${tick} churn rounds`,
    `live sockets still open: ${live.open}/${base.length * PER_SESSION} (dropped: ${live.closed4401 + live.closedOther.length}), echoes received: ${live.echoes}`,
    `revoked sockets closed with 4401: ${gone.closed4401}/${revoked} (still open: ${gone.open}, other codes: ${JSON.stringify(gone.closedOther)})`,
    `expired sockets closed with 4401: ${expired.closed4401}/${expiring} (still open: ${expired.open})`,
    `failed opens: ${failedOpens}`,
    `process RSS (BFF + identity provider + echo backend): start ${mib(rssStart)}, min ${mib(Math.min(...samples))}, max ${mib(Math.max(...samples))}, end ${mib(rssEnd)}`,
    `JS heap after GC: start ${mib(heapStart)}, end ${mib(heapEnd)} (${CHURN ? tick * 2 : 0} logins in between; the in-process identity provider keeps its grants in memory)`,
  ];
  console.log(lines.join("\n"));
  await h.close();
  await backend.close();
  const ok = live.open === base.length * PER_SESSION && gone.closed4401 === revoked && expired.closed4401 === expiring;
  process.exit(ok ? 0 : 1);
}

void main();

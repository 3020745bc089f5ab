/**
 * What the store costs one request, engine beside engine, in this process (issue 13's 0.7×):
 * the calls `/api` and a connection setup make, `concurrency` at a time, for `ms` each, with
 * this process's CPU time per operation. No HTTP, no relay: only the store.
 *
 *   node --import tsx bench/store-ops.ts [--ms N] [--concurrency N] [--engine sqlite|postgres] [--only api|setup]
 *
 * PostgreSQL is the server PORTCULLIS_TEST_DATABASE_URL names (the tests' one by default).
 */
import { performance } from "node:perf_hooks";
import { openEngine, type EngineName } from "../test/store/engines";
import type { Store } from "../src/store/types";
import { commandCpuMs } from "./system";

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(name);
  return i === -1 ? fallback : Number(process.argv[i + 1]);
};
const text = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i === -1 ? undefined : process.argv[i + 1];
};
const MS = arg("--ms", 2_000);
const CONCURRENCY = arg("--concurrency", 16);

type Op = (store: Store, token: string) => Promise<void>;

/** What `/api`, `POST /auth/ws-ticket` and an upgrade (and its close) ask of the store, in their order. */
const ops: Record<string, Op> = {
  issue: async (store, token) => {
    await store.tickets.issue(token.slice(0, 26));
  },
  admitRelease: async (store, token) => {
    const { ticket } = await store.tickets.issue(token.slice(0, 26));
    const admission = await store.socketSlots.admit(ticket, token.slice(0, 26), 1_000_000);
    if (admission.status !== "admitted") throw new Error(admission.status);
    await store.socketSlots.release(admission.slot);
  },
  api: async (store, token) => {
    if ((await store.sessions.authenticate(token, { slide: true })) === null) throw new Error("no session");
  },
  setup: async (store, token) => {
    const found = await store.sessions.authenticate(token, { slide: true });
    if (found === null) throw new Error("no session");
    const { ticket } = await store.tickets.issue(found.session.id);
    const again = await store.sessions.authenticate(token, { slide: true });
    if (again === null) throw new Error("no session");
    const admission = await store.socketSlots.admit(ticket, again.session.id, 1_000_000);
    if (admission.status !== "admitted") throw new Error(admission.status);
    await store.socketSlots.release(admission.slot);
  },
};

async function measure(engine: EngineName): Promise<void> {
  const e = await openEngine(engine);
  try {
    const store = await e.node();
    const { account } = await store.accounts.findOrCreate({ issuer: "https://id.example", subject: "b", displayName: "B" }, "demo");
    const tokens: string[] = [];
    for (let i = 0; i < CONCURRENCY; i++) {
      const { token } = await store.sessions.create({
        accountId: account.id, provider: "demo", userAgent: "bench",
        tokens: { accessToken: "a".repeat(900), accessTokenExpiresAt: null, refreshToken: "r".repeat(64), refreshTokenExpiresAt: null, idToken: "i".repeat(900) },
      });
      tokens.push(token);
    }
    for (const [name, op] of Object.entries(ops).filter(([n]) => text("--only") === undefined || n === text("--only"))) {
      for (const phase of ["warm", "measure"]) {
        let done = 0;
        const cpu = process.cpuUsage();
        const server = commandCpuMs("postgres");
        const start = performance.now();
        const end = start + (phase === "warm" ? 300 : MS);
        await Promise.all(tokens.map(async (token) => {
          while (performance.now() < end) { await op(store, token); done++; }
        }));
        const wall = performance.now() - start;
        const used = process.cpuUsage(cpu);
        const serverAfter = commandCpuMs("postgres");
        const serverNote = engine === "postgres" && server !== null && serverAfter !== null ? `, server ${(((serverAfter - server) * 1000) / done).toFixed(0)} µs/op` : "";
        if (phase === "measure") {
          console.log(`${engine.padEnd(8)} ${name.padEnd(6)} ${(done / wall * 1000).toFixed(0).padStart(7)} ops/s  ${((used.user + used.system) / done).toFixed(0).padStart(5)} µs CPU/op in this process (user ${(used.user / done).toFixed(0)}, system ${(used.system / done).toFixed(0)})${serverNote}`);
        }
      }
    }
  } finally {
    await e.close();
  }
}

const only = text("--engine") as EngineName | undefined;
for (const engine of only === undefined ? (["sqlite", "postgres"] as const) : [only]) await measure(engine);

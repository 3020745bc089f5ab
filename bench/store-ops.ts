/**
 * What the store costs one request, engine beside engine, in this process (issue 13's 0.7×):
 * the calls an `/api` request and a connection setup make, one chain per player, `--players`
 * at a time, for `--ms` each, with this process's CPU time per operation and, on
 * PostgreSQL, the database server's. No HTTP, no relay: only the store.
 *
 *   node --import tsx bench/store-ops.ts [--ms N] [--players N] [--engine sqlite|postgres] [--only NAME]
 *
 * PostgreSQL is the server PORTCULLIS_TEST_DATABASE_URL names (the tests' one by default);
 * its "server" figure counts every postgres process on this machine.
 */
import { performance } from "node:perf_hooks";
import type { Store } from "../src/store/types";
import { openEngine, type EngineName } from "../test/store/engines";
import { commandCpuMs } from "./system";

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i === -1 ? undefined : process.argv[i + 1];
}
const MS = Number(flag("--ms") ?? 2_000);
const PLAYERS = Number(flag("--players") ?? 16);
const ONLY = flag("--only");
const ENGINE = flag("--engine") as EngineName | undefined;

interface Player {
  token: string;
  sessionId: string;
}
type Op = (store: Store, player: Player) => Promise<void>;

function admitted(admission: Awaited<ReturnType<Store["socketSlots"]["admit"]>>): string {
  if (admission.status !== "admitted") throw new Error(`not admitted: ${admission.status}`);
  return admission.slot;
}

/** What each request asks of the store, in its order; the last two are parts of a setup. */
const ops: Record<string, Op> = {
  api: async (store, { token }) => {
    if ((await store.sessions.authenticate(token, { slide: true })) === null) throw new Error("no session");
  },
  setup: async (store, { token }) => {
    const found = await store.sessions.authenticate(token, { slide: true });
    if (found === null) throw new Error("no session");
    const { ticket } = await store.tickets.issue(found.session.id);
    const again = await store.sessions.authenticate(token, { slide: true });
    if (again === null) throw new Error("no session");
    await store.socketSlots.release(admitted(await store.socketSlots.admit(ticket, again.session.id, 1_000_000)));
  },
  "ticket-issue": async (store, { sessionId }) => {
    await store.tickets.issue(sessionId);
  },
  "issue-admit-release": async (store, { sessionId }) => {
    const { ticket } = await store.tickets.issue(sessionId);
    await store.socketSlots.release(admitted(await store.socketSlots.admit(ticket, sessionId, 1_000_000)));
  },
};

async function measure(engine: EngineName): Promise<void> {
  const e = await openEngine(engine);
  try {
    const store = await e.node();
    const { account } = await store.accounts.findOrCreate({ issuer: "https://id.example", subject: "bench", displayName: "Bench" }, "demo");
    const players: Player[] = [];
    for (let i = 0; i < PLAYERS; i++) {
      const { session, token } = await store.sessions.create({
        accountId: account.id,
        provider: "demo",
        userAgent: "bench",
        // Tokens of a realistic size: the session row carries them.
        tokens: { accessToken: "a".repeat(900), accessTokenExpiresAt: null, refreshToken: "r".repeat(64), refreshTokenExpiresAt: null, idToken: "i".repeat(900) },
      });
      players.push({ token, sessionId: session.id });
    }
    for (const [name, op] of Object.entries(ops)) {
      if (ONLY !== undefined && name !== ONLY) continue;
      for (const phase of ["warm-up", "measure"]) {
        let done = 0;
        const cpu = process.cpuUsage();
        const server = commandCpuMs("postgres");
        const start = performance.now();
        const end = start + (phase === "warm-up" ? 300 : MS);
        await Promise.all(
          players.map(async (player) => {
            while (performance.now() < end) {
              await op(store, player);
              done++;
            }
          }),
        );
        const wall = performance.now() - start;
        const used = process.cpuUsage(cpu);
        const serverAfter = commandCpuMs("postgres");
        if (phase !== "measure") continue;
        const perOp = (micros: number): string => (micros / done).toFixed(0);
        const serverNote = engine === "postgres" && server !== null && serverAfter !== null ? `, server ${perOp((serverAfter - server) * 1000)} µs/op` : "";
        console.log(
          `${engine.padEnd(8)} ${name.padEnd(20)} ${((done / wall) * 1000).toFixed(0).padStart(7)} ops/s  ${perOp(used.user + used.system).padStart(5)} µs CPU/op here (user ${perOp(used.user)}, system ${perOp(used.system)})${serverNote}`,
        );
      }
    }
  } finally {
    await e.close();
  }
}

for (const engine of ENGINE === undefined ? (["sqlite", "postgres"] as const) : [ENGINE]) await measure(engine);

import { userInfo } from "node:os";
import { parseArgs } from "node:util";
import { OperatorStore, type AccountRef, type AccountSummary, type SessionSummary } from "./admin/operator-store";
import { PostgresOperatorStore } from "./admin/operator-store-pg";
import { systemClock } from "./clock";
import { ConfigError, loadOperatorConfig, readEnvironment } from "./config";
import { openDatabase } from "./db/database";

const USAGE = `Usage: npm run portcullis -- <command> <player> [options]

Commands (they work while the server runs: it notices within a second, closes the
player's sockets with 4401 and writes the audit events):
  sessions       list the player's sessions
  end-sessions   end all of the player's sessions (they can log in again)
  block          block the account: its sessions end and it cannot log in again
  unblock        lift a block

The player is named by one of:
  --account <id>                        Portcullis's account id (GET /auth/me "user.id")
  --provider <name> --subject <sub>     the identity provider's name and its subject

Options:
  --reason <text>     why (block; kept with the block and in the audit log)
  --operator <name>   who runs this, for the audit log (default: the OS user)
  --json              machine-readable output
  --help              this text

Environment, as for the server (a .env file is read when present): DATABASE_URL for a
cluster on PostgreSQL (every node closes the player's sockets), otherwise DATABASE_PATH
(SQLite). No keys are needed.
Exit status: 0 done, 1 no such player, 2 usage or configuration error.`;

const COMMANDS = new Set(["sessions", "end-sessions", "block", "unblock"]);
// What may be written to the audit log as an operator's name or reason.
const OPERATOR_NAME = /^[\w.@-]{1,64}$/;
const MAX_REASON = 200;

interface Output {
  stdout: (line: string) => void;
  stderr: (line: string) => void;
}

/**
 * Runs one command; returns the exit status: at once on SQLite (better-sqlite3 is
 * synchronous), as a promise on PostgreSQL (DATABASE_URL). Exported for the tests.
 */
export function runCLI(argv: string[], env: Record<string, string | undefined>, raw: Output): number | Promise<number> {
  // Display names and user agents are the players' words: printed raw, an escape sequence
  // in one could rewrite the operator's terminal (title, screen, a fake prompt; review F4).
  const out: Output = { stdout: (text) => raw.stdout(terminalSafe(text)), stderr: (text) => raw.stderr(terminalSafe(text)) };
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        account: { type: "string" },
        provider: { type: "string" },
        subject: { type: "string" },
        reason: { type: "string" },
        operator: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    });
  } catch (error) {
    out.stderr(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out.stdout(USAGE);
    return 0;
  }
  const command = positionals[0];
  if (command === undefined || !COMMANDS.has(command) || positionals.length > 1) {
    out.stderr(`${command === undefined ? "No command given." : `Unknown command "${positionals.join(" ")}".`}\n\n${USAGE}`);
    return 2;
  }
  let ref: AccountRef;
  if (values.account !== undefined && values.provider === undefined && values.subject === undefined) {
    ref = { accountId: values.account };
  } else if (values.account === undefined && values.provider !== undefined && values.subject !== undefined) {
    ref = { provider: values.provider, subject: values.subject };
  } else {
    out.stderr(`Name the player with --account, or with --provider and --subject.\n\n${USAGE}`);
    return 2;
  }
  const operator = values.operator ?? osUser();
  if (!OPERATOR_NAME.test(operator)) {
    out.stderr("--operator: 1 to 64 letters, digits, dots, dashes, underscores or @.");
    return 2;
  }
  const reason = (values.reason ?? "blocked by an operator").replace(/[\u0000-\u001f\u007f]/g, " ").slice(0, MAX_REASON);

  let config: { databasePath: string; databaseURL: string | null };
  try {
    config = loadOperatorConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      out.stderr(error.message);
      return 2;
    }
    throw error;
  }
  const request: Request = { command, ref, reason, json: values.json };
  if (config.databaseURL !== null) {
    return runOnPostgres(PostgresOperatorStore.open(config.databaseURL, systemClock, operator), request, out);
  }
  const db = openDatabase(config.databasePath);
  try {
    const store = new OperatorStore(db, systemClock, operator);
    const account = store.findAccount(ref);
    if (account === null) {
      out.stderr("No such player.");
      return 1;
    }
    switch (command) {
      case "sessions":
        report(request, account, { sessions: store.listSessions(account.id) }, out);
        return 0;
      case "end-sessions":
        report(request, account, { ended: store.endSessions(account.id) }, out);
        return 0;
      case "block":
        report(request, account, { block: store.block(account.id, reason) }, out);
        return 0;
      default:
        report(request, account, { unblocked: store.unblock(account.id) }, out);
        return 0;
    }
  } finally {
    db.close();
  }
}

/** What the operator asked, once the arguments are understood. */
interface Request {
  command: string;
  ref: AccountRef;
  reason: string;
  json: boolean;
}

/** What one command did, on either engine. */
type Outcome =
  | { sessions: SessionSummary[] }
  | { ended: number }
  | { block: { ended: number; alreadyBlocked: boolean } }
  | { unblocked: boolean };

/**
 * The same commands on the cluster's database. Each returns once its transaction has
 * committed, and with it the NOTIFY every node listens for: the nodes close the sockets
 * within a second of that (issue 15, tested in test/admin/cli-postgres.test.ts).
 */
async function runOnPostgres(store: PostgresOperatorStore, request: Request, out: Output): Promise<number> {
  try {
    const account = await store.findAccount(request.ref);
    if (account === null) {
      out.stderr("No such player.");
      return 1;
    }
    switch (request.command) {
      case "sessions":
        report(request, account, { sessions: await store.listSessions(account.id) }, out);
        return 0;
      case "end-sessions":
        report(request, account, { ended: await store.endSessions(account.id) }, out);
        return 0;
      case "block":
        report(request, account, { block: await store.block(account.id, request.reason) }, out);
        return 0;
      default:
        report(request, account, { unblocked: await store.unblock(account.id) }, out);
        return 0;
    }
  } catch (error) {
    // Unreachable database, refused login, no tables yet: said in one line, never the URL
    // (it may hold a password), which postgres.js does not put in its messages.
    out.stderr(`The database could not be used: ${error instanceof Error ? error.message : String(error)}`);
    return 2;
  } finally {
    await store.close();
  }
}

function report(request: Request, account: AccountSummary, outcome: Outcome, out: Output): void {
  const { json } = request;
  if ("sessions" in outcome) {
    const { sessions } = outcome;
    if (json) {
      out.stdout(JSON.stringify({ account: describe(account), sessions: sessions.map((s) => ({ ...s, ...isoTimes(s) })) }));
    } else {
      out.stdout(header(account));
      out.stdout(sessions.length === 0 ? "  no sessions" : sessions.map((s) => `  ${s.id}  ${s.provider}  created ${iso(s.createdAt)}  last seen ${iso(s.lastSeenAt)}  ${s.userAgent}`).join("\n"));
    }
  } else if ("ended" in outcome) {
    out.stdout(json ? JSON.stringify({ account: describe(account), ended: outcome.ended }) : `${header(account)}\n  ended ${outcome.ended} session(s)`);
  } else if ("block" in outcome) {
    const { ended, alreadyBlocked } = outcome.block;
    out.stdout(
      json
        ? JSON.stringify({ account: describe(account), blocked: true, alreadyBlocked, ended })
        : `${header(account)}\n  ${alreadyBlocked ? "was already blocked" : "blocked"}; ended ${ended} session(s)`,
    );
  } else {
    const lifted = outcome.unblocked;
    out.stdout(json ? JSON.stringify({ account: describe(account), unblocked: lifted }) : `${header(account)}\n  ${lifted ? "unblocked" : "was not blocked"}`);
  }
}

function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    // No passwd entry (some containers): the operator must say who they are.
    return "unknown";
  }
}

function describe(account: AccountSummary): Record<string, unknown> {
  return {
    id: account.id,
    displayName: account.displayName,
    identities: account.identities,
    blocked: account.blocked === null ? null : { ...account.blocked, at: iso(account.blocked.at) },
  };
}

function header(account: AccountSummary): string {
  const ids = account.identities.map((i) => `${i.provider}:${i.subject}`).join(", ");
  const block = account.blocked === null ? "" : ` [blocked ${iso(account.blocked.at)} by ${account.blocked.by}: ${account.blocked.reason}]`;
  return `account ${account.id} "${account.displayName}" (${ids})${block}`;
}

function isoTimes(s: { createdAt: number; lastSeenAt: number; expiresAt: number }): Record<string, string> {
  return { createdAt: iso(s.createdAt), lastSeenAt: iso(s.lastSeenAt), expiresAt: iso(s.expiresAt) };
}

// C0 controls but line feed, DEL, the C1 controls (0x9b is a one-byte CSI) and the Unicode
// line separators: what a terminal or a log viewer may act on instead of printing.
const TERMINAL_CONTROLS = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029]/g;

/** The text with every control character shown as `\u00XX`, line breaks kept. */
export function terminalSafe(text: string): string {
  return text.replace(TERMINAL_CONTROLS, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

// Run as a program (tsx src/cli.ts), not when imported by a test.
if (process.argv[1] !== undefined && /cli\.ts$/.test(process.argv[1])) {
  void Promise.resolve(
    runCLI(process.argv.slice(2), readEnvironment(), {
      stdout: (line) => process.stdout.write(`${line}\n`),
      stderr: (line) => process.stderr.write(`${line}\n`),
    }),
  ).then((status) => {
    process.exitCode = status;
  });
}

import { execFile } from "node:child_process";
import { userInfo } from "node:os";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { OAuth2Client, OAuth2RequestError } from "arctic";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../fixtures/agent";
import { startRecordingBackend, type RecordingBackend } from "../fixtures/backend";
import { CLIENT_ID, startHarness, type Harness } from "../fixtures/harness";
import { closeOf, mintTicket, openSocket } from "../fixtures/ws-client";
import { runCLI } from "../../src/cli";

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");

/**
 * The operator's command (`npm run portcullis`), run as what it is: another process, on the
 * same SQLite file, while the server runs. Its effects must reach the running server's
 * sockets within 1 s of the command returning (issue 15).
 */
describe("the operator command against a running server", () => {
  let backend: RecordingBackend;
  let h: Harness;
  beforeAll(async () => {
    backend = await startRecordingBackend();
    h = await startHarness({ env: { GAME_BACKEND_URL: backend.url } });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
  });

  async function portcullis(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await run("npx", ["tsx", "src/cli.ts", ...args], {
        cwd: ROOT,
        env: { ...process.env, DATABASE_PATH: h.env.DATABASE_PATH },
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      return { code: failed.code ?? -1, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
    }
  }

  const me = (token: string): Promise<number> => fetch(`${h.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${token}` } }).then((r) => r.status);
  const ticketStatus = (token: string): Promise<number> =>
    fetch(`${h.origin}/auth/ws-ticket`, { method: "POST", headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } }).then((r) => r.status);

  /** The close code, or a rejection if the socket is still open `ms` after `since` (the command's return). */
  function closedBy(ws: Awaited<ReturnType<typeof openSocket>>, since: () => number, ms = 1_000): Promise<number> {
    return new Promise((resolvePromise, reject) => {
      ws.once("close", (code) => {
        // Closed while the command was still running (since() is 0 until it returns): in time.
        const late = since() === 0 ? 0 : Date.now() - since();
        if (late > ms) reject(new Error(`closed ${late} ms after the command returned`));
        else resolvePromise(code);
      });
      const check = setInterval(() => {
        if (since() > 0 && Date.now() - since() > ms) {
          clearInterval(check);
          reject(new Error(`socket still open ${ms} ms after the command returned`));
        }
      }, 50);
      void closeOf(ws).then(() => clearInterval(check));
    });
  }

  it("blocks a player: the open socket closes with 4401 within 1 s, and the account stays out", async () => {
    const { agent, token } = await h.login("cheater");
    const ws = await openSocket(h, await mintTicket(h, token), { token });
    let returnedAt = 0;
    const closed = closedBy(ws, () => returnedAt);
    const result = await portcullis("block", "--provider", "demo", "--subject", "cheater", "--reason", "aimbot", "--operator", "ops-alice");
    returnedAt = Date.now();
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("blocked; ended 1 session(s)");
    expect(await closed).toBe(4401);

    expect(await me(token)).toBe(401);
    expect(await ticketStatus(token)).toBe(401);
    // Logging in again is refused with a page that says so, not a 500, and no session.
    const again = await new Agent().login(h.origin, "cheater");
    expect(again.status).toBe(403);
    expect(again.headers.get("content-type")).toMatch(/^text\/html/);
    expect(await again.text()).toContain("Account blocked");
    expect(agent.cookie(h.origin, "__Host-Http-session")).toBe(token);

    const blocked = h.audit.named("operator.account.blocked").at(-1);
    expect(blocked).toMatchObject({ operator: "ops-alice", reason: "aimbot" });
    expect(h.audit.named("session.revoked").some((e) => e.reason === "operator" && e.session === h.bff.audit.sessionRef(token.split(".")[0] ?? ""))).toBe(true);
    expect(h.audit.named("login.failure").some((e) => e.reason === "account blocked")).toBe(true);

    // Unblocked, the player can come back.
    const lifted = await portcullis("unblock", "--account", String(blocked?.accountId), "--operator", "ops-alice");
    expect(lifted.code).toBe(0);
    expect((await new Agent().login(h.origin, "cheater")).status).toBe(200);
  }, 60_000);

  it("ends all of a player's sessions, listed before and after, each action audited with the OS user", async () => {
    const first = await h.login("ended-player");
    await h.login("ended-player");
    const ws = await openSocket(h, await mintTicket(h, first.token), { token: first.token });
    const accountId = ((await (await first.agent.fetch(`${h.origin}/auth/me`)).json()) as { user: { id: string } }).user.id;

    const listed = await portcullis("sessions", "--account", accountId, "--json");
    expect(listed.code).toBe(0);
    expect((JSON.parse(listed.stdout) as { sessions: unknown[] }).sessions).toHaveLength(2);

    let returnedAt = 0;
    const closed = closedBy(ws, () => returnedAt);
    const ended = await portcullis("end-sessions", "--account", accountId);
    returnedAt = Date.now();
    expect(ended.stdout).toContain("ended 2 session(s)");
    expect(await closed).toBe(4401);
    expect(await me(first.token)).toBe(401);
    // Not blocked: the player may log in again.
    expect((await new Agent().login(h.origin, "ended-player")).status).toBe(200);

    const after = await portcullis("sessions", "--account", accountId, "--json");
    expect((JSON.parse(after.stdout) as { sessions: unknown[] }).sessions).toHaveLength(1);
    // The audit line follows the server's next look at the database (every 250 ms); only the
    // sockets' 1 s is a requirement, so a loaded machine gets more time for the line.
    const until = Date.now() + 5_000;
    while (h.audit.named("operator.sessions.listed").length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(h.audit.named("operator.sessions.listed").filter((e) => e.accountId === accountId)).toHaveLength(2);
    expect(h.audit.named("operator.sessions.ended").at(-1)).toMatchObject({ accountId, operator: userInfo().username, count: 2 });
  }, 60_000);

  it("refuses a blocked account's session even before the server has noticed the block", async () => {
    const { token } = await h.login("blocked-in-db");
    const accountId = (h.bff.db.sqlite.prepare("SELECT account_id AS a FROM sessions WHERE id = ?").get(token.split(".")[0]) as { a: string }).a;
    h.bff.db.sqlite.prepare("INSERT INTO account_blocks (account_id, blocked_at, blocked_by, reason) VALUES (?, 0, 'test', 'test')").run(accountId);
    expect(await me(token)).toBe(401);
    expect(await ticketStatus(token)).toBe(401);
  });

  it("hands over what it did while the server was down: audited and the refresh tokens revoked when the server starts", async () => {
    const offline = await startHarness({ env: { GAME_BACKEND_URL: backend.url } });
    const { token } = await offline.login("offline-player");
    const refreshToken = offline.idp.issued.refreshTokens.at(-1) ?? "";
    await offline.stop();
    const out = { stdout: "", stderr: "" };
    const code = runCLI(
      ["end-sessions", "--provider", "demo", "--subject", "offline-player", "--operator", "night-shift"],
      { DATABASE_PATH: offline.env.DATABASE_PATH },
      { stdout: (l) => (out.stdout += l), stderr: (l) => (out.stderr += l) },
    );
    expect(code).toBe(0);
    const again = await startHarness({
      databasePath: offline.env.DATABASE_PATH,
      port: Number(new URL(offline.origin).port),
      reuseIdP: { idp: offline.idp, other: null, clientSecret: offline.clientSecret },
      env: {
        GAME_BACKEND_URL: backend.url,
        TOKEN_ENCRYPTION_KEYS: offline.env.TOKEN_ENCRYPTION_KEYS ?? "",
        ASSERTION_SIGNING_KEYS: offline.env.ASSERTION_SIGNING_KEYS ?? "",
      },
    });
    try {
      expect(await fetch(`${again.origin}/auth/me`, { headers: { cookie: `__Host-Http-session=${token}` } }).then((r) => r.status)).toBe(401);
      expect(again.audit.named("operator.sessions.ended").at(-1)).toMatchObject({ operator: "night-shift", count: 1 });
      expect(again.audit.named("session.revoked").some((e) => e.reason === "operator")).toBe(true);
      // SECURITY.md I43: the ended session's grant is revoked at the provider.
      await again.bff.sessions.revocationsSettled();
      const client = new OAuth2Client(CLIENT_ID, offline.clientSecret, null);
      const outcome = await client.refreshAccessToken(`${offline.idp.issuer}/token`, refreshToken, []).catch((e: unknown) => e);
      expect(outcome instanceof OAuth2RequestError ? outcome.code : "ok").toBe("invalid_grant");
      // Handled once: the sealed refresh token is gone from the hand-over table.
      const left = again.bff.db.sqlite.prepare("SELECT COUNT(*) AS n FROM operator_actions WHERE handled_at IS NULL OR refresh_token IS NOT NULL").get() as { n: number };
      expect(left.n).toBe(0);
    } finally {
      await again.stop();
      await offline.close();
    }
  });

  it("prints a player's display name and user agent with their control characters escaped (review F4)", async () => {
    const { token } = await h.login("escape-artist");
    const sessionId = token.split(".")[0] ?? "";
    const row = h.bff.db.sqlite.prepare("SELECT account_id AS a FROM sessions WHERE id = ?").get(sessionId) as { a: string };
    // What a hostile provider or browser could have stored: OSC (set title), CSI (clear), a
    // one-byte C1 CSI, a bell, a carriage return to overwrite the line.
    const hostile = "\u001b]0;owned\u0007\u001b[2J\u009b31m\rroot@prod:~# ";
    h.bff.db.sqlite.prepare("UPDATE sessions SET user_agent = ? WHERE id = ?").run(hostile, sessionId);
    h.bff.db.sqlite.prepare("UPDATE accounts SET display_name = ? WHERE id = ?").run(`Eve${hostile}`, row.a);
    for (const format of [[], ["--json"]]) {
      const out = { stdout: "", stderr: "" };
      const code = runCLI(["sessions", "--account", row.a, ...format], { DATABASE_PATH: h.env.DATABASE_PATH }, { stdout: (l) => (out.stdout += l), stderr: (l) => (out.stderr += l) });
      expect(code).toBe(0);
      expect(out.stdout).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
      expect(out.stdout).toContain("owned");
    }
  });

  it("explains itself with --help, and refuses a missing player or bad arguments (in process)", () => {
    const call = (...args: string[]): { code: number | Promise<number>; stdout: string; stderr: string } => {
      const out = { stdout: "", stderr: "" };
      const code = runCLI(args, { DATABASE_PATH: h.env.DATABASE_PATH }, { stdout: (l) => (out.stdout += l), stderr: (l) => (out.stderr += l) });
      return { code, ...out };
    };
    const help = call("--help");
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: npm run portcullis");
    expect(call("block", "--account", "no-such-account").code).toBe(1);
    expect(call("block").code).toBe(2);
    expect(call("block", "--account", "a", "--provider", "demo").code).toBe(2);
    expect(call("explode", "--account", "x").code).toBe(2);
    expect(call("block", "--account", "x", "--operator", "evil\nname").code).toBe(2);
  });
});

import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRecordingBackend, type RecordingBackend } from "../fixtures/backend";
import { Agent } from "../fixtures/agent";
import { startHarness, testKey, type Harness } from "../fixtures/harness";
import { until } from "../fixtures/wait";
import { closeOf, mintTicket, nextMessage, openSocket } from "../fixtures/ws-client";

/**
 * SECURITY.md G33 (issue 17): each hostile or secret value here really reaches the server
 * (a logged field, a relayed frame, a close handshake, the token endpoint), and the log is
 * read black-box: the stream the server was given and the AUDIT_LOG_PATH file, whatever
 * writes them.
 */
describe("audit log canaries (SECURITY.md G33, ASVS 16.2.5)", () => {
  let backend: RecordingBackend;
  let h: Harness;
  let logPath: string;
  beforeAll(async () => {
    backend = await startRecordingBackend();
    logPath = join(mkdtempSync(join(tmpdir(), "portcullis-canaries-")), "audit.log");
    h = await startHarness({ env: { GAME_BACKEND_URL: backend.url, AUDIT_LOG_PATH: logPath } });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
  });

  /** The audit file once everything written so far has reached it. */
  async function fileText(): Promise<string> {
    h.bff.audit.flush();
    await new Promise((resolve) => setTimeout(resolve, 50));
    return readFileSync(logPath, "utf8");
  }

  /** Every line of a JSON-lines text, each parsed; throws on a line that is not one JSON object. */
  function parseLines(text: string): Record<string, unknown>[] {
    expect(text.endsWith("\n")).toBe(true);
    // A raw CR would let a terminal or a CR-splitting reader start a forged line.
    expect(text).not.toContain("\r");
    return text
      .slice(0, -1)
      .split("\n")
      .map((line) => {
        const parsed: unknown = JSON.parse(line);
        expect(typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)).toBe(true);
        return parsed as Record<string, unknown>;
      });
  }

  it("escapes CR, LF and U+2028 that really reach a logged field: every line parses and the values round-trip", async () => {
    // 1. The request path of a CSRF refusal: Hono decodes %0D%0A into the logged `path`.
    // (No reserved character such as ':' in it, which path decoding keeps encoded.)
    const forgedPath = 'x\r\n{"event" "login.success" "forged" true}\r\u2028\u2029y';
    const refused = await fetch(`${h.origin}/auth/${encodeURIComponent(forgedPath)}`, { method: "POST" });
    expect(refused.status).toBe(403);
    // 2. A provider's `error` on a real login's callback: logged whole as the failure's detail.
    const forgedDetail = 'denied\r\n{"event":"login.success","forged":true}\n\u2028{"event":"session.created"}';
    const agent = new Agent();
    const authorization = await agent.startLogin(h.origin);
    const state = authorization.searchParams.get("state") ?? "";
    const callback = await agent.fetch(`${h.origin}/auth/callback/demo?state=${encodeURIComponent(state)}&error=${encodeURIComponent(forgedDetail)}`);
    expect(callback.status).toBeLessThan(500);

    for (const text of [h.audit.text(), await fileText()]) {
      const events = parseLines(text);
      expect(events.some((e) => e.event === "csrf.refused" && e.path === `/auth/${forgedPath}`)).toBe(true);
      expect(events.some((e) => e.event === "login.failure" && e.detail === forgedDetail)).toBe(true);
      expect(events.some((e) => e.forged !== undefined || e.event === "forged")).toBe(false);
    }
  });

  it("never logs frame bodies or close reasons, either way, nor the ticket", async () => {
    const canary = (what: string): string => `canary-${what}-${randomBytes(12).toString("hex")}`;
    const { token } = await h.login("canary-player");
    const ticket = await mintTicket(h, token);
    const ws = await openSocket(h, ticket, { token });
    const toBackend = canary("browser-frame");
    ws.send(toBackend);
    expect((await nextMessage(ws)).data.toString()).toBe(toBackend);
    ws.send(Buffer.from(canary("browser-binary")));
    await nextMessage(ws);
    const fromBackend = canary("backend-frame");
    const backendSocket = backend.sockets.at(-1);
    backendSocket?.send(fromBackend);
    expect((await nextMessage(ws)).data.toString()).toBe(fromBackend);

    const browserReason = canary("browser-close");
    const closes = h.audit.named("ws.closed").length;
    const closed = closeOf(ws);
    ws.close(4100, browserReason);
    await closed;
    await until(() => h.audit.named("ws.closed").length > closes, "the ws.closed event");
    expect(backend.closes.at(-1)?.reason).toBe(browserReason);

    // The backend's own close reason, passed through to the browser.
    const second = await h.login("canary-player-2");
    const ws2 = await openSocket(h, await mintTicket(h, second.token), { token: second.token });
    const backendReason = canary("backend-close");
    const closed2 = closeOf(ws2);
    backend.sockets.at(-1)?.close(4200, backendReason);
    expect((await closed2).reason).toBe(backendReason);
    await until(() => h.audit.named("ws.closed").length > closes + 1, "the second ws.closed event");

    for (const log of [h.audit.text(), await fileText()]) {
      for (const value of [toBackend, fromBackend, browserReason, backendReason, "canary-browser-binary", ticket]) {
        expect(log).not.toContain(value);
      }
      // The close codes themselves are logged (SECURITY.md G32).
      expect(log).toContain('"code":4100');
    }
  });

  it("never logs the ID token or the PKCE verifier", async () => {
    // The verifier as the BFF sent it to the token endpoint (the provider's own event).
    const verifiers: string[] = [];
    const onGrant = (ctx: unknown): void => {
      const verifier = (ctx as { oidc?: { params?: { code_verifier?: unknown } } }).oidc?.params?.code_verifier;
      if (typeof verifier === "string") verifiers.push(verifier);
    };
    h.idp.provider.on("grant.success", onGrant);
    const idTokensBefore = h.idp.issued.idTokens.length;
    await h.login("pkce-canary");
    const idTokens = h.idp.issued.idTokens.slice(idTokensBefore);
    expect(idTokens).toHaveLength(1);
    expect(verifiers).toHaveLength(1);
    const [, payload = "", signature = ""] = (idTokens[0] ?? "").split(".");
    for (const log of [h.audit.text(), await fileText()]) {
      for (const value of [...verifiers, payload, signature]) {
        expect(value.length).toBeGreaterThanOrEqual(40);
        // Long fields are cut at 200 characters: look for any piece, not the whole value.
        for (let at = 0; at + 24 <= value.length; at += 12) expect(log).not.toContain(value.slice(at, at + 24));
      }
    }
  });
});

describe("the session reference is a keyed hash (SECURITY.md G33)", () => {
  it("names the same session id differently under two keys, and never as its plain SHA-256", async () => {
    const first = await startHarness();
    const second = await startHarness({
      env: { TOKEN_ENCRYPTION_KEYS: `k1:${testKey()}` },
      reuseIdP: { idp: first.idp, other: null, clientSecret: first.clientSecret },
    });
    try {
      const { token } = await first.login("hashed");
      const [sessionId = ""] = token.split(".");
      const loggedFirst = first.audit.named("session.created").at(-1)?.session;
      expect(typeof loggedFirst).toBe("string");
      // The same key names the session the same way in each of its events.
      const refs = new Set(first.audit.events().filter((e) => e.session !== undefined).map((e) => e.session));
      expect(refs).toEqual(new Set([loggedFirst]));
      // The same session id, logged by a server with another key.
      second.bff.audit.write("ws.closed", { sessionId, code: 1000 });
      const loggedSecond = second.audit.named("ws.closed").at(-1)?.session;
      expect(typeof loggedSecond).toBe("string");
      expect(loggedSecond).not.toBe(loggedFirst);

      const digest = createHash("sha256").update(sessionId).digest();
      const plain = [digest.toString("hex"), digest.toString("base64"), digest.toString("base64url")];
      for (const ref of [String(loggedFirst), String(loggedSecond)]) {
        expect(ref.length).toBeGreaterThanOrEqual(16);
        expect(ref).not.toContain(sessionId);
        for (const encoding of plain) expect(encoding.startsWith(ref)).toBe(false);
      }
    } finally {
      await second.close();
      await first.close();
    }
  });
});

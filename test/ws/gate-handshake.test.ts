import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRecordingBackend, type RecordingBackend } from "../fixtures/backend";
import { startHarness, type Harness } from "../fixtures/harness";
import { mintTicket, rawUpgrade, upgradeLines } from "../fixtures/ws-client";

/**
 * Each refusal of the gate, byte for byte where CONTRACT.md fixes it: the status line, the
 * JSON error code, no-store, nosniff, Connection: close, the request id, Retry-After on 429;
 * and the handshake checks that run before any session work (SECURITY.md E22, I37).
 */
describe("the /ws gate's refusals (CONTRACT.md errors, SECURITY.md E22)", () => {
  let backend: RecordingBackend;
  let h: Harness;
  let token: string;
  beforeAll(async () => {
    backend = await startRecordingBackend();
    h = await startHarness({ env: { GAME_BACKEND_URL: backend.url, RATE_LIMIT_UPGRADE: "1/s,40" } });
    ({ token } = await h.login("handshakes"));
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
  });

  interface Answer {
    statusLine: string;
    headers: Map<string, string>;
    body: unknown;
  }

  async function send(lines: string[]): Promise<Answer> {
    const raw = await rawUpgrade(h, lines);
    const [head = "", body = ""] = raw.split("\r\n\r\n");
    const [statusLine = "", ...headerLines] = head.split("\r\n");
    const headers = new Map(headerLines.map((line) => [line.slice(0, line.indexOf(":")).toLowerCase(), line.slice(line.indexOf(":") + 1).trim()]));
    return { statusLine, headers, body: body === "" ? null : JSON.parse(body) };
  }

  function replace(lines: string[], name: string, value: string | null): string[] {
    const rest = lines.filter((line) => !line.toLowerCase().startsWith(`${name.toLowerCase()}:`));
    return value === null ? rest : [...rest, `${name}: ${value}`];
  }

  const base = (): string[] => [...upgradeLines(h, { protocols: "game.v1, ticket.abcdefghijklmnopqrstuvwxyz234567", token }), "X-Request-Id: handshake-test-1"];

  it.each<[string, () => string[], string, string]>([
    ["a query the contract refuses", () => [`GET /ws?a#b HTTP/1.1`, ...base().slice(1)], "HTTP/1.1 400 Bad Request", "bad_path"],
    ["a path with no route", () => [`GET /nowhere HTTP/1.1`, ...base().slice(1)], "HTTP/1.1 404 Not Found", "not_found"],
    ["POST", () => [`POST /ws HTTP/1.1`, ...base().slice(1)], "HTTP/1.1 405 Method Not Allowed", "method_not_allowed"],
    ["Upgrade: something else", () => replace(base(), "Upgrade", "websocketx"), "HTTP/1.1 400 Bad Request", "bad_upgrade"],
    ["Connection: keep-alive, Upgrade (accepted list)", () => replace(replace(base(), "Connection", "keep-alive, Upgrade"), "Origin", "https://evil.example"), "HTTP/1.1 403 Forbidden", "origin"],
    ["a key with a prefix", () => replace(base(), "Sec-WebSocket-Key", "xdGhlIHNhbXBsZSBub25jZQ=="), "HTTP/1.1 400 Bad Request", "bad_upgrade"],
    ["a key with a suffix", () => replace(base(), "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==x"), "HTTP/1.1 400 Bad Request", "bad_upgrade"],
    ["no key", () => replace(base(), "Sec-WebSocket-Key", null), "HTTP/1.1 400 Bad Request", "bad_upgrade"],
    ["a subprotocol with a space inside", () => replace(base(), "Sec-WebSocket-Protocol", "game.v1, ticket.a b"), "HTTP/1.1 400 Bad Request", "bad_upgrade"],
    ["a subprotocol list over 512 bytes", () => replace(base(), "Sec-WebSocket-Protocol", `game.v1, x${"a".repeat(520)}`), "HTTP/1.1 400 Bad Request", "bad_upgrade"],
    ["a bad origin", () => replace(base(), "Origin", "https://evil.example"), "HTTP/1.1 403 Forbidden", "origin"],
    ["no session", () => replace(base(), "Cookie", null), "HTTP/1.1 401 Unauthorized", "no_session"],
    ["no ticket", () => replace(base(), "Sec-WebSocket-Protocol", "game.v1"), "HTTP/1.1 401 Unauthorized", "bad_ticket"],
    ["an unknown ticket", base, "HTTP/1.1 401 Unauthorized", "bad_ticket"],
  ])("%s → its status line and error code, no-store, nosniff, Connection: close, the request id", async (_name, lines, statusLine, error) => {
    const answer = await send(lines());
    expect(answer.statusLine).toBe(statusLine);
    expect(answer.body).toEqual({ error, message: expect.stringMatching(/\w/) });
    expect(answer.headers.get("connection")).toBe("close");
    expect(answer.headers.get("cache-control")).toBe("no-store");
    expect(answer.headers.get("x-content-type-options")).toBe("nosniff");
    expect(answer.headers.get("x-request-id")).toBe("handshake-test-1");
    expect(answer.headers.get("content-type")).toBe("application/json; charset=utf-8");
  });

  it("refuses a ticket of another session with 403 wrong_session", async () => {
    const other = await h.login("handshakes-other");
    const ticket = await mintTicket(h, other.token);
    const answer = await send(replace(base(), "Sec-WebSocket-Protocol", `game.v1, ticket.${ticket}`));
    expect(answer.statusLine).toBe("HTTP/1.1 403 Forbidden");
    expect(answer.body).toEqual({ error: "wrong_session", message: expect.stringMatching(/\w/) });
  });

  it("answers a spent burst with 429 rate_limited and Retry-After, audited", async () => {
    h.clock.advance(60_000);
    let answer: Answer | null = null;
    for (let i = 0; i < 45 && answer?.statusLine !== "HTTP/1.1 429 Too Many Requests"; i += 1) {
      answer = await send(replace(base(), "Cookie", null));
    }
    expect(answer?.statusLine).toBe("HTTP/1.1 429 Too Many Requests");
    expect(answer?.body).toEqual({ error: "rate_limited", message: expect.stringMatching(/\w/) });
    expect(answer?.headers.get("retry-after")).toBe("1");
    await h.bff.audit.flush();
    expect(h.audit.named("ratelimit.hit").some((e) => e.reason === "upgrade")).toBe(true);
    h.clock.advance(60_000);
  });
});

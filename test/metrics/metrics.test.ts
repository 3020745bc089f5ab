import { spawnSync } from "node:child_process";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRecordingBackend, type RecordingBackend } from "../fixtures/backend";
import { startHarness, type Harness } from "../fixtures/harness";
import { startRecordingUpstream, type RecordingUpstream } from "../fixtures/http-upstream";
import { until } from "../fixtures/wait";
import { closeOf, mintTicket, nextMessage, openSocket, rawUpgrade, upgradeLines, upgradeStatus } from "../fixtures/ws-client";
import { sampleValue, scrape, type Sample } from "./exposition";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Sends raw request lines and returns the whole answer (the connection is closed by either side). */
function rawRequest(origin: string, lines: string[]): Promise<string> {
  const url = new URL(origin);
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname, () => socket.write(`${lines.join("\r\n")}\r\n\r\n`));
    let answer = "";
    socket.on("data", (d: Buffer) => (answer += d.toString("latin1")));
    socket.on("close", () => resolve(answer));
    socket.on("error", () => resolve(answer));
  });
}

function promtoolPath(): string | null {
  const found = spawnSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" });
  return found.status === 0 ? found.stdout.trim() : null;
}

describe("Prometheus metrics (issue 16, SECURITY.md I44)", () => {
  let backend: RecordingBackend;
  let upstream: RecordingUpstream;
  let h: Harness;
  const UPGRADE_BURST = 40;

  beforeAll(async () => {
    backend = await startRecordingBackend();
    upstream = await startRecordingUpstream();
    h = await startHarness({
      env: { GAME_BACKEND_URL: backend.url, METRICS_PORT: "0", WS_MAX_SOCKETS_PER_SESSION: "1", RATE_LIMIT_UPGRADE: `1/s,${UPGRADE_BURST}` },
      upstreams: ({ issuer }) => ({
        routes: [
          { prefix: "/api/game/", target: `${upstream.url}/api/game/`, audience: upstream.url, methods: ["GET", "POST"] },
          { prefix: "/api/me/", target: `${issuer}/me`, credential: "provider-token", provider: "demo", methods: ["GET"] },
        ],
      }),
    });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
    await upstream.close();
  });

  it("counts what happened, exactly: logins, each refusal, relayed messages, a 4401, /api calls, a refresh failure", async () => {
    const before = (await scrape(h.bff.metricsURL)).samples;
    const moved = (after: Sample[], name: string, labels: Record<string, string> = {}): number =>
      sampleValue(after, name, labels) - sampleValue(before, name, labels);
    let upgrades = 0;
    const attempt = async (run: () => Promise<number>): Promise<number> => {
      upgrades += 1;
      return run();
    };

    // Two logins: two sessions.
    const alice = await h.login("metrics-alice");
    const bob = await h.login("metrics-bob");

    // One refused upgrade of each kind the gate has.
    const ticket = await mintTicket(h, alice.token);
    const notFound = await attempt(() => rawUpgrade(h, [...upgradeLines(h, { protocols: "game.v1", token: alice.token }).map((l) => l.replace("GET /ws ", "GET /nope "))]).then(statusOf));
    const method = await attempt(() => rawUpgrade(h, upgradeLines(h, { protocols: "game.v1", token: alice.token }).map((l) => l.replace("GET /ws ", "POST /ws "))).then(statusOf));
    const malformed = await attempt(() => upgradeStatus(h, ticket, { token: alice.token, protocols: [`ticket.${ticket}`] }));
    const origin = await attempt(() => upgradeStatus(h, ticket, { token: alice.token, origin: "https://evil.example" }));
    const noSession = await attempt(() => upgradeStatus(h, ticket, { token: null }));
    const noTicket = await attempt(() => upgradeStatus(h, null, { token: alice.token }));
    const wrongSession = await attempt(() => upgradeStatus(h, ticket, { token: bob.token }));
    expect([notFound, method, malformed, origin, noSession, noTicket, wrongSession]).toEqual([404, 405, 400, 403, 401, 401, 403]);
    backend.answer = 503;
    const backendDown = await attempt(async () => upgradeStatus(h, await mintTicket(h, alice.token), { token: alice.token }));
    backend.answer = 101;
    expect(backendDown).toBe(502);

    // One accepted socket, three messages each way, then one socket too many.
    upgrades += 1;
    const ws = await openSocket(h, await mintTicket(h, alice.token), { token: alice.token });
    const tooMany = await attempt(async () => upgradeStatus(h, await mintTicket(h, alice.token), { token: alice.token }));
    expect(tooMany).toBe(429);
    const sizes = [5, 20, 100];
    for (const size of sizes) {
      ws.send("x".repeat(size));
      await nextMessage(ws);
    }
    const open = (await scrape(h.bff.metricsURL)).samples;
    expect(moved(open, "portcullis_ws_sockets", { route: "/ws" })).toBe(1);
    expect(moved(open, "portcullis_ws_messages_total", { direction: "to_backend" })).toBe(3);
    expect(moved(open, "portcullis_ws_messages_total", { direction: "to_client" })).toBe(3);
    // RFC 6455 5.2: a browser's short frame has a 2-byte header and a 4-byte mask key; the
    // backend's (to the BFF, as a server) has no mask.
    expect(moved(open, "portcullis_ws_bytes_total", { direction: "to_backend" })).toBe(sizes.reduce((sum, n) => sum + 6 + n, 0));
    expect(moved(open, "portcullis_ws_bytes_total", { direction: "to_client" })).toBe(sizes.reduce((sum, n) => sum + 2 + n, 0));

    // Logout: the socket closes with 4401 and the session ends for "logout".
    const closed = closeOf(ws);
    expect((await alice.agent.fetch(`${h.origin}/auth/logout`, { method: "POST", headers: h.csrf() })).status).toBe(204);
    expect((await closed).code).toBe(4401);
    await until(() => h.audit.named("ws.closed").length === 1, "the relay's end");

    // Upgrades until the per-IP bucket is spent: the rest of it are malformed (400), then one 429.
    let malformedMore = 0;
    for (;;) {
      const status = await attempt(() => upgradeStatus(h, "a".repeat(32), { token: bob.token, protocols: ["ticket.x"] }));
      if (status === 429) break;
      expect(status).toBe(400);
      malformedMore += 1;
    }
    // The path and the method are checked before the rate limit: those two took no token.
    expect(upgrades).toBe(UPGRADE_BURST + 1 + 2);

    // /api: a 2xx, a 4xx (a method the route does not take), a 404 no route matched.
    const api = (path: string, init: RequestInit = {}): Promise<Response> =>
      fetch(`${h.origin}${path}`, { ...init, headers: { cookie: `__Host-Http-session=${bob.token}`, ...h.csrf() } });
    expect((await api("/api/game/profile")).status).toBe(200);
    expect((await api("/api/game/profile", { method: "DELETE" })).status).toBe(405);
    expect((await api("/api/nowhere/secret-player-path")).status).toBe(404);
    // A provider refresh that fails: the provider is unreachable when the access token is due.
    const sessionId = bob.token.split(".")[0];
    const expiry = (h.bff.db.sqlite.prepare("SELECT access_token_expires_at AS t FROM sessions WHERE id = ?").get(sessionId) as { t: number }).t;
    h.clock.advance(expiry - h.clock.now());
    h.idp.setUnreachable(true);
    try {
      expect((await api("/api/me/")).status).toBe(502);
    } finally {
      h.idp.setUnreachable(false);
    }

    const after = (await scrape(h.bff.metricsURL)).samples;
    expect(moved(after, "portcullis_sessions_created_total")).toBe(2);
    expect(moved(after, "portcullis_sessions_ended_total", { reason: "logout" })).toBe(1);
    expect(sampleValue(after, "portcullis_sessions_live")).toBe(1);
    const outcome = (name: string): number => moved(after, "portcullis_ws_upgrades_total", { outcome: name });
    expect({
      accepted: outcome("accepted"),
      not_found: outcome("not_found"),
      method_not_allowed: outcome("method_not_allowed"),
      bad_upgrade: outcome("bad_upgrade"),
      origin: outcome("origin"),
      no_session: outcome("no_session"),
      bad_ticket: outcome("bad_ticket"),
      wrong_session: outcome("wrong_session"),
      backend_unavailable: outcome("backend_unavailable"),
      too_many_sockets: outcome("too_many_sockets"),
      rate_limited: outcome("rate_limited"),
      other: outcome("other"),
    }).toEqual({
      accepted: 1,
      not_found: 1,
      method_not_allowed: 1,
      bad_upgrade: 1 + malformedMore,
      origin: 1,
      no_session: 1,
      bad_ticket: 1,
      wrong_session: 1,
      backend_unavailable: 1,
      too_many_sockets: 1,
      rate_limited: 1,
      other: 0,
    });
    expect(moved(after, "portcullis_ws_closes_total", { code: "4401" })).toBe(1);
    expect(moved(after, "portcullis_ws_sockets", { route: "/ws" })).toBe(0);
    expect(moved(after, "portcullis_rate_limit_hits_total", { limiter: "upgrade" })).toBe(1);
    expect(moved(after, "portcullis_api_requests_total", { upstream: "/api/game/", method: "GET", status_class: "2xx" })).toBe(1);
    expect(moved(after, "portcullis_api_requests_total", { upstream: "/api/game/", method: "DELETE", status_class: "4xx" })).toBe(1);
    expect(moved(after, "portcullis_api_requests_total", { upstream: "none", method: "GET", status_class: "4xx" })).toBe(1);
    expect(moved(after, "portcullis_api_requests_total", { upstream: "/api/me/", method: "GET", status_class: "5xx" })).toBe(1);
    expect(moved(after, "portcullis_api_request_duration_seconds_count", { upstream: "/api/game/" })).toBe(2);
    expect(moved(after, "portcullis_token_refreshes_total", { outcome: "failed" })).toBe(1);
    expect(moved(after, "portcullis_token_refreshes_total", { outcome: "succeeded" })).toBe(0);
    expect(moved(after, "portcullis_db_query_duration_seconds_count", { statement: "select" })).toBeGreaterThan(0);
    expect(sampleValue(after, "nodejs_eventloop_lag_p99_seconds")).toBeGreaterThan(0);
  });

  it("passes promtool check metrics, and no label carries a session, an account, an address or a client's path", async () => {
    const promtool = promtoolPath();
    if (promtool === null) {
      throw new Error("promtool is missing: install Debian's prometheus package (apt-get install -y prometheus), which ships it; .ci/run does");
    }
    const { token } = await h.login("metrics-carol");
    const [sessionId] = token.split(".");
    const accountId = (h.bff.db.sqlite.prepare("SELECT account_id AS a FROM sessions WHERE id = ?").get(sessionId) as { a: string }).a;
    await fetch(`${h.origin}/api/game/a-path-the-client-chose`, { headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } });
    const { text, samples } = await scrape(h.bff.metricsURL);
    const check = spawnSync(promtool, ["check", "metrics"], { input: text, encoding: "utf8" });
    expect(check.stderr + check.stdout).toBe("");
    expect(check.status).toBe(0);

    expect(text).not.toContain(sessionId);
    expect(text).not.toContain(accountId);
    expect(text).not.toContain("a-path-the-client-chose");
    const labelValues = new Set(samples.flatMap((s) => Object.values(s.labels)));
    for (const value of labelValues) {
      expect(value).not.toMatch(/^(\d{1,3}\.){3}\d{1,3}$|::/);
    }
    const ours = samples.filter((s) => s.name.startsWith("portcullis_"));
    const apiUpstreams = new Set(ours.filter((s) => s.name === "portcullis_api_requests_total").map((s) => s.labels.upstream));
    expect([...apiUpstreams].sort()).toEqual(["/api/game/", "/api/me/", "none"].filter((u) => apiUpstreams.has(u)).sort());
  });

  it("serves /metrics only on its own loopback listener: the public port answers 404", async () => {
    const metricsURL = new URL(h.bff.metricsURL ?? "");
    expect(metricsURL.hostname).toBe("127.0.0.1");
    expect(metricsURL.port).not.toBe(new URL(h.origin).port);
    const publicAnswer = await fetch(`${h.origin}/metrics`);
    expect(publicAnswer.status).toBe(404);
    expect(await publicAnswer.text()).not.toContain("portcullis_");
    // Nor by way of the /api relay or a raw request line aimed at the metrics port.
    const viaHost = await rawRequest(h.origin, ["GET /metrics HTTP/1.1", `Host: ${metricsURL.host}`, "Connection: close"]);
    expect(viaHost).toMatch(/^HTTP\/1\.1 404/);
    expect(viaHost).not.toContain("portcullis_");
    expect((await fetch(`${h.bff.metricsURL}/other`)).status).toBe(404);
  });
});

describe("metrics off (METRICS_PORT unset)", () => {
  it("has no listener, and the public port still answers 404 for /metrics", async () => {
    const h = await startHarness();
    try {
      expect(h.bff.metricsURL).toBeNull();
      expect(h.bff.metrics.enabled).toBe(false);
      expect((await fetch(`${h.origin}/metrics`)).status).toBe(404);
    } finally {
      await h.close();
    }
  });
});

describe("request ids (issue 16)", () => {
  let backend: RecordingBackend;
  let upstream: RecordingUpstream;
  let h: Harness;
  beforeAll(async () => {
    backend = await startRecordingBackend();
    upstream = await startRecordingUpstream();
    h = await startHarness({
      env: { GAME_BACKEND_URL: backend.url },
      upstreams: () => ({ routes: [{ prefix: "/api/game/", target: `${upstream.url}/api/game/`, audience: upstream.url }] }),
    });
  });
  afterAll(async () => {
    await h.close();
    await backend.close();
    await upstream.close();
  });

  it.each([
    ["too long", "a".repeat(65)],
    ["with a space", "abc def"],
    ["with a quote", 'abc"def'],
    ["with a slash", "abc/def"],
    ["empty", ""],
  ])("replaces a malformed X-Request-Id (%s) with a fresh UUID", async (_name, id) => {
    const response = await fetch(`${h.origin}/healthz`, { headers: { "x-request-id": id } });
    expect(response.headers.get("x-request-id")).toMatch(UUID);
  });

  it("keeps a well-formed X-Request-Id, and gives one to a request without", async () => {
    const kept = await fetch(`${h.origin}/healthz`, { headers: { "x-request-id": "lb-1234.abc_DEF" } });
    expect(kept.headers.get("x-request-id")).toBe("lb-1234.abc_DEF");
    const fresh = await fetch(`${h.origin}/no-such-page`);
    expect(fresh.status).toBe(404);
    expect(fresh.headers.get("x-request-id")).toMatch(UUID);
  });

  it("sends the id to the upstream and writes it on the audit lines the request caused", async () => {
    const { token } = await h.login("ids");
    const response = await fetch(`${h.origin}/api/game/who`, { headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf(), "x-request-id": "api-call-1" } });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-request-id")).toBe("api-call-1");
    expect(upstream.requests.at(-1)?.headers["x-request-id"]).toBe("api-call-1");
    // A malformed id from the browser never reaches the upstream: the one that replaced it does.
    const replaced = await fetch(`${h.origin}/api/game/who`, { headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf(), "x-request-id": "not an id" } });
    const id = replaced.headers.get("x-request-id");
    expect(id).toMatch(UUID);
    expect(upstream.requests.at(-1)?.headers["x-request-id"]).toBe(id);

    // A refused request: its csrf.refused line carries its id.
    const refused = await fetch(`${h.origin}/auth/ws-ticket`, { method: "POST", headers: { cookie: `__Host-Http-session=${token}`, "x-request-id": "csrf-refused-1" } });
    expect(refused.status).toBe(403);
    expect(refused.headers.get("x-request-id")).toBe("csrf-refused-1");
    await h.bff.audit.flush();
    expect(h.audit.named("csrf.refused").at(-1)?.requestId).toBe("csrf-refused-1");
    // The login's own lines carry the callback's id.
    const success = h.audit.named("login.success").at(-1);
    expect(success?.requestId).toMatch(UUID);
  });

  it("sends the upgrade's id to the game backend, answers with it, and writes it on the upgrade's lines", async () => {
    const { token } = await h.login("ws-ids");
    const ticket = await mintTicket(h, token);
    const answer = await rawUpgrade(h, [...upgradeLines(h, { protocols: `game.v1, ticket.${ticket}`, token }), "X-Request-Id: upgrade-1"]);
    expect(answer).toMatch(/^HTTP\/1\.1 101/);
    expect(answer).toMatch(/\r\nX-Request-Id: upgrade-1\r\n/);
    expect(backend.handshakes.at(-1)?.["x-request-id"]).toBe("upgrade-1");
    expect(h.audit.named("ws.upgrade.accepted").at(-1)?.requestId).toBe("upgrade-1");
    await until(() => h.audit.named("ws.closed").some((e) => e.requestId === "upgrade-1"), "the relay's ws.closed line");

    const refused = await rawUpgrade(h, [...upgradeLines(h, { protocols: "game.v1", token, origin: "https://evil.example" }), "X-Request-Id: refused-1"]);
    expect(refused).toMatch(/^HTTP\/1\.1 403/);
    expect(refused).toMatch(/\r\nX-Request-Id: refused-1\r\n/);
    await h.bff.audit.flush();
    expect(h.audit.named("ws.upgrade.refused").at(-1)?.requestId).toBe("refused-1");
  });
});

function statusOf(answer: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
}

import { Agent as HttpAgent, createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";
import { until } from "../fixtures/wait";

/** An upstream whose every answer the test writes: each arrival is recorded with its request and response. */
interface Arrival {
  method: string;
  path: string;
  socket: Socket;
  req: IncomingMessage;
  res: ServerResponse;
}

interface ScriptedUpstream {
  url: string;
  arrivals: Arrival[];
  /** How the next requests are answered; by default 200 with the path. */
  answer: (arrival: Arrival) => void;
  close(): Promise<void>;
}

async function startScriptedUpstream(): Promise<ScriptedUpstream> {
  const arrivals: Arrival[] = [];
  const upstream: ScriptedUpstream = {
    url: "",
    arrivals,
    answer: ({ res, path }) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ path }));
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const arrival = { method: req.method ?? "", path: req.url ?? "", socket: req.socket, req, res };
      arrivals.push(arrival);
      upstream.answer(arrival);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  upstream.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return upstream;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves to "error" when reading the body fails, "complete" when it ends, "pending" when neither happens within `ms`. */
async function bodyOutcome(response: Response, ms: number): Promise<"error" | "complete" | "pending"> {
  const read = response.arrayBuffer().then(
    () => "complete" as const,
    () => "error" as const,
  );
  return Promise.race([read, sleep(ms).then(() => "pending" as const)]);
}

/**
 * The /api relay's one timer and its ends (SECURITY.md H35, CONTRACT.md 504/502): a request
 * that timed out or whose browser left is never sent again, a trickling or broken answer
 * never pins the browser's connection, and an upstream's 5xx is audited.
 */
interface KeptAliveAnswer {
  status: number;
  headers: Record<string, unknown>;
  body: string;
  /** The request went out on the browser's earlier connection. */
  reused: boolean;
}

/** One request over `agent`'s kept-alive connection to the BFF, as a browser sends it. */
function sendKeptAlive(h: Harness, token: string, agent: HttpAgent, method: string, path: string): Promise<KeptAliveAnswer> {
  const url = new URL(h.origin);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, method, path, agent, headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, reused: req.reusedSocket }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("/api relay: an exchange that ends early (short upstream timeout)", () => {
  let upstream: ScriptedUpstream;
  let h: Harness;
  let token: string;
  const api = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${h.origin}${path}`, { ...init, headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } });

  beforeAll(async () => {
    upstream = await startScriptedUpstream();
    h = await startHarness({ env: { GAME_BACKEND_URL: upstream.url }, portcullis: { upstreamTimeoutMs: 300 } });
    token = (await h.login("exchange-user")).token;
  });
  afterAll(async () => {
    await h.close();
    await upstream.close();
  });
  afterEach(() => {
    upstream.answer = ({ res, path }) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ path }));
    };
  });

  it("leaves nothing armed once an answer is complete: the browser's kept-alive connection outlives the timeout", async () => {
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    try {
      expect((await sendKeptAlive(h, token, agent, "GET", "/api/game/done")).status).toBe(200);
      // Past the 300 ms the exchange's timer had: a timer left running would end the connection.
      await sleep(450);
      const next = await sendKeptAlive(h, token, agent, "GET", "/api/game/next");
      expect(next.status).toBe(200);
      expect(next.reused).toBe(true);
    } finally {
      agent.destroy();
    }
  });

  it("sends a GET that timed out on a pooled connection only once", async () => {
    // A first answer leaves a kept-alive socket in the pool: the second request reuses it.
    expect((await api("/api/game/warm")).status).toBe(200);
    upstream.answer = ({ path, res }) => {
      if (path !== "/api/game/hang") {
        res.writeHead(200);
        res.end();
      }
    };
    const before = upstream.arrivals.length;
    const timedOut = await api("/api/game/hang");
    expect(timedOut.status).toBe(504);
    expect(await timedOut.json()).toEqual({ error: "upstream_timeout", message: "The upstream did not answer in time." });
    // Long enough for a second try to have arrived, had the ended exchange sent one.
    await sleep(400);
    expect(upstream.arrivals.slice(before).map((a) => a.path)).toEqual(["/api/game/hang"]);
    expect(h.audit.named("upstream.failed").at(-1)).toMatchObject({ reason: "timeout", detail: "no complete answer within 300 ms" });
  });

  it("cuts a trickling answer at the timeout: the browser's answer breaks off, it is not held open", async () => {
    upstream.answer = ({ res }) => {
      res.writeHead(200, { "content-type": "text/plain", "content-length": "100" });
      res.write("only ten b");
    };
    const response = await api("/api/game/trickle");
    expect(response.status).toBe(200);
    expect(await bodyOutcome(response, 3_000)).toBe("error");
  });

  it("audits an upstream's 500 as a failure, and not its 499", async () => {
    upstream.answer = ({ res, path }) => {
      res.writeHead(path.endsWith("/500") ? 500 : 499);
      res.end();
    };
    const before = h.audit.named("upstream.failed").length;
    expect((await api("/api/game/499")).status).toBe(499);
    expect(h.audit.named("upstream.failed").length).toBe(before);
    expect((await api("/api/game/500")).status).toBe(500);
    const failed = h.audit.named("upstream.failed").slice(before);
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ status: 500, upstream: "/api/game/" });
  });
});

describe("/api relay: an exchange that ends early (long upstream timeout)", () => {
  let upstream: ScriptedUpstream;
  let h: Harness;
  let token: string;
  const api = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${h.origin}${path}`, { ...init, headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } });

  beforeAll(async () => {
    upstream = await startScriptedUpstream();
    h = await startHarness({ env: { GAME_BACKEND_URL: upstream.url }, portcullis: { upstreamTimeoutMs: 20_000 } });
    token = (await h.login("exchange-long")).token;
  });
  afterAll(async () => {
    await h.close();
    await upstream.close();
  });

  it("ends the upstream call when the browser leaves before the answer, and does not send it again", async () => {
    expect((await api("/api/game/warm")).status).toBe(200);
    upstream.answer = ({ path, res }) => {
      if (path !== "/api/game/held") {
        res.writeHead(200);
        res.end();
      }
    };
    const before = upstream.arrivals.length;
    const browser = new AbortController();
    const call = api("/api/game/held", { signal: browser.signal }).catch(() => null);
    await until(() => upstream.arrivals.length > before, "the held request to arrive");
    const held = upstream.arrivals[before] as Arrival;
    browser.abort();
    await call;
    // Far sooner than the 20 s timeout: the upstream's connection is closed under it.
    await until(() => held.socket.destroyed, "the upstream's socket to close", 3_000);
    await sleep(300);
    expect(upstream.arrivals.slice(before).map((a) => a.path)).toEqual(["/api/game/held"]);
    await until(() => h.audit.named("upstream.failed").some((e) => e.reason === "client gone" && e.detail === "the client went away"), "the audit line");
  });

  it("ends the browser's answer at once when the upstream's answer breaks off", async () => {
    upstream.answer = ({ res, socket }) => {
      res.writeHead(200, { "content-type": "text/plain", "content-length": "100" });
      res.write("only ten b", () => setTimeout(() => socket.destroy(), 50));
    };
    const response = await api("/api/game/broken");
    expect(response.status).toBe(200);
    // Long before the 20 s timer: the browser sees the answer fail, not a connection held open.
    expect(await bodyOutcome(response, 3_000)).toBe("error");
  });
});

/**
 * The retry rule (RFC 9110 9.2.2): an idempotent request goes once more only when a pooled
 * socket was closed under it, once, and never a request sent on a fresh socket.
 */
describe("/api relay: the one retry on a reset pooled socket", () => {
  let upstream: ScriptedUpstream;
  let h: Harness;
  let token: string;
  const api = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${h.origin}${path}`, { ...init, headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } });

  beforeAll(async () => {
    upstream = await startScriptedUpstream();
    h = await startHarness({
      upstreams: () => ({ routes: [{ prefix: "/api/game/", target: `${upstream.url}/api/game/`, methods: ["GET", "HEAD", "PUT", "DELETE", "POST"] }] }),
    });
    token = (await h.login("retry-user")).token;
  });
  afterAll(async () => {
    await h.close();
    await upstream.close();
  });

  it("does not send a request again when a fresh connection is reset", async () => {
    // The first request to this upstream: the pool has no socket yet, so this one is fresh.
    upstream.answer = ({ socket }) => socket.destroy();
    const response = await api("/api/game/first");
    expect(response.status).toBe(502);
    expect(upstream.arrivals.map((a) => a.path)).toEqual(["/api/game/first"]);
    expect(h.audit.named("upstream.failed").at(-1)).toMatchObject({ reason: "unreachable" });
  });

  it("sends it once more at most: a second reset pooled socket is a 502", async () => {
    // Two requests at once open two connections; both stay in the pool.
    const held: Arrival[] = [];
    upstream.answer = (arrival) => {
      held.push(arrival);
      if (held.length < 2) return;
      for (const { res } of held) {
        res.writeHead(200);
        res.end();
      }
    };
    const [a, b] = await Promise.all([api("/api/game/warm-a"), api("/api/game/warm-b")]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(new Set(held.map((arrival) => arrival.socket)).size).toBe(2);
    // Now both pooled connections drop whatever reaches them; a fresh one would answer.
    const pooled = new Set(held.map((arrival) => arrival.socket));
    upstream.answer = ({ socket, res }) => {
      if (pooled.has(socket)) {
        socket.destroy();
        return;
      }
      res.writeHead(200);
      res.end();
    };
    const before = upstream.arrivals.length;
    const response = await api("/api/game/twice");
    expect(response.status).toBe(502);
    expect(upstream.arrivals.slice(before).map((a) => a.path)).toEqual(["/api/game/twice", "/api/game/twice"]);
  });

  it.each(["HEAD", "PUT", "DELETE"])("sends a %s once more on a fresh connection when the pooled one was closed under it", async (method) => {
    upstream.answer = ({ res }) => {
      res.writeHead(200);
      res.end();
    };
    expect((await api("/api/game/warm")).status).toBe(200);
    const pooled = upstream.arrivals.at(-1)?.socket;
    upstream.answer = ({ socket, res }) => {
      if (socket === pooled) {
        socket.destroy();
        return;
      }
      res.writeHead(200);
      res.end();
    };
    const before = upstream.arrivals.length;
    const response = await api("/api/game/again", { method });
    expect(response.status).toBe(200);
    const tries = upstream.arrivals.slice(before);
    expect(tries.map((a) => a.method)).toEqual([method, method]);
    expect(tries[0]?.socket).not.toBe(tries[1]?.socket);
  });
});

/**
 * Hono answers HEAD by dispatching GET and wrapping what the handler returned in a new
 * Response: an answer the relay wrote to the socket itself must survive that wrapping, with
 * no second write that fails and takes the browser's kept-alive connection down with it.
 */
describe("/api relay: HEAD", () => {
  let upstream: ScriptedUpstream;
  let h: Harness;
  let token: string;

  beforeAll(async () => {
    upstream = await startScriptedUpstream();
    upstream.answer = ({ res }) => {
      res.writeHead(200, { "content-type": "text/plain", "content-length": "5", "x-upstream": "yes" });
      res.end("hello");
    };
    // A short timeout: a HEAD's exchange must be over when its head is, its timer too.
    h = await startHarness({
      upstreams: () => ({ routes: [{ prefix: "/api/game/", target: `${upstream.url}/api/game/`, methods: ["GET", "HEAD"] }] }),
      portcullis: { upstreamTimeoutMs: 300 },
    });
    token = (await h.login("head-user")).token;
  });
  afterAll(async () => {
    await h.close();
    await upstream.close();
  });

  it("answers a HEAD with the upstream's status and headers, and the browser's connection stays open for the next request", async () => {
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    const send = (method: string): Promise<KeptAliveAnswer> => sendKeptAlive(h, token, agent, method, "/api/game/thing");
    try {
      const head = await send("HEAD");
      expect(head.status).toBe(200);
      expect(head.headers["x-upstream"]).toBe("yes");
      expect(head.headers["content-length"]).toBe("5");
      expect(head.headers["x-content-type-options"]).toBe("nosniff");
      expect(head.body).toBe("");
      expect(upstream.arrivals.at(-1)?.method).toBe("HEAD");
      // Give a failing second write, or a timer left running, the time to take the connection down.
      await sleep(450);
      const get = await send("GET");
      expect(get.status).toBe(200);
      expect(get.body).toBe("hello");
      expect(get.reused).toBe(true);
    } finally {
      agent.destroy();
    }
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { startDemoGame, type DemoGame } from "../../src/demo/game";
import { createGameAPI } from "../../src/demo/game-api";
import { until } from "../fixtures/wait";
import { startHarness, type Harness } from "../fixtures/harness";
import { inbox, mintTicket, openSocket, upgradeStatus } from "../fixtures/ws-client";

type GameMessage = Record<string, unknown> & { type: string };

/** A live view of everything the socket received, parsed. */
function messages(ws: WebSocket): { some(f: (m: GameMessage) => boolean): boolean; find(f: (m: GameMessage) => boolean): GameMessage | undefined; filter(f: (m: GameMessage) => boolean): GameMessage[] } {
  const all = (): GameMessage[] => inbox(ws).map((m) => JSON.parse(m.data.toString()) as GameMessage);
  return { some: (f) => all().some(f), find: (f) => all().find(f), filter: (f) => all().filter(f) };
}


describe("the demo game backend", () => {
  let game: DemoGame;
  let h: Harness;
  beforeAll(async () => {
    // The game learns the BFF's origin only after the BFF listens, so it starts with a
    // placeholder and is restarted once the origin is known: the verifier is the point.
    h = await startHarness({ env: { GAME_BACKEND_URL: "http://127.0.0.1:9" } });
    await h.stop();
    game = await startDemoGame({ port: 0, jwksURL: `${h.origin}/.well-known/jwks.json`, issuer: h.origin, httpHandler: createGameAPI() });
    h = await startHarness({
      port: Number(new URL(h.origin).port),
      reuseIdP: { idp: h.idp, other: null, clientSecret: h.clientSecret },
      env: { GAME_BACKEND_URL: game.url, TOKEN_ENCRYPTION_KEYS: h.env.TOKEN_ENCRYPTION_KEYS ?? "", ASSERTION_SIGNING_KEYS: h.env.ASSERTION_SIGNING_KEYS ?? "" },
    });
  });
  afterAll(async () => {
    await h.close();
    await game.close();
  });

  it("refuses an upgrade without an identity assertion, or with a forged one", async () => {
    const wsURL = `${game.url.replace("http", "ws")}/ws`;
    for (const headers of [{}, { authorization: "Bearer a.b.c" }, { authorization: "Basic dXNlcjpwYXNz" }]) {
      const status = await new Promise<number>((resolve) => {
        const ws = new WebSocket(wsURL, ["game.v1"], { headers });
        ws.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.once("open", () => resolve(101));
        ws.once("error", () => resolve(0));
      });
      expect(status).toBe(401);
    }
    expect(game.playerCount()).toBe(0);
  });

  it("accepts a valid assertion for its own audience, and refuses one signed for another backend", async () => {
    const wsURL = `${game.url.replace("http", "ws")}/ws`;
    const attempt = (aud: string): Promise<number> => {
      const assertion = h.bff.signer.sign({ sub: "account-1", sid: "session-1", name: "Direct", aud });
      return new Promise<number>((resolve) => {
        const ws = new WebSocket(wsURL, ["game.v1"], { headers: { authorization: `Bearer ${assertion}` }, perMessageDeflate: false });
        ws.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.once("open", () => {
          ws.terminate();
          resolve(101);
        });
        ws.once("error", () => resolve(0));
      });
    };
    expect(await attempt(new URL(game.url).origin)).toBe(101);
    expect(await attempt("https://other-game.example")).toBe(401);
  });

  it("answers GET /healthz, and leaves other HTTP routes to its httpHandler option", async () => {
    const health = await fetch(`${game.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: "ok" });
    const custom = await startDemoGame({
      port: 0,
      jwksURL: `${h.origin}/.well-known/jwks.json`,
      issuer: h.origin,
      httpHandler: (req, res) => {
        if (req.url !== "/custom") return false;
        res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
        res.end("handled");
        return true;
      },
    });
    try {
      expect(await (await fetch(`${custom.url}/custom`)).text()).toBe("handled");
      expect((await fetch(`${custom.url}/elsewhere`)).status).toBe(404);
    } finally {
      await custom.close();
    }
  });

  it("lets two players in through Portcullis: each sees the other join, move and chat", async () => {
    const alice = await h.login("Alice");
    const bob = await h.login("Bob");
    const a = await openSocket(h, await mintTicket(h, alice.token), { token: alice.token });
    const aSeen = messages(a);
    await until(() => aSeen.some((m) => m.type === "welcome"), "alice's welcome");
    const b = await openSocket(h, await mintTicket(h, bob.token), { token: bob.token });
    const bSeen = messages(b);
    await until(() => bSeen.some((m) => m.type === "welcome"), "bob's welcome");
    const welcome = bSeen.find((m) => m.type === "welcome") as unknown as { you: { name: string }; players: { name: string }[] };
    expect(welcome.you.name).toBe("Bob");
    expect(welcome.players.map((p) => p.name).sort()).toEqual(["Alice", "Bob"]);
    await until(() => aSeen.some((m) => m.type === "join"), "alice sees bob join");

    b.send(JSON.stringify({ type: "move", dx: 1, dy: 0 }));
    await until(() => aSeen.some((m) => m.type === "move"), "alice sees bob move");
    a.send(JSON.stringify({ type: "chat", text: "gg" }));
    await until(() => bSeen.some((m) => m.type === "chat"), "bob sees alice chat");
    expect(bSeen.find((m) => m.type === "chat")).toMatchObject({ name: "Alice", text: "gg" });
    // The name comes from the assertion, never from the client.
    a.send(JSON.stringify({ type: "chat", text: "hi", name: "Admin" }));
    await until(() => bSeen.filter((m) => m.type === "chat").length === 2, "second chat");
    expect(bSeen.filter((m) => m.type === "chat")[1]).toMatchObject({ name: "Alice" });
    a.close();
    b.close();
  });

  it("labels an account's second session \"Sam (2)\" in the roster and chat, and frees the seat when it leaves (issue 18 item 5)", async () => {
    const first = await h.login("Sam");
    const second = await h.login("Sam");
    const a = await openSocket(h, await mintTicket(h, first.token), { token: first.token });
    const aSeen = messages(a);
    await until(() => aSeen.some((m) => m.type === "welcome"), "first welcome");
    expect(aSeen.find((m) => m.type === "welcome")).toMatchObject({ you: { name: "Sam", label: "Sam", seat: 1 } });
    const b = await openSocket(h, await mintTicket(h, second.token), { token: second.token });
    const bSeen = messages(b);
    await until(() => bSeen.some((m) => m.type === "welcome"), "second welcome");
    const welcome = bSeen.find((m) => m.type === "welcome") as unknown as { you: { label: string }; players: { label: string }[] };
    expect(welcome.you.label).toBe("Sam (2)");
    expect(welcome.players.map((p) => p.label).sort()).toEqual(["Sam", "Sam (2)"]);
    await until(() => aSeen.some((m) => m.type === "join"), "the first sees the second join");
    expect(aSeen.find((m) => m.type === "join")).toMatchObject({ player: { name: "Sam", label: "Sam (2)", seat: 2 } });
    b.send(JSON.stringify({ type: "chat", text: "from the phone" }));
    await until(() => aSeen.some((m) => m.type === "chat"), "chat");
    expect(aSeen.find((m) => m.type === "chat")).toMatchObject({ name: "Sam (2)", text: "from the phone" });
    // The first leaves: a new connection takes seat 1 again, not 3.
    a.close();
    await until(() => bSeen.some((m) => m.type === "leave"), "the first leaves");
    const c = await openSocket(h, await mintTicket(h, first.token), { token: first.token });
    const cSeen = messages(c);
    await until(() => cSeen.some((m) => m.type === "welcome"), "third welcome");
    expect(cSeen.find((m) => m.type === "welcome")).toMatchObject({ you: { label: "Sam", seat: 1 } });
    b.close();
    c.close();
  });

  it("ignores malformed client messages without dropping the player", async () => {
    const carol = await h.login("Carol");
    const ws = await openSocket(h, await mintTicket(h, carol.token), { token: carol.token });
    const seen = messages(ws);
    await until(() => seen.some((m) => m.type === "welcome"), "welcome");
    for (const bad of [
      "not json",
      "null",
      "[]",
      '{"type":"move","dx":"far"}',
      '{"type":"move","dx":1e400,"dy":0}',
      '{"type":"chat","text":42}',
      '{"type":"chat","text":"   "}',
      '{"__proto__":{"type":"chat","text":"inherited"}}',
      '{"type":"teleport"}',
    ]) {
      ws.send(bad);
    }
    ws.send(Buffer.from([1, 2, 3]));
    ws.send(JSON.stringify({ type: "chat", text: "still here" }));
    await until(() => seen.some((m) => m.type === "chat"), "chat after garbage");
    // Messages keep their order, so nothing sent before "still here" was broadcast.
    expect(seen.filter((m) => m.type === "chat").map((m) => m.text)).toEqual(["still here"]);
    expect(ws.readyState).toBe(1);
    ws.close();
  });

  it("serves its HTTP API through /api/game with the assertion, and refuses it without one", async () => {
    const erin = await h.login("Erin");
    const headers = { cookie: `__Host-Http-session=${erin.token}`, ...h.csrf() };
    const profile = await fetch(`${h.origin}/api/game/profile`, { headers });
    expect(profile.status).toBe(200);
    expect(await profile.json()).toMatchObject({ name: "Erin", session: erin.token.split(".")[0], best: 0, plays: 0 });
    const score = await fetch(`${h.origin}/api/game/score`, { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: JSON.stringify({ score: 42 }) });
    expect(await score.json()).toMatchObject({ best: 42, plays: 1 });
    const bad = await fetch(`${h.origin}/api/game/score`, { method: "POST", headers, body: "{\"score\":\"lots\"}" });
    expect(bad.status).toBe(400);
    expect((await fetch(`${game.url}/api/game/profile`)).status).toBe(401);
    expect((await fetch(`${game.url}/api/game/profile`, { headers: { authorization: "Bearer x.y.z" } })).status).toBe(401);
  });

  it("serves /readyz 200 once the game backend answers", async () => {
    expect((await fetch(`${h.origin}/readyz`)).status).toBe(200);
  });

  it("still refuses at the gate what the game would refuse anyway: no ticket, no entry", async () => {
    const dave = await h.login("Dave");
    expect(await upgradeStatus(h, null, { token: dave.token })).toBe(401);
  });
});

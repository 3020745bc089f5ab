import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { helperPlayer, loadHelper, type Player } from "../fixtures/socketio-helper";
import { startSocketIOStack, type SocketIOStack } from "../fixtures/socketio-stack";

type ConnectSocketIO = Awaited<ReturnType<typeof loadHelper>>;

/** Lets a retry loop show itself: the helper's prompt retry waits at most 250 ms, a backoff 1 s at first. */
function settle(ms = 1_500): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe("connectSocketIO (public/portcullis-socketio.js) with socket.io-client 4.8 through Portcullis (issue 12)", () => {
  let stack: SocketIOStack;
  let connectSocketIO: ConnectSocketIO;
  const players: Player[] = [];
  beforeAll(async () => {
    connectSocketIO = await loadHelper();
    stack = await startSocketIOStack({
      backend: { transports: ["polling", "websocket"], refuse: (identity) => identity.name.startsWith("banned"), ban: (identity) => identity.name === "cl-ban" },
    });
  });
  afterAll(async () => {
    for (const player of players) player.socket.disconnect();
    await stack.close();
  });

  async function player(name: string, options: Parameters<typeof helperPlayer>[3] = {}): Promise<Player> {
    const { token } = await stack.h.login(name);
    const created = helperPlayer(connectSocketIO, stack, token, { maxDelayMs: 2_000, ...options });
    players.push(created);
    return created;
  }

  it("WebSocket only: one fresh ticket, connected; acks, binary and the query string work", async () => {
    const p = await player("cl-ws", { transports: ["websocket"], query: { room: "7" } });
    expect(await p.reached("connected")).toEqual({ transport: "websocket" });
    expect(p.states[0]).toEqual(["connecting", { attempt: 0 }]);
    expect(p.tickets).toEqual([200]);
    const [echoed] = (await p.socket.timeout(5_000).emitWithAck("echo", Buffer.from([1, 2, 3]))) as [Buffer];
    expect([...echoed]).toEqual([1, 2, 3]);
    p.socket.on("question", (q: string, ack: (a: string) => void) => ack(`${q}!`));
    expect(await p.socket.timeout(5_000).emitWithAck("ask", "go")).toBe("go!");
    const who = (await p.socket.timeout(5_000).emitWithAck("whoami")) as { query: Record<string, string>; identity: { name: string } };
    expect(who.query.room).toBe("7");
    expect(who.identity.name).toBe("cl-ws");
  });

  it("polling first, then upgraded to WebSocket with the ticket fetched for this attempt", async () => {
    const polls = stack.game.polls.length;
    const upgrades = stack.game.upgrades.length;
    const p = await player("cl-upgrade");
    expect(await p.reached("connected", { where: (d) => d.transport === "websocket" })).toEqual({ transport: "websocket" });
    expect(p.tickets).toEqual([200]);
    // The engine.io handshake went over polling; the upgrade joined that engine.io session.
    const handshake = stack.game.polls[polls];
    expect(handshake?.url).toMatch(/transport=polling/);
    expect(handshake?.url).not.toMatch(/sid=/);
    expect(stack.game.upgrades.slice(upgrades).map((u) => new URLSearchParams(u.url.split("?")[1]).get("sid"))).toEqual([p.socket.io.engine.id]);
    expect(await p.socket.timeout(5_000).emitWithAck("echo", "up")).toEqual(["up"]);
  });

  it("polling only asks for no ticket at all", async () => {
    const p = await player("cl-poll", { transports: ["polling"] });
    expect(await p.reached("connected")).toEqual({ transport: "polling" });
    expect(await p.socket.timeout(5_000).emitWithAck("echo", Buffer.from([7]))).toHaveLength(1);
    expect(p.tickets).toEqual([]);
  });

  describe("logout ends the client for good, with no retry loop", () => {
    it.each([
      ["WebSocket (4401)", ["websocket"] as ("polling" | "websocket")[]],
      ["polling (401 on the held poll)", ["polling"] as ("polling" | "websocket")[]],
      ["polling upgraded to WebSocket", ["polling", "websocket"] as ("polling" | "websocket")[]],
    ])("%s", async (_name, transports) => {
      const { token, agent } = await stack.h.login("cl-logout");
      const p = helperPlayer(connectSocketIO, stack, token, { transports, maxDelayMs: 2_000 });
      players.push(p);
      await p.reached("connected", { where: (d) => d.transport === transports.at(-1) });
      const ticketsBefore = p.tickets.length;
      const refusedBefore = stack.h.audit.named("ws.upgrade.refused").length;
      await agent.fetch(`${stack.h.origin}/auth/logout`, { method: "POST", headers: stack.h.csrf() });
      expect(await p.reached("ended")).toEqual({ why: "session" });
      await settle();
      // 4401, or the held poll's 401, says it all: not one more ticket request, no upgrade tried.
      expect(p.tickets.slice(ticketsBefore)).toEqual([]);
      expect(stack.h.audit.named("ws.upgrade.refused").length).toBe(refusedBefore);
      expect(p.states.filter(([s]) => s === "ended")).toHaveLength(1);
      expect(p.states.at(-1)?.[0]).toBe("ended");
      expect(p.socket.connected).toBe(false);
    });
  });

  describe("a player the game refuses is not retried forever", () => {
    it("over polling: the game's 403 → refused at once", async () => {
      const before = stack.game.refused.length;
      const p = await player("banned-poll");
      expect(await p.reached("refused")).toEqual({ why: "forbidden", status: 403 });
      await settle();
      expect(stack.game.refused.length - before).toBe(1);
      expect(p.tickets).toEqual([200]);
    });

    it("over WebSocket only (a browser sees no status): refused after maxRefusals attempts, each with its own ticket", async () => {
      const before = stack.game.refused.length;
      const p = await player("banned-ws", { transports: ["websocket"], maxRefusals: 3, maxDelayMs: 200 });
      expect(await p.reached("refused")).toMatchObject({ why: "upgrade refused", attempts: 3 });
      await settle();
      expect(p.tickets).toEqual([200, 200, 200]);
      expect(stack.game.refused.length - before).toBe(3);
      const whys = p.states.filter(([s, d]) => s === "reconnecting" && d.why !== undefined).map(([, d]) => d.why);
      expect(whys).toEqual(["upgrade refused", "upgrade refused"]);
    });
  });

  it.each([["WebSocket", ["websocket"]], ["polling", ["polling"]]] as [string, ("polling" | "websocket")[]][])(
    "refused by the game's middleware over %s: refused at once, with its message",
    async (_name, transports) => {
      const p = await player("cl-ban", { transports });
      expect(await p.reached("refused")).toEqual({ why: "refused by the game", message: "banned" });
      await settle();
      expect(p.tickets.length).toBe(transports.includes("websocket") ? 1 : 0);
      expect(p.socket.io.engine?.readyState ?? "closed").not.toBe("open");
    },
  );

  it("kicked by the game (socket.disconnect(true)): refused, not reconnected", async () => {
    const p = await player("cl-kick", { transports: ["websocket"] });
    await p.reached("connected");
    p.socket.emit("kick");
    expect(await p.reached("refused")).toEqual({ why: "disconnected by the game" });
    await settle();
    expect(p.tickets).toEqual([200]);
  });

  it("the server being down is told apart from a refusal: it keeps trying, and says unreachable", async () => {
    const p = await player("cl-down", { transports: ["websocket"] });
    await p.reached("connected");
    // Portcullis down: the ticket request gets no answer at all.
    const from = p.states.length;
    await stack.restartPortcullis(async () => {
      expect(await p.reached("reconnecting", { from, where: (d) => d.why === "unreachable" })).toMatchObject({ why: "unreachable" });
      expect(p.states.slice(from).some(([s]) => s === "refused" || s === "ended")).toBe(false);
    });
    // Back up on the same port, database and keys: the player is back, with a fresh ticket.
    await p.reached("connected", { from, ms: 10_000 });
  });
});

describe("restarts: the client is back with fresh tickets within 10 s (issue 12)", () => {
  let stack: SocketIOStack;
  let connectSocketIO: ConnectSocketIO;
  beforeAll(async () => {
    connectSocketIO = await loadHelper();
    stack = await startSocketIOStack({ backend: { transports: ["polling", "websocket"] } });
  });
  afterAll(() => stack.close());

  const restarts: [string, "portcullis" | "game", ("polling" | "websocket")[]][] = [
    ["Portcullis, WebSocket", "portcullis", ["websocket"]],
    ["Portcullis, polling (the held poll ends with 503)", "portcullis", ["polling"]],
    ["the game, WebSocket", "game", ["websocket"]],
    ["the game, polling upgraded to WebSocket", "game", ["polling", "websocket"]],
  ];
  it.each(restarts)("%s", async (_name, which, transports) => {
    const { token } = await stack.h.login("cl-restart");
    const p = helperPlayer(connectSocketIO, stack, token, { transports });
    try {
      await p.reached("connected", { where: (d) => d.transport === transports.at(-1) });
      const from = p.states.length;
      const ticketsBefore = p.tickets.filter((s) => s === 200).length;
      const started = performance.now();
      if (which === "portcullis") await stack.restartPortcullis();
      else await stack.restartGame();
      await p.reached("connected", { from, ms: 10_000, where: (d) => d.transport === transports.at(-1) });
      expect(performance.now() - started).toBeLessThan(10_000);
      expect(p.states.slice(from).some(([s]) => s === "ended" || s === "refused")).toBe(false);
      if (transports.includes("websocket")) expect(p.tickets.filter((s) => s === 200).length).toBeGreaterThan(ticketsBefore);
      expect(await p.socket.timeout(5_000).emitWithAck("echo", "back")).toEqual(["back"]);
    } finally {
      p.socket.disconnect();
    }
  });
});

import { connect, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { startHarness } from "./fixtures/harness";
import { startRecordingUpstream } from "./fixtures/http-upstream";

describe("graceful shutdown and the connection cap (issue 7)", () => {
  it("lets an in-flight request finish while it stops accepting new connections", async () => {
    const upstream = await startRecordingUpstream();
    const h = await startHarness({ env: { GAME_BACKEND_URL: upstream.url } });
    try {
      const { token } = await h.login("in-flight");
      // The upstream answers /api/game/slow after 2 s: the request is in flight during close().
      const slow = fetch(`${h.origin}/api/game/slow`, { headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } });
      await new Promise((resolve) => setTimeout(resolve, 200));
      const stopping = h.stop();
      const refused = await fetch(`${h.origin}/healthz`).then(
        () => "answered",
        () => "refused",
      );
      expect(refused).toBe("refused");
      const response = await slow;
      expect(response.status).toBe(200);
      expect(await response.text()).toBe("late");
      await stopping;
    } finally {
      await h.close();
      await upstream.close();
    }
  });

  it("drops connections beyond MAX_CONNECTIONS and keeps serving the others", async () => {
    const h = await startHarness({ env: { MAX_CONNECTIONS: "3" } });
    const url = new URL(h.origin);
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 3; i += 1) {
        const socket = connect(Number(url.port), url.hostname);
        socket.on("error", () => undefined);
        await new Promise((resolve) => socket.once("connect", resolve));
        sockets.push(socket);
      }
      const extra = connect(Number(url.port), url.hostname);
      extra.on("error", () => undefined);
      const closed = await new Promise<boolean>((resolve) => {
        extra.once("close", () => resolve(true));
        extra.once("data", () => resolve(false));
        extra.once("connect", () => extra.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
      });
      expect(closed).toBe(true);
      // One of the three held connections still gets an answer.
      const first = sockets[0] as Socket;
      const answer = await new Promise<string>((resolve) => {
        first.once("data", (data) => resolve(data.toString("latin1")));
        first.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
      });
      expect(answer.startsWith("HTTP/1.1 200")).toBe(true);
    } finally {
      for (const socket of sockets) socket.destroy();
      await h.close();
    }
  });
});

/**
 * Portcullis for the benchmark, in its own process so its memory can be read alone: a real
 * identity provider, a real SQLite file, one logged-in player whose session token the
 * load generator uses. Limits are raised so they measure the relay, not the rate limiter.
 */
import { Writable } from "node:stream";
import { startHarness } from "../test/fixtures/harness";

const backendURL = process.argv[2] ?? "";
const h = await startHarness({
  env: {
    GAME_BACKEND_URL: backendURL,
    WS_MAX_SOCKETS_PER_SESSION: "100000",
    WS_MAX_MESSAGES_PER_SECOND: "10000000",
    WS_MAX_MESSAGE_BYTES: String(1 << 20),
    MAX_CONNECTIONS: "100000",
  },
  portcullis: { auditStream: new Writable({ write: (_chunk, _encoding, done) => done() }) },
});
const { token } = await h.login("bench-player");
process.send?.({ type: "ready", origin: h.origin, token, pid: process.pid });
process.on("message", (message: unknown) => {
  if (message === "stop") void h.close().then(() => process.exit(0));
});

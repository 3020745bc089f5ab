// Socket.IO through Portcullis: copy this file beside portcullis.js. It never sees a token
// either: polling requests carry the HttpOnly session cookie and `X-CSRF: 1`, and every
// WebSocket (a first connection, a reconnection, the polling → WebSocket upgrade) offers a
// one-time ticket fetched just before that attempt, as a subprotocol beside `game.v1`.

const CSRF = { "X-CSRF": "1" };
// The close codes of the Portcullis contract (see CloseCode in portcullis.js).
const SESSION_ENDED = 4401;
const GOING_AWAY = 1001;
const POLICY = 1008;
const TOO_BIG = 1009;

/**
 * A Socket.IO socket (socket.io-client 4: pass the page's `io`) that Portcullis lets in and
 * that reconnects by itself with a fresh ticket each time.
 *
 *   const socket = connectSocketIO(io, { onState });
 *   socket.emit("chat", "hello", (ack) => …);
 *
 * onState(state, detail) gets the states of connect(): "connecting" | "connected" |
 * "reconnecting" | "error" | "ended" | "closed", and one more, "refused":
 *
 * - "ended": the session is over (a 401 from the ticket endpoint or from a poll, or 4401):
 *   show the login again. It never retries.
 * - "refused": we were let in up to the game and no further — a 403 (the game's
 *   `allowRequest` refused this player over polling, or Origin/CSRF), the game's middleware
 *   refused the namespace (detail.message), the game disconnected us, or `maxRefusals`
 *   WebSocket attempts in a row failed although Portcullis was up and handed out a ticket
 *   (a browser hides a refused upgrade's status). It never retries.
 * - "reconnecting" with detail.why "unreachable": the server is down (the ticket endpoint
 *   or a poll did not answer): it retries forever, with jittered exponential backoff.
 *
 * After 1001 or a 503 (a restart) it reconnects at once; after 1008, 1009 and 429 it reports
 * "error" or backs off harder. A refused polling → WebSocket upgrade leaves the connection
 * on polling (detail.upgrade "refused"). `socket.disconnect()` stops it for good ("closed").
 */
export function connectSocketIO(io, options = {}) {
  const {
    url = location.origin,
    path = "/socket.io/",
    namespace = "/",
    protocol = "game.v1",
    transports = ["polling", "websocket"],
    query = {},
    onState = () => {},
    maxDelayMs = 30_000,
    maxRefusals = 5,
    fetch: fetchTicket = (input, init) => fetch(input, init),
    extraHeaders = {},
    ioOptions = {},
  } = options;
  // The websocket transport's options are read each time engine.io-client makes one, so
  // the ticket set here before an attempt is the one its WebSocket offers.
  const websocketOptions = { protocols: [protocol] };
  const socket = io(new URL(namespace, url).href, {
    ...ioOptions,
    path,
    transports,
    query,
    extraHeaders: { ...extraHeaders, ...CSRF },
    transportOptions: { websocket: websocketOptions },
    withCredentials: true,
    // This helper reconnects, with a new ticket each time; Socket.IO's own reconnection
    // would reuse the spent one and loop on 401s.
    reconnection: false,
    autoConnect: false,
    forceNew: true,
  });
  const usesWebSocket = transports.includes("websocket");
  let attempt = 0;
  let refusals = 0;
  let stopped = false;
  let timer = null;
  let connectedOnce = false;

  async function open() {
    timer = null;
    if (stopped) return;
    onState(connectedOnce || attempt > 0 ? "reconnecting" : "connecting", { attempt });
    if (usesWebSocket) {
      let ticket;
      try {
        const response = await fetchTicket(new URL("/auth/ws-ticket", url).href, { method: "POST", headers: CSRF, credentials: "same-origin" });
        if (response.status === 401) return end("session");
        if (response.status === 429) return retry({ why: "rate limited", status: 429 }, "slow");
        if (!response.ok) return retry({ why: "unreachable", status: response.status });
        ticket = (await response.json()).ticket;
      } catch {
        return retry({ why: "unreachable" });
      }
      if (stopped) return;
      websocketOptions.protocols = [protocol, `ticket.${ticket}`];
    }
    socket.connect();
  }

  /** What went wrong with an attempt or a connection, and what to do about it. */
  function judge({ status, code, viaWebSocket }, beforeConnect) {
    if (code === SESSION_ENDED) return end("session");
    // A poll's 401 is the session's answer; an upgrade's may be the ticket's: the next
    // ticket request tells which.
    if (status === 401 && !(viaWebSocket && usesWebSocket)) return end("session");
    if (status === 403) return refuse({ why: "forbidden", status });
    if (code === GOING_AWAY || status === 503) return retry({ why: "restart", code, status }, "prompt");
    if (status === 429) return retry({ why: "rate limited", status }, "slow");
    if (code === POLICY || code === TOO_BIG) {
      onState("error", { code });
      return retry({ code }, "slow");
    }
    if (beforeConnect && viaWebSocket && (status === undefined || status === 401 || status === 502)) {
      // The server handed out a ticket just now, so it is up: its gate or the game refused
      // the upgrade (a browser never says which status). Not forever.
      refusals += 1;
      if (refusals >= maxRefusals) return refuse({ why: "upgrade refused", status, attempts: refusals });
      return retry({ why: "upgrade refused", status, refusals });
    }
    return retry({ why: status === undefined && code === undefined ? "unreachable" : "failed", status, code });
  }

  function retry(detail, pace = "normal") {
    if (stopped) return;
    attempt = pace === "prompt" ? 0 : (pace === "slow" ? Math.max(attempt, 3) : attempt) + 1;
    // Full jitter (AWS architecture blog): a restart must not bring every player back at once.
    const delay = Math.random() * (pace === "prompt" ? 250 : Math.min(maxDelayMs, 500 * 2 ** attempt));
    onState("reconnecting", { attempt, delay, ...detail });
    timer = setTimeout(open, delay);
  }

  function stop() {
    stopped = true;
    clearTimeout(timer);
  }

  function end(why) {
    stop();
    socket.disconnect();
    onState("ended", { why });
  }

  function refuse(detail) {
    stop();
    socket.disconnect();
    onState("refused", detail);
  }

  socket.on("connect", () => {
    attempt = 0;
    refusals = 0;
    connectedOnce = true;
    onState("connected", { transport: socket.io.engine.transport.name });
  });
  socket.io.on("open", () => {
    const engine = socket.io.engine;
    engine.on("upgrade", (transport) => onState("connected", { transport: transport.name }));
    engine.on("upgradeError", () => onState("connected", { transport: engine.transport.name, upgrade: "refused" }));
  });
  socket.on("connect_error", (error) => {
    if (stopped) return;
    // The game's middleware (`io.use`, `next(new Error(…))`) refused this namespace.
    if (error.type !== "TransportError" && "data" in error) return refuse({ why: "refused by the game", message: error.message });
    judge(failureOf(error), true);
  });
  socket.on("disconnect", (reason, description) => {
    if (stopped) return;
    if (reason === "io client disconnect") {
      stop();
      return onState("closed", {});
    }
    if (reason === "io server disconnect") return refuse({ why: "disconnected by the game" });
    judge(failureOf(description), false);
  });
  // socket.disconnect() (or close()) between two attempts must not be undone by the next.
  const disconnect = socket.disconnect.bind(socket);
  socket.disconnect = socket.close = () => {
    if (!stopped) {
      stop();
      onState("closed", {});
    }
    return disconnect();
  };

  open();
  return socket;
}

/**
 * The HTTP status or WebSocket close code behind an engine.io-client error: a failed poll
 * carries its status; a closed WebSocket its close event; a refused upgrade in Node the
 * `ws` message "Unexpected server response: 403" (a browser says nothing).
 */
function failureOf(error) {
  const description = error?.description;
  const code = typeof error?.context?.code === "number" ? error.context.code : undefined;
  if (typeof description === "number") return { status: description || undefined, code, viaWebSocket: false };
  const match = /Unexpected server response: (\d+)/.exec(String(description?.message ?? ""));
  return { status: match ? Number(match[1]) : undefined, code, viaWebSocket: code !== undefined || /websocket/i.test(String(error?.message ?? "")) };
}
